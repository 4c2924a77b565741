"""Transports: the broker under the bus, chosen by URL (``memory://`` or ``rabbit://``)."""

from __future__ import annotations

from stratus.core.bus.transport.base import (
    Incoming,
    OnMessage,
    QueueSpec,
    Subscription,
    Transport,
    TransportOptions,
)
from stratus.core.bus.url import TransportURL

__all__ = [
    "Incoming",
    "OnMessage",
    "QueueSpec",
    "Subscription",
    "Transport",
    "TransportOptions",
    "TransportURL",
    "get_transport",
]


def get_transport(url: str | TransportURL, **options: object) -> Transport:
    """A transport for ``url``, not yet started. ``options`` override the URL's query
    parameters (see :class:`TransportOptions`). The RabbitMQ client is imported only when a
    ``rabbit://`` URL asks for it."""
    parsed = url if isinstance(url, TransportURL) else TransportURL.parse(url)
    if options:
        merged = {**parsed.options, **{k: str(v) for k, v in options.items()}}
        parsed = TransportURL(parsed.transport, parsed.hosts, parsed.virtual_host,
                              parsed.name, merged)
    settings = TransportOptions.from_url(parsed)
    if parsed.transport == "memory":
        from stratus.core.bus.transport.memory import MemoryTransport

        return MemoryTransport(parsed, settings)
    from stratus.core.bus.transport.amqp import AmqpTransport

    return AmqpTransport(parsed, settings)
