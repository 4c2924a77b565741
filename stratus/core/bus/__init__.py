"""The message bus: RPC cast, call and fanout between units, in-process or over RabbitMQ.

Vocabulary (after oslo.messaging, our own code):

* a :class:`Transport` is the connection to a broker, chosen by URL (``memory://`` or
  ``rabbit://user:pass@host:5672/vhost``) with :func:`get_transport`;
* a :class:`Target` names a topic, optionally one server of it, or all of them (fanout);
* an :class:`RPCClient` casts (fire and forget, durable), calls (request and reply, with a
  timeout) and fans out; units wrap it in a typed :class:`RPCAPI` (their ``rpcapi.py``);
* an :class:`RPCServer` runs an explicit allow-list of a manager's async methods.

Usage::

    transport = get_transport(settings.bus_url)
    await transport.start()
    server = RPCServer(transport, Target("scheduler", server=host), manager,
                       ["select_destinations"])
    await server.start()
    client = RPCClient(transport, Target("scheduler"), timeout=30)
    hosts = await client.call(ctx, "select_destinations", spec=spec)
    ...
    await server.stop()
    await transport.close()

The modules: ``target`` (names), ``url`` (bus URLs), ``envelope`` (wire format), ``errors``,
``transport`` (broker primitives; ``memory``, ``amqp``), ``client``, ``dispatcher``
(allow-list and argument validation), ``server``, ``rpcapi``.
"""

from __future__ import annotations

from stratus.core.bus.client import RPCClient
from stratus.core.bus.errors import (
    BusUnavailable,
    DeliveryFailed,
    InvalidMessage,
    InvalidTarget,
    InvalidTransportURL,
    MessagingError,
    MessagingTimeout,
    RemoteError,
    TransportClosed,
    UnknownMethod,
    UnsupportedVersion,
)
from stratus.core.bus.rpcapi import RPCAPI
from stratus.core.bus.server import RPCServer
from stratus.core.bus.target import Target
from stratus.core.bus.transport import Transport, TransportOptions, get_transport

__all__ = [
    "RPCAPI",
    "BusUnavailable",
    "DeliveryFailed",
    "InvalidMessage",
    "InvalidTarget",
    "InvalidTransportURL",
    "MessagingError",
    "MessagingTimeout",
    "RPCClient",
    "RPCServer",
    "RemoteError",
    "Target",
    "Transport",
    "TransportClosed",
    "TransportOptions",
    "UnknownMethod",
    "UnsupportedVersion",
    "get_transport",
]
