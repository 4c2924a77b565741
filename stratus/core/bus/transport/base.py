"""What a transport is: the few broker primitives the RPC layer is built on.

A transport moves opaque bytes; it knows queues, not methods. The RPC layer (client, server)
encodes envelopes, picks queue names (:mod:`stratus.core.bus.target`) and decides what to do
with each delivery. Both transports give the same guarantees:

* :meth:`Transport.send` to a *cast* queue returns only once the message is safely with the
  broker (persistent, publisher-confirmed on RabbitMQ); if that cannot happen within the send
  timeout it raises :class:`~stratus.core.bus.errors.DeliveryFailed`, it never drops silently.
  While the broker is unreachable it waits for the reconnection and retries.
* A *call* queue carries transient messages with a time to live; they are handed to the broker
  but not confirmed (the caller waits for the reply anyway).
* Queues are declared by whoever uses them first (sender or receiver), so a message sent before
  any server started waits in its queue.
* A delivery stays unacknowledged until the receiver calls :meth:`Incoming.ack`. A receiver
  that goes away (closed, crashed, connection lost) gives its unacknowledged deliveries back to
  the queue for another consumer, with ``delivery_count`` one higher.
* A cast queue dead-letters a message to its topic's dead-letter queue when the receiver
  :meth:`Incoming.reject`\\ s it, or when it has been delivered more than ``max_attempts``
  times without an ack (a consumer that keeps dying on it).
* ``prefetch`` bounds the unacknowledged deliveries one subscription holds.
* Fanout reaches every subscription live at the time of sending; nothing is kept for
  subscriptions that come later.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratus.core.bus.errors import InvalidTransportURL
from stratus.core.bus.target import call_queue, cast_queue, dead_letter_queue
from stratus.core.bus.url import TransportURL

QueueKind = Literal["cast", "call", "dead", "fanout"]


class TransportOptions(BaseModel):
    """Tunables of a transport; set as query parameters of the bus URL
    (``rabbit://h/?max_attempts=3&send_timeout=10``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Deliveries of a cast before it goes to the dead-letter queue. Part of the queues'
    #: declaration on RabbitMQ: every process of a deployment must use the same value.
    max_attempts: int = Field(5, ge=1, le=1000)
    #: Seconds a send may wait for the broker (reconnection included) before DeliveryFailed.
    send_timeout: float = Field(30.0, gt=0)
    #: Seconds ``start()`` tries to reach a broker before BusUnavailable.
    connect_timeout: float = Field(10.0, gt=0)
    #: Reconnection backoff: first delay, and the cap it doubles up to (with jitter).
    reconnect_min: float = Field(0.1, gt=0)
    reconnect_max: float = Field(5.0, gt=0)
    #: AMQP heartbeat in seconds (a dead peer is noticed after about twice this).
    heartbeat: int = Field(30, ge=0)
    #: Seconds between checks that each consumed work queue still exists and has a
    #: consumer (0: never): RabbitMQ does not always tell a consumer it dropped (a call
    #: queue's node stopped, a quorum queue deleted).
    queue_check_interval: float = Field(5.0, ge=0)

    @classmethod
    def from_url(cls, url: TransportURL) -> TransportOptions:
        try:
            return cls.model_validate(url.options)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                for e in exc.errors(include_input=False, include_url=False))
            raise InvalidTransportURL(f"bad bus URL option: {problems}") from None


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A work queue and how it is declared."""

    name: str
    kind: QueueKind
    #: Queue that rejected or over-delivered messages go to (cast queues).
    dead_letter: str | None = None

    @classmethod
    def cast(cls, topic: str, server: str | None = None) -> QueueSpec:
        return cls(cast_queue(topic, server), "cast", dead_letter_queue(topic))

    @classmethod
    def call(cls, topic: str, server: str | None = None) -> QueueSpec:
        return cls(call_queue(topic, server), "call")

    @classmethod
    def dead(cls, topic: str) -> QueueSpec:
        return cls(dead_letter_queue(topic), "dead")


class Incoming(ABC):
    """One delivery. Settle it exactly once with ack, requeue or reject.

    Settling after the subscription's connection is gone raises
    :class:`~stratus.core.bus.errors.MessagingError`: the broker has already given the message
    back to the queue.
    """

    __slots__ = ("body", "delivery_count", "queue")

    def __init__(self, body: bytes, delivery_count: int, queue: QueueSpec) -> None:
        self.body = body
        #: Earlier deliveries of this message that ended without an ack (0 the first time).
        self.delivery_count = delivery_count
        self.queue = queue

    @abstractmethod
    async def ack(self) -> None:
        """Done: the broker forgets the message."""

    @abstractmethod
    async def requeue(self) -> None:
        """Not done: back to its queue for another attempt (``delivery_count`` + 1)."""

    @abstractmethod
    async def reject(self) -> None:
        """Give up: to the dead-letter queue if the queue has one, else dropped."""


#: Called once per delivery. Must not block: schedule the work and return.
OnMessage = Callable[[Incoming], None]


class Subscription(ABC):
    """A live consumer of one queue."""

    @abstractmethod
    async def cancel(self) -> None:
        """Stop new deliveries. Deliveries already handed out can still be settled."""

    @abstractmethod
    async def close(self) -> None:
        """Cancel, and give unsettled deliveries back to the queue."""


class Transport(ABC):
    """A connection to one broker (in-process or RabbitMQ) for one process."""

    #: ``messaging.system`` of the spans: ``memory`` or ``rabbitmq``.
    system: ClassVar[str]

    def __init__(self, url: TransportURL, options: TransportOptions) -> None:
        self.url = url
        self.options = options
        self._replies: dict[str, asyncio.Future[bytes]] = {}

    # Life cycle -----------------------------------------------------------------------------

    @abstractmethod
    async def start(self) -> None:
        """Connect; :class:`~stratus.core.bus.errors.BusUnavailable` if no broker answers
        within ``connect_timeout``. Calling it twice is harmless."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect. Unacknowledged deliveries go back to their queues; waiting calls fail
        with :class:`~stratus.core.bus.errors.TransportClosed`."""

    @property
    def connection_epoch(self) -> int | None:
        """The connection this transport is on now: None while it has none (fanouts sent
        meanwhile do not reach this process), and a number that changes with each new
        connection, so that what was learnt from fanouts on an older one can be dropped
        (``stratus.core.image_caches``). A transport that is never disconnected while
        started keeps one number."""
        return None

    async def __aenter__(self) -> Transport:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # Sending --------------------------------------------------------------------------------

    @abstractmethod
    async def send(self, queue: QueueSpec, body: bytes, *, msg_id: str,
                   ttl: float | None = None, give_up_after: float | None = None) -> None:
        """Put ``body`` on a cast or call queue (declaring it if needed).

        Cast queues: persistent, confirmed; retried through broker outages until confirmed or
        ``timeout`` (default ``send_timeout``) runs out, then DeliveryFailed. Call queues: the
        message expires after ``ttl`` seconds; not confirmed.
        """

    @abstractmethod
    async def send_fanout(self, topic: str, body: bytes, *, msg_id: str,
                          give_up_after: float | None = None) -> None:
        """Copy ``body`` to every live fanout subscription of ``topic`` (confirmed)."""

    @abstractmethod
    async def send_reply(self, reply_to: str, body: bytes, *, msg_id: str) -> None:
        """Answer a call. Best effort: a caller that is gone is not an error."""

    # Replies --------------------------------------------------------------------------------

    @abstractmethod
    async def reply_address(self) -> str:
        """This process's reply queue (created on first use)."""

    def expect_reply(self, msg_id: str) -> asyncio.Future[bytes]:
        """A future the reply to call ``msg_id`` will complete; forget it when done."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = future
        return future

    def forget_reply(self, msg_id: str) -> None:
        self._replies.pop(msg_id, None)

    def _deliver_reply(self, msg_id: str | None, body: bytes) -> None:
        future = self._replies.pop(msg_id, None) if msg_id else None
        if future is not None and not future.done():
            future.set_result(body)

    def _fail_replies(self, exc: BaseException) -> None:
        replies, self._replies = self._replies, {}
        for future in replies.values():
            if not future.done():
                future.set_exception(exc)

    # Receiving ------------------------------------------------------------------------------

    @abstractmethod
    async def subscribe(self, queue: QueueSpec, on_message: OnMessage, *,
                        prefetch: int) -> Subscription:
        """Consume a cast, call or dead-letter queue (declaring it if needed). On RabbitMQ
        the subscription comes back by itself after a reconnection."""

    @abstractmethod
    async def subscribe_fanout(self, topic: str, on_message: OnMessage, *,
                               prefetch: int) -> Subscription:
        """Receive the topic's fanouts from now on, on a queue of this subscription's own."""

    @abstractmethod
    async def pending(self, queue: str) -> int:
        """Messages ready in ``queue`` (not counting unacknowledged ones); 0 if it does not
        exist. For tests and operators."""
