"""The in-process transport (``memory://``): a broker made of Python queues.

It keeps the contracts of :mod:`stratus.core.bus.transport.base` so that code tested on it
behaves the same on RabbitMQ: messages are copied as bytes, deliveries are acknowledged,
requeued or dead-lettered, unacknowledged ones return to their queue (``delivery_count`` + 1)
when their transport closes, prefetch bounds what a subscription holds, casts beyond
``max_attempts`` deliveries are dead-lettered, call messages expire.

One broker exists per name (``memory://`` is the default one, ``memory://NAME`` another) and
per event loop; it lives while a transport is attached to it. What it holds is lost with the
process: durability here means "for as long as the process runs".
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import ClassVar

from stratus.core.bus.errors import MessagingError, TransportClosed
from stratus.core.bus.target import fanout_exchange, reply_queue
from stratus.core.bus.transport.base import (
    Incoming,
    OnMessage,
    QueueSpec,
    Subscription,
    Transport,
    TransportOptions,
)
from stratus.core.bus.url import TransportURL

LOG = logging.getLogger(__name__)


class _Message:
    __slots__ = ("body", "delivery_count", "expires_at", "msg_id")

    def __init__(self, body: bytes, msg_id: str, expires_at: float | None = None) -> None:
        self.body = body
        self.msg_id = msg_id
        self.delivery_count = 0
        self.expires_at = expires_at


class _Queue:
    def __init__(self, broker: _Broker, spec: QueueSpec, delivery_limit: int | None) -> None:
        self.broker = broker
        self.spec = spec
        self.delivery_limit = delivery_limit
        self.ready: deque[_Message] = deque()
        self.consumers: list[_Consumer] = []
        self.deleted = False
        self._next = 0

    def put(self, message: _Message) -> None:
        if self.deleted:
            return
        self.ready.append(message)
        self.pump()

    def pump(self) -> None:
        """Hand ready messages to consumers with room, round-robin."""
        consumers = self.consumers
        ready = self.ready
        while ready and consumers:
            count = len(consumers)
            for _ in range(count):
                consumer = consumers[self._next % count]
                self._next += 1
                if len(consumer.unacked) < consumer.prefetch:
                    break
            else:
                return
            message = ready.popleft()
            if message.expires_at is not None and message.expires_at < time.monotonic():
                continue
            consumer.deliver(message)

    def give_back(self, message: _Message) -> None:
        """A delivery that ended without an ack: requeue it, or dead-letter it past the limit."""
        if self.deleted:
            return
        message.delivery_count += 1
        if self.delivery_limit is not None and message.delivery_count > self.delivery_limit:
            self.dead_letter(message)
            return
        self.ready.appendleft(message)
        self.pump()

    def dead_letter(self, message: _Message) -> None:
        if self.spec.dead_letter is None:
            return
        dead = self.broker.declare(QueueSpec(self.spec.dead_letter, "dead"), None)
        dead.put(_Message(message.body, message.msg_id))


class _Consumer:
    def __init__(self, queue: _Queue, on_message: OnMessage, prefetch: int) -> None:
        self.queue = queue
        self.on_message = on_message
        self.prefetch = prefetch
        self.unacked: dict[int, _Message] = {}
        self._tag = 0

    def deliver(self, message: _Message) -> None:
        self._tag += 1
        self.unacked[self._tag] = message
        try:
            self.on_message(_MemoryIncoming(self, self._tag, message))
        except Exception:
            LOG.exception("bus: consumer of %s failed to take a delivery", self.queue.spec.name)
            self.settle(self._tag)
            self.queue.give_back(message)

    def settle(self, tag: int) -> _Message:
        message = self.unacked.pop(tag, None)
        if message is None:
            raise MessagingError("delivery already settled, or its subscription is gone")
        return message

    def release(self) -> None:
        """The consumer is gone: its unacknowledged deliveries go back to the queue."""
        unacked, self.unacked = self.unacked, {}
        for message in unacked.values():
            self.queue.give_back(message)

    def detach(self) -> None:
        if self in self.queue.consumers:
            self.queue.consumers.remove(self)


class _MemoryIncoming(Incoming):
    __slots__ = ("_consumer", "_message", "_tag")

    def __init__(self, consumer: _Consumer, tag: int, message: _Message) -> None:
        super().__init__(message.body, message.delivery_count, consumer.queue.spec)
        self._consumer = consumer
        self._tag = tag
        self._message = message

    async def ack(self) -> None:
        self._consumer.settle(self._tag)
        self._consumer.queue.pump()

    async def requeue(self) -> None:
        message = self._consumer.settle(self._tag)
        self._consumer.queue.give_back(message)

    async def reject(self) -> None:
        message = self._consumer.settle(self._tag)
        self._consumer.queue.dead_letter(message)
        self._consumer.queue.pump()


class _MemorySubscription(Subscription):
    def __init__(self, transport: MemoryTransport, consumer: _Consumer,
                 exclusive: _Queue | None = None) -> None:
        self._transport = transport
        self._consumer = consumer
        self._exclusive = exclusive

    async def cancel(self) -> None:
        self._consumer.detach()
        if self._exclusive is not None:
            self._exclusive.deleted = True
            self._exclusive.ready.clear()
            self._exclusive.broker.unbind_fanout(self._exclusive)

    async def close(self) -> None:
        await self.cancel()
        self._consumer.release()
        self._transport._forget(self._consumer)


class _Broker:
    _registry: ClassVar[dict[str, _Broker]] = {}

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name
        self.loop = loop
        self.queues: dict[str, _Queue] = {}
        self.fanouts: dict[str, list[_Queue]] = {}
        self.replies: dict[str, MemoryTransport] = {}
        self.attached = 0

    @classmethod
    def attach(cls, name: str) -> _Broker:
        loop = asyncio.get_running_loop()
        broker = cls._registry.get(name)
        if broker is None or broker.loop is not loop:
            broker = cls._registry[name] = _Broker(name, loop)
        broker.attached += 1
        return broker

    def detach(self) -> None:
        self.attached -= 1
        if self.attached <= 0 and self._registry.get(self.name) is self:
            del self._registry[self.name]

    def declare(self, spec: QueueSpec, options: TransportOptions | None) -> _Queue:
        queue = self.queues.get(spec.name)
        limit = options.max_attempts if options is not None and spec.kind == "cast" else None
        if queue is None:
            queue = self.queues[spec.name] = _Queue(self, spec, limit)
        elif queue.spec != spec or (limit is not None and queue.delivery_limit != limit):
            raise MessagingError(
                f"queue {spec.name} exists with other arguments ({queue.spec.kind}, "
                f"dead letters to {queue.spec.dead_letter}, limit {queue.delivery_limit})")
        return queue

    def unbind_fanout(self, queue: _Queue) -> None:
        for queues in self.fanouts.values():
            if queue in queues:
                queues.remove(queue)


class MemoryTransport(Transport):
    """A transport attached to the in-process broker named by its URL."""

    system = "memory"

    def __init__(self, url: TransportURL, options: TransportOptions) -> None:
        super().__init__(url, options)
        self._broker: _Broker | None = None
        self._consumers: list[_Consumer] = []
        self._exclusive: list[_Queue] = []
        self._reply_address: str | None = None
        #: Queues this transport sent to, by name (skips the declaration check per message).
        self._declared: dict[str, tuple[QueueSpec, _Queue]] = {}

    @property
    def connection_epoch(self) -> int | None:
        return None if self._broker is None else 0

    async def start(self) -> None:
        if self._broker is None:
            self._broker = _Broker.attach(self.url.name)

    async def close(self) -> None:
        broker, self._broker = self._broker, None
        if broker is None:
            return
        for consumer in self._consumers:
            consumer.detach()
        for queue in self._exclusive:
            queue.deleted = True
            broker.unbind_fanout(queue)
        for consumer in self._consumers:
            consumer.release()
        self._consumers.clear()
        self._exclusive.clear()
        self._declared.clear()
        if self._reply_address is not None:
            broker.replies.pop(self._reply_address, None)
            self._reply_address = None
        self._fail_replies(TransportClosed("the bus transport was closed"))
        broker.detach()

    def _live(self) -> _Broker:
        if self._broker is None:
            raise TransportClosed("the bus transport is not started or was closed")
        return self._broker

    async def send(self, queue: QueueSpec, body: bytes, *, msg_id: str,
                   ttl: float | None = None, give_up_after: float | None = None) -> None:
        expires = time.monotonic() + ttl if ttl is not None else None
        known = self._declared.get(queue.name)
        if known is None or known[0] is not queue or self._broker is None:
            known = self._declared[queue.name] = (queue, self._live().declare(queue,
                                                                             self.options))
        known[1].put(_Message(body, msg_id, expires))

    async def send_fanout(self, topic: str, body: bytes, *, msg_id: str,
                          give_up_after: float | None = None) -> None:
        for queue in list(self._live().fanouts.get(topic, ())):
            queue.put(_Message(body, msg_id))

    async def send_reply(self, reply_to: str, body: bytes, *, msg_id: str) -> None:
        target = self._live().replies.get(reply_to)
        if target is not None:
            target._deliver_reply(msg_id, body)

    async def reply_address(self) -> str:
        broker = self._live()
        if self._reply_address is None:
            self._reply_address = reply_queue(uuid.uuid4().hex)
            broker.replies[self._reply_address] = self
        return self._reply_address

    async def subscribe(self, queue: QueueSpec, on_message: OnMessage, *,
                        prefetch: int) -> Subscription:
        return self._consume(self._live().declare(queue, self.options), on_message, prefetch)

    async def subscribe_fanout(self, topic: str, on_message: OnMessage, *,
                               prefetch: int) -> Subscription:
        broker = self._live()
        spec = QueueSpec(f"{fanout_exchange(topic)}.{uuid.uuid4().hex}", "fanout")
        queue = broker.declare(spec, None)
        broker.fanouts.setdefault(topic, []).append(queue)
        self._exclusive.append(queue)
        return self._consume(queue, on_message, prefetch, exclusive=True)

    def _consume(self, queue: _Queue, on_message: OnMessage, prefetch: int,
                 exclusive: bool = False) -> Subscription:
        consumer = _Consumer(queue, on_message, max(1, prefetch))
        queue.consumers.append(consumer)
        self._consumers.append(consumer)
        queue.pump()
        return _MemorySubscription(self, consumer, queue if exclusive else None)

    def _forget(self, consumer: _Consumer) -> None:
        if consumer in self._consumers:
            self._consumers.remove(consumer)

    async def pending(self, queue: str) -> int:
        found = self._live().queues.get(queue)
        return len(found.ready) if found is not None else 0
