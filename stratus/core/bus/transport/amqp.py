"""The RabbitMQ transport (``rabbit://``), on aio-pika.

aio-pika opens connections and channels and declares the topology; the hot paths (publish,
consume, ack) go straight to the channels of aiormq, the AMQP client aio-pika is built on,
which doubles the confirmed publish rate. Topology (names from :mod:`stratus.core.bus.target`):

* cast queues are durable quorum queues with a delivery limit of ``max_attempts`` and the
  topic's dead-letter queue (a durable quorum queue) as their dead-letter target; RabbitMQ
  counts deliveries (``x-delivery-count``), so a consumer that keeps dying on a message does
  not get it forever;
* call queues are classic transient queues (lower latency; the caller waits for the reply, and
  call messages expire after the call's timeout);
* fanout: a durable fanout exchange per topic, one exclusive queue per subscription;
* replies: one exclusive queue per transport, consumed without acks.

Connection handling is ours rather than aio-pika's robust connection, to get what the bus
promises: the URL's nodes are tried in turn, reconnection backs off exponentially (with
jitter) up to ``reconnect_max``, subscriptions and the reply queue are restored on the new
connection before senders resume, and a send that cannot be confirmed within its timeout
raises :class:`~stratus.core.bus.errors.DeliveryFailed` instead of disappearing.

aiormq and aio-pika log raw frames, message bodies included, at DEBUG. Bodies carry tokens, so
importing this module caps those two loggers at INFO.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aio_pika
import aiormq
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, ExchangeType
from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic
from yarl import URL

from stratus.core.bus.errors import (
    BusUnavailable,
    DeliveryFailed,
    MessagingError,
    TransportClosed,
)
from stratus.core.bus.target import fanout_exchange, reply_queue
from stratus.core.bus.transport.base import (
    Incoming,
    OnMessage,
    QueueSpec,
    Subscription,
    Transport,
    TransportOptions,
)
from stratus.core.bus.url import BrokerHost, TransportURL

LOG = logging.getLogger(__name__)

for _noisy in ("aiormq", "aio_pika"):
    _logger = logging.getLogger(_noisy)
    if _logger.level < logging.INFO:
        _logger.setLevel(logging.INFO)

#: Errors after which a send waits for the connection and tries again.
_TRANSIENT: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    TimeoutError,
)
#: Errors that no retry can fix: the broker refuses the declaration or the access.
_PERMANENT: tuple[type[BaseException], ...] = (
    aiormq.exceptions.ChannelPreconditionFailed,
    aiormq.exceptions.ChannelAccessRefused,
)


class _Unroutable(Exception):
    """A mandatory publish came back: its queue vanished after we declared it."""


_RETRY_CONNECT: tuple[type[BaseException], ...] = (BusUnavailable, *_TRANSIENT)
_RETRY_SEND: tuple[type[BaseException], ...] = (_Unroutable, *_TRANSIENT)


class _Backoff:
    """The waits of one retry loop: ``first`` seconds, doubled after each wait up to ``cap``,
    each jittered by ±20% when ``jitter`` (processes that lost the same node should not all
    come back at the same instant). ``deadline`` (loop time, None: none) is when the loop
    gives up."""

    def __init__(self, first: float, cap: float, *, deadline: float | None = None,
                 jitter: bool = True) -> None:
        self._loop = asyncio.get_running_loop()
        self._delay = first
        self._cap = cap
        self._deadline = deadline
        self._jitter = jitter

    def expired(self) -> bool:
        """Whether the next wait would end at or past the deadline: time to give up."""
        return self._deadline is not None and self._loop.time() + self._delay >= self._deadline

    async def wait(self, warning: str | None = None, *args: object) -> None:
        """Log ``warning % args`` (if given) with the coming wait, then wait."""
        if warning is not None:
            LOG.warning(warning + "; retrying in %.2fs", *args, self._delay)
        await asyncio.sleep(self._delay * random.uniform(0.8, 1.2) if self._jitter
                            else self._delay)
        self._delay = min(self._delay * 2, self._cap)


def queue_declaration(spec: QueueSpec, options: TransportOptions) -> dict[str, Any]:
    """Keyword arguments of ``declare_queue`` for ``spec``. Every process must agree on
    them, or RabbitMQ refuses the second declaration (PRECONDITION_FAILED)."""
    if spec.kind == "cast":
        arguments: dict[str, Any] = {"x-queue-type": "quorum",
                                     "x-delivery-limit": options.max_attempts}
        if spec.dead_letter:
            arguments["x-dead-letter-exchange"] = ""
            arguments["x-dead-letter-routing-key"] = spec.dead_letter
        return {"durable": True, "arguments": arguments}
    if spec.kind == "dead":
        return {"durable": True, "arguments": {"x-queue-type": "quorum"}}
    if spec.kind == "call":
        return {"durable": False, "auto_delete": False}
    return {"durable": False, "exclusive": True, "auto_delete": True}


async def _open_channel(connection: AbstractConnection, *,
                        confirms: bool = False) -> AbstractChannel:
    """A new channel; ConnectionError when the connection is (being) closed (aiormq says so
    with a bare RuntimeError)."""
    if connection.is_closed:
        raise ConnectionError("connection closed")
    try:
        return await connection.channel(publisher_confirms=confirms)
    except RuntimeError as exc:
        raise ConnectionError(str(exc)) from exc


class _Link:
    """One connection to one node and the channels the transport uses on it."""

    def __init__(self, connection: AbstractConnection, host: BrokerHost) -> None:
        self.connection = connection
        self.host = host
        self.declared: set[str] = set()
        self._channels: dict[str, AbstractChannel] = {}
        self._raw: dict[str, aiormq.Channel] = {}
        self._lock = asyncio.Lock()
        self._declare_lock = asyncio.Lock()

    async def channel(self, role: str, *, confirms: bool = False) -> AbstractChannel:
        """The (re)opened aio-pika channel for ``role``: ``confirm`` (casts, fanouts),
        ``fast`` (calls, replies) or ``topology`` (declarations)."""
        channel = self._channels.get(role)
        if channel is not None and not channel.is_closed:
            return channel
        async with self._lock:
            channel = self._channels.get(role)
            if channel is None or channel.is_closed:
                channel = await _open_channel(self.connection, confirms=confirms)
                self._channels[role] = channel
            return channel

    async def raw(self, role: str, *, confirms: bool = False) -> aiormq.Channel:
        """The aiormq channel under :meth:`channel`."""
        raw = await (await self.channel(role, confirms=confirms)).get_underlay_channel()
        self._raw[role] = cast(aiormq.Channel, raw)
        return self._raw[role]

    def ready(self, role: str) -> aiormq.Channel | None:
        """The open aiormq channel for ``role``, if there is one (no waiting)."""
        raw = self._raw.get(role)
        return raw if raw is not None and not raw.is_closed else None

    async def declare(self, spec: QueueSpec, options: TransportOptions) -> None:
        if spec.name in self.declared:
            return
        async with self._declare_lock:
            if spec.name in self.declared:
                return
            channel = await self.channel("topology")
            if spec.dead_letter and spec.dead_letter not in self.declared:
                dead = QueueSpec(spec.dead_letter, "dead")
                await channel.declare_queue(dead.name, **queue_declaration(dead, options))
                self.declared.add(dead.name)
            await channel.declare_queue(spec.name, **queue_declaration(spec, options))
            self.declared.add(spec.name)

    async def declare_fanout(self, topic: str) -> str:
        name = fanout_exchange(topic)
        if name not in self.declared:
            async with self._declare_lock:
                channel = await self.channel("topology")
                await channel.declare_exchange(name, ExchangeType.FANOUT, durable=True)
                self.declared.add(name)
        return name

    async def consumers_of(self, name: str) -> int | None:
        """How many consumers queue ``name`` has; None if it does not exist (a passive
        declaration; RabbitMQ answers a missing queue by closing the channel, which is
        opened again next time)."""
        channel = await self.channel("check")
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            self.declared.discard(name)
            return None
        return int(queue.declaration_result.consumer_count or 0)

    @property
    def alive(self) -> bool:
        return not self.connection.is_closed

    async def close(self) -> None:
        try:
            await self.connection.close()
        except Exception:  # already gone
            LOG.debug("bus: closing a dead connection", exc_info=True)


class _AmqpIncoming(Incoming):
    __slots__ = ("_channel", "_tag")

    def __init__(self, channel: aiormq.abc.AbstractChannel, tag: int, body: bytes,
                 delivery_count: int, queue: QueueSpec) -> None:
        super().__init__(body, delivery_count, queue)
        self._channel = channel
        self._tag = tag

    async def _settle(self, action: Callable[[], Awaitable[None]]) -> None:
        try:
            await action()
        except (aiormq.exceptions.ChannelInvalidStateError, aiormq.exceptions.AMQPError,
                ConnectionError) as exc:
            raise MessagingError(
                f"delivery on {self.queue.name} could not be settled ({exc!r}); the broker "
                "gives it back to the queue") from None

    async def ack(self) -> None:
        await self._settle(lambda: self._channel.basic_ack(self._tag, wait=False))

    async def requeue(self) -> None:
        await self._settle(lambda: self._channel.basic_nack(self._tag, requeue=True,
                                                            wait=False))

    async def reject(self) -> None:
        await self._settle(lambda: self._channel.basic_nack(self._tag, requeue=False,
                                                            wait=False))


class _AmqpSubscription(Subscription):
    """A consumer on a channel of its own, attached again after every reconnection."""

    def __init__(self, transport: AmqpTransport, *, spec: QueueSpec | None = None,
                 fanout_topic: str | None = None, reply_name: str | None = None,
                 on_message: OnMessage | None = None, prefetch: int = 1) -> None:
        self._transport = transport
        self._spec = spec
        self._fanout_topic = fanout_topic
        self._reply_name = reply_name
        self._on_message = on_message
        self._prefetch = max(1, prefetch)
        self._ident = uuid.uuid4().hex
        self._channel: AbstractChannel | None = None
        self._raw: aiormq.abc.AbstractChannel | None = None
        self._tag: str | None = None
        self._attach_lock = asyncio.Lock()
        self.cancelled = False

    @property
    def queue_name(self) -> str | None:
        """The work queue consumed (None for fanout and reply queues, named per attach)."""
        if self._fanout_topic is not None or self._spec is None:
            return None
        return self._spec.name

    async def attach(self, link: _Link) -> None:
        async with self._attach_lock:
            await self._attach(link)

    async def _attach(self, link: _Link) -> None:
        channel = await _open_channel(link.connection)
        try:
            raw = await channel.get_underlay_channel()
            no_ack = False
            if self._reply_name is not None:
                spec = QueueSpec(self._reply_name, "fanout")
                await channel.declare_queue(spec.name, **queue_declaration(
                    spec, self._transport.options))
                no_ack = True
                callback = self._on_reply
            elif self._fanout_topic is not None:
                exchange = await channel.declare_exchange(
                    fanout_exchange(self._fanout_topic), ExchangeType.FANOUT, durable=True)
                spec = QueueSpec(f"{exchange.name}.{self._ident}", "fanout")
                queue = await channel.declare_queue(spec.name, **queue_declaration(
                    spec, self._transport.options))
                await queue.bind(exchange)
                self._spec = spec
                callback = self._on_deliver
            else:
                assert self._spec is not None
                await link.declare(self._spec, self._transport.options)
                spec = self._spec
                callback = self._on_deliver
            if not no_ack:
                await raw.basic_qos(prefetch_count=self._prefetch)
            ok = await raw.basic_consume(spec.name, callback, no_ack=no_ack)
        except BaseException:
            await _close_quietly(channel)
            raise
        old, self._channel, self._raw, self._tag = self._channel, channel, raw, ok.consumer_tag
        raw.on_consumer_cancel_callbacks.add(self._on_broker_cancel)
        channel.close_callbacks.add(
            lambda _channel, exc, link=link: self._on_channel_closed(link, channel, exc))
        if old is not None:
            await _close_quietly(old)

    def _on_broker_cancel(self, frame: Basic.Cancel) -> None:
        # RabbitMQ cancels a consumer whose queue went away: deleted, or hosted on a node that
        # stopped (a classic queue this process consumed through another node). The queue is
        # declared again and consumed, or calls to it would go unanswered for good.
        if self.cancelled or frame.consumer_tag != self._tag:
            return
        LOG.warning("bus: RabbitMQ cancelled the consumer of %s; subscribing again",
                    self._spec.name if self._spec is not None else self._reply_name)
        self._transport._reattach_soon(self)

    def _on_channel_closed(self, link: _Link, channel: AbstractChannel,
                           exc: BaseException | None) -> None:
        # The broker closed this consumer's channel while the connection lives on (a channel
        # error); a lost connection (its channels close with a connection error) is the
        # reconnection's to mend, and a replaced or closed subscription needs nothing.
        if self.cancelled or channel is not self._channel or not link.alive \
                or not isinstance(exc, aiormq.exceptions.AMQPChannelError):
            return
        LOG.warning("bus: the channel consuming %s was closed (%r); subscribing again",
                    self._spec.name if self._spec is not None else self._reply_name, exc)
        self._transport._reattach_soon(self)

    async def _on_deliver(self, message: DeliveredMessage) -> None:
        delivery = message.delivery
        assert isinstance(delivery, Basic.Deliver) and self._spec is not None
        headers = message.header.properties.headers or {}
        count = headers.get("x-delivery-count")
        if not isinstance(count, int):
            count = 1 if delivery.redelivered else 0
        incoming = _AmqpIncoming(message.channel, delivery.delivery_tag or 0, message.body,
                                 count, self._spec)
        assert self._on_message is not None
        try:
            self._on_message(incoming)
        except Exception:
            LOG.exception("bus: consumer of %s failed to take a delivery", self._spec.name)
            await incoming.requeue()

    async def _on_reply(self, message: DeliveredMessage) -> None:
        self._transport._deliver_reply(message.header.properties.correlation_id, message.body)

    async def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self._transport._forget(self)
        raw, tag = self._raw, self._tag
        if raw is not None and tag is not None and not raw.is_closed:
            try:
                await raw.basic_cancel(tag)
            except Exception:
                LOG.debug("bus: basic.cancel failed (connection gone?)", exc_info=True)

    async def close(self) -> None:
        await self.cancel()
        if self._channel is not None:
            await _close_quietly(self._channel)


async def _close_quietly(channel: AbstractChannel) -> None:
    try:
        if not channel.is_closed:
            await channel.close()
    except Exception:
        LOG.debug("bus: closing a channel failed", exc_info=True)


class AmqpTransport(Transport):
    """A transport on a RabbitMQ cluster (one connection at a time, to one of its nodes)."""

    system = "rabbitmq"

    def __init__(self, url: TransportURL, options: TransportOptions) -> None:
        super().__init__(url, options)
        if not url.hosts:
            raise MessagingError("rabbit:// URL without hosts")
        self._ident = uuid.uuid4().hex
        self._link: _Link | None = None
        self._connected = asyncio.Event()
        self._closed = True
        self._host_index = 0
        self._reconnector: asyncio.Task[None] | None = None
        self._subscriptions: list[_AmqpSubscription] = []
        self._reply: _AmqpSubscription | None = None
        self._reply_lock = asyncio.Lock()
        self._reattaching: set[asyncio.Task[None]] = set()
        self._queue_checker: asyncio.Task[None] | None = None
        #: Connections established so far (the first one included).
        self.connections_made = 0

    @property
    def connected_to(self) -> BrokerHost | None:
        """The node of the URL this transport is connected to now (None between connections):
        which node's loss a process would feel, for an operator or a test."""
        link = self._link
        return link.host if link is not None and link.alive else None

    @property
    def connection_epoch(self) -> int | None:
        # Subscriptions are attached again before ``connections_made`` counts the new
        # connection: a fanout sent from then on reaches this process.
        link = self._link
        if self._closed or link is None or not link.alive:
            return None
        return self.connections_made

    # Connection life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        if not self._closed:
            return
        self._closed = False
        loop = asyncio.get_running_loop()
        try:
            await self._establish(deadline=loop.time() + self.options.connect_timeout)
        except BaseException:
            self._closed = True
            raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reconnector is not None:
            self._reconnector.cancel()
            self._reconnector = None
        for task in list(self._reattaching):
            task.cancel()
        if self._queue_checker is not None:
            self._queue_checker.cancel()
            self._queue_checker = None
        self._connected.clear()
        link, self._link = self._link, None
        self._subscriptions.clear()
        self._reply = None
        if link is not None:
            await link.close()
        self._fail_replies(TransportClosed("the bus transport was closed"))

    def _connection_url(self, host: BrokerHost) -> URL:
        vhost = self.url.virtual_host
        return URL.build(
            scheme="amqp", host=host.host, port=host.port,
            user=host.username or "guest", password=host.password or "guest",
            path="/" if vhost == "/" else "/" + vhost.replace("/", "%2F"),
            query={"heartbeat": str(self.options.heartbeat)})

    async def _open(self) -> _Link:
        """A connection to the first node that answers, starting after the last good one."""
        hosts = self.url.hosts
        errors: list[str] = []
        for step in range(len(hosts)):
            index = (self._host_index + step) % len(hosts)
            host = hosts[index]
            try:
                connection = await aio_pika.connect(
                    self._connection_url(host), timeout=self.options.connect_timeout,
                    client_properties={
                        "connection_name": f"stratus pid={os.getpid()} {self._ident[:8]}"})
            except _TRANSIENT as exc:
                errors.append(f"{host}: {exc!r}")
                continue
            self._host_index = index
            return _Link(connection, host)
        raise BusUnavailable("; ".join(errors))

    async def _establish(self, deadline: float | None) -> None:
        """Connect, restore subscriptions and the reply queue, then let senders go."""
        loop = asyncio.get_running_loop()
        backoff = _Backoff(self.options.reconnect_min, self.options.reconnect_max,
                           deadline=deadline)
        while True:
            if self._closed:
                raise TransportClosed("the bus transport was closed")
            link: _Link | None = None
            try:
                link = await self._open()
                for subscription in self._restorable():
                    await subscription.attach(link)
                if not link.alive:
                    raise BusUnavailable(f"connection to {link.host} lost while restoring")
            except _RETRY_CONNECT as exc:
                if link is not None:
                    await link.close()
                if backoff.expired():
                    raise BusUnavailable(
                        f"no RabbitMQ node of {self.url} could be reached: {exc}") from None
                await backoff.wait("bus: RabbitMQ %s unavailable (%s)", self.url, exc)
                continue
            if self._closed:
                await link.close()
                raise TransportClosed("the bus transport was closed")
            self._link = link
            link.connection.close_callbacks.add(
                lambda _sender, exc, link=link: self._on_connection_lost(link, exc))
            self.connections_made += 1
            self._connected.set()
            if self._queue_checker is None and self.options.queue_check_interval > 0:
                self._queue_checker = loop.create_task(self._check_work_queues())
            LOG.info("bus: connected to RabbitMQ %s (vhost %s)", link.host,
                     self.url.virtual_host)
            return

    def _restorable(self) -> list[_AmqpSubscription]:
        subscriptions = list(self._subscriptions)
        if self._reply is not None:
            subscriptions.insert(0, self._reply)
        return subscriptions

    def _on_connection_lost(self, link: _Link, exc: BaseException | None) -> None:
        if self._closed or link is not self._link:
            return
        self._link = None
        self._connected.clear()
        LOG.warning("bus: connection to RabbitMQ %s lost (%r); reconnecting", link.host, exc)
        if self._reconnector is None or self._reconnector.done():
            self._reconnector = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            await self._establish(deadline=None)
        except TransportClosed:
            pass
        except Exception:
            LOG.exception("bus: reconnection gave up")

    async def _wait_link(self, deadline: float, what: str) -> _Link:
        loop = asyncio.get_running_loop()
        while True:
            if self._closed:
                raise TransportClosed("the bus transport is not started or was closed")
            link = self._link
            if link is not None and link.alive:
                return link
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DeliveryFailed(f"{what}: RabbitMQ {self.url} unreachable")
            try:
                async with asyncio.timeout(remaining):
                    await self._connected.wait()
            except TimeoutError:
                raise DeliveryFailed(f"{what}: RabbitMQ {self.url} unreachable") from None
            if self._link is None:
                await asyncio.sleep(0.01)

    def _reattach_soon(self, subscription: _AmqpSubscription) -> None:
        task = asyncio.get_running_loop().create_task(self._reattach(subscription))
        self._reattaching.add(task)
        task.add_done_callback(self._reattaching.discard)

    async def _reattach(self, subscription: _AmqpSubscription) -> None:
        """Attach ``subscription`` again on the current connection, with backoff, until it
        is attached, cancelled, or the connection is lost (the reconnection then attaches
        every subscription)."""
        backoff = _Backoff(self.options.reconnect_min, self.options.reconnect_max)
        while not self._closed and not subscription.cancelled \
                and subscription in self._restorable():
            link = self._link
            if link is None or not link.alive:
                return
            if subscription.queue_name is not None:
                link.declared.discard(subscription.queue_name)
            try:
                await subscription.attach(link)
                return
            except _PERMANENT as exc:
                LOG.error("bus: subscribing to %s again refused: %s",
                          subscription.queue_name, exc)
                return
            except _TRANSIENT as exc:
                await backoff.wait("bus: subscribing to %s again failed (%r)",
                                   subscription.queue_name, exc)

    async def _check_work_queues(self) -> None:
        """Every ``queue_check_interval``: subscribe again to each consumed work queue that
        no longer exists or has no consumer at all (so not this one either). RabbitMQ can
        drop a consumer without a Basic.Cancel: a classic call queue is hosted on the node
        that first declared it, and a process that reconnects to another node while that
        one stops can consume the dying queue; a deleted quorum queue's consumers are not
        always told either. Calls or casts to it would go unhandled until the next
        reconnection."""
        interval = self.options.queue_check_interval
        while not self._closed:
            await asyncio.sleep(interval)
            link = self._link
            if link is None or not link.alive:
                continue
            # One look per queue, however many of this process's servers consume it (a
            # compute agent's hosts all consume the topic's shared queues): each look is a
            # passive declaration the broker answers, ~0.3 ms of its CPU.
            by_queue: dict[str, list[_AmqpSubscription]] = {}
            for subscription in self._subscriptions:
                name = subscription.queue_name
                if name is not None and not subscription.cancelled:
                    by_queue.setdefault(name, []).append(subscription)
            for name, subscriptions in by_queue.items():
                try:
                    consumers = await link.consumers_of(name)
                except _TRANSIENT:
                    break  # the connection is going; the reconnection subscribes again
                except Exception:  # the check must outlive any one surprise
                    LOG.exception("bus: checking queue %s failed", name)
                    continue
                if consumers:
                    continue
                for subscription in subscriptions:
                    if not subscription.cancelled:
                        LOG.warning("bus: queue %s %s; subscribing again", name,
                                    "went away" if consumers is None
                                    else "lost its consumer")
                        self._reattach_soon(subscription)

    def _forget(self, subscription: _AmqpSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    # Sending --------------------------------------------------------------------------------

    async def _publish(self, *, what: str, exchange: str, routing_key: str, body: bytes,
                       properties: Basic.Properties, confirm: bool, give_up_after: float | None,
                       prepare: Callable[[_Link], Awaitable[object]] | None) -> None:
        loop = asyncio.get_running_loop()
        budget = give_up_after if give_up_after is not None else self.options.send_timeout
        deadline = loop.time() + budget
        backoff = _Backoff(0.02, 0.5, deadline=deadline, jitter=False)
        last: BaseException | None = None
        while True:
            link = await self._wait_link(deadline, what)
            try:
                if prepare is not None:
                    await prepare(link)
                channel = await link.raw("confirm" if confirm else "fast", confirms=confirm)
                result = await channel.basic_publish(
                    body, exchange=exchange, routing_key=routing_key, properties=properties,
                    mandatory=confirm and not exchange,
                    timeout=max(0.001, deadline - loop.time()), wait=False)
                if confirm and not isinstance(result, Basic.Ack):
                    link.declared.discard(routing_key)
                    raise _Unroutable(f"{routing_key} did not route")
                return
            except _PERMANENT as exc:
                raise MessagingError(f"{what}: RabbitMQ refused: {exc}") from None
            except _RETRY_SEND as exc:
                last = exc
            if backoff.expired():
                raise DeliveryFailed(
                    f"{what} was not confirmed by RabbitMQ {self.url} within {budget:g}s "
                    f"(last error: {last!r})")
            await backoff.wait()

    async def send(self, queue: QueueSpec, body: bytes, *, msg_id: str,
                   ttl: float | None = None, give_up_after: float | None = None) -> None:
        is_cast = queue.kind == "cast"
        properties = Basic.Properties(
            message_id=msg_id, content_type="application/json",
            delivery_mode=2 if is_cast else 1,
            expiration=str(max(1, int(ttl * 1000))) if ttl is not None else None)
        # Fast path: connected, queue declared, channel open. Any trouble: the slow path below
        # (which waits for the connection and retries until the deadline).
        link = self._link
        channel = link.ready("confirm" if is_cast else "fast") if link is not None else None
        if channel is not None and link is not None and queue.name in link.declared:
            try:
                result = await channel.basic_publish(
                    body, routing_key=queue.name, properties=properties, mandatory=is_cast,
                    timeout=give_up_after or self.options.send_timeout, wait=False)
                if not is_cast or isinstance(result, Basic.Ack):
                    return
                link.declared.discard(queue.name)
            except _PERMANENT as exc:
                raise MessagingError(f"message {msg_id} to {queue.name}: RabbitMQ refused: "
                                     f"{exc}") from None
            except _RETRY_SEND:
                pass
        await self._publish(
            what=f"message {msg_id} to {queue.name}", exchange="", routing_key=queue.name,
            body=body, properties=properties, confirm=is_cast, give_up_after=give_up_after,
            prepare=lambda link: link.declare(queue, self.options))

    async def send_fanout(self, topic: str, body: bytes, *, msg_id: str,
                          give_up_after: float | None = None) -> None:
        properties = Basic.Properties(message_id=msg_id, content_type="application/json",
                                      delivery_mode=1)
        await self._publish(
            what=f"fanout {msg_id} to {topic}", exchange=fanout_exchange(topic),
            routing_key="", body=body, properties=properties, confirm=True,
            give_up_after=give_up_after, prepare=lambda link: link.declare_fanout(topic))

    async def send_reply(self, reply_to: str, body: bytes, *, msg_id: str) -> None:
        link = self._link
        if link is None or not link.alive:
            LOG.info("bus: reply %s to %s not sent: no connection", msg_id, reply_to)
            return
        properties = Basic.Properties(correlation_id=msg_id, delivery_mode=1,
                                      content_type="application/json")
        try:
            channel = link.ready("fast") or await link.raw("fast")
            # Not waiting for the frame to be written: the server's ack of the call, queued
            # next, then leaves in the same turn of the writer, after it.
            await channel.basic_publish(body, routing_key=reply_to, properties=properties,
                                        wait=False)
        except _TRANSIENT as exc:
            LOG.info("bus: reply %s to %s not sent: %r", msg_id, reply_to, exc)

    # Replies --------------------------------------------------------------------------------

    async def reply_address(self) -> str:
        if self._reply is not None:
            return reply_queue(self._ident)
        async with self._reply_lock:
            if self._reply is None:
                loop = asyncio.get_running_loop()
                link = await self._wait_link(loop.time() + self.options.send_timeout,
                                             "reply queue")
                subscription = _AmqpSubscription(self, reply_name=reply_queue(self._ident))
                await subscription.attach(link)
                self._reply = subscription
        return reply_queue(self._ident)

    # Receiving ------------------------------------------------------------------------------

    async def _add(self, subscription: _AmqpSubscription) -> Subscription:
        """Attach ``subscription`` and keep it attached across reconnections.

        A failed attach is tried again (on the next connection, if the broker closed this
        one) until ``send_timeout``: RabbitMQ may refuse a ``basic.consume`` on a quorum queue
        that another process declared a moment earlier, before the queue's replica runs
        (an INTERNAL_ERROR that closes the connection), and a queue deleted behind our back
        is answered 404 until it is declared again. A refusal no retry can fix (arguments
        that differ from the queue's, access refused) fails at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.send_timeout
        backoff = _Backoff(0.02, 0.5, deadline=deadline)
        while True:
            link = await self._wait_link(deadline, "subscribe")
            try:
                await subscription.attach(link)
            except _PERMANENT as exc:
                raise MessagingError(f"subscribe: RabbitMQ refused: {exc}") from None
            except _TRANSIENT as exc:
                if subscription.queue_name is not None:
                    link.declared.discard(subscription.queue_name)
                if backoff.expired():
                    raise DeliveryFailed(
                        f"subscribe to {subscription.queue_name}: RabbitMQ {self.url} "
                        f"refused within {self.options.send_timeout:g}s "
                        f"(last error: {exc!r})") from None
                await backoff.wait("bus: subscribing to %s failed (%r)",
                                   subscription.queue_name, exc)
                continue
            self._subscriptions.append(subscription)
            return subscription

    async def subscribe(self, queue: QueueSpec, on_message: OnMessage, *,
                        prefetch: int) -> Subscription:
        return await self._add(_AmqpSubscription(self, spec=queue, on_message=on_message,
                                                 prefetch=prefetch))

    async def subscribe_fanout(self, topic: str, on_message: OnMessage, *,
                               prefetch: int) -> Subscription:
        return await self._add(_AmqpSubscription(self, fanout_topic=topic,
                                                 on_message=on_message, prefetch=prefetch))

    async def pending(self, queue: str) -> int:
        loop = asyncio.get_running_loop()
        link = await self._wait_link(loop.time() + self.options.send_timeout, "pending")
        channel = await _open_channel(link.connection)
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return 0
        finally:
            await _close_quietly(channel)
        result = declared.declaration_result
        return int(result.message_count or 0)
