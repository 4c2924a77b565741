"""The receiving side: :class:`RPCServer` runs a manager's allow-listed methods.

A server for ``Target(topic, server=host)`` consumes the topic's cast and call queues
(competing with the topic's other servers), its own ``topic.host`` cast and call queues, and
the topic's fanouts; a ``host_only`` server only its own queues (a topic whose senders always
name the host: the shared queues would be declared and consumed for nothing). Each delivery
is handled in its own task, at most ``prefetch`` at a time per queue.

Contracts:

* The handler runs with the sender's context: same request id (also set as the current request
  id, so log lines show it) and one span per handled message carrying it.
* A cast is acknowledged only after its handler returned. A handler that raises gets the
  message again (``delivery_count`` + 1) until ``max_attempts`` deliveries; then the message
  goes to the topic's dead-letter queue and an error naming its request id is logged. Messages
  that can never succeed (invalid envelope or arguments, unknown method, unsupported version)
  go there at once.
* A call is answered with the result or with the error's type and message (the traceback
  stays in this server's log), then acknowledged. Calls whose caller stopped waiting are
  skipped.
* A fanout whose handler raises is logged and not redelivered.
* Within one server, a message id already handled successfully is acknowledged without
  running the handler again (redeliveries after a lost ack, duplicates from a sender's retry
  after a lost confirm). Across servers the bus is at-least-once: handlers are idempotent.
* ``stop()`` stops taking messages, waits for in-flight handlers (``drain_timeout``), then
  gives back what is unfinished.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import SpanKind

from stratus.core.bus.dispatcher import Dispatcher
from stratus.core.bus.envelope import (
    Request,
    decode_request,
    describe,
    encode_error,
    encode_result,
)
from stratus.core.bus.errors import (
    InvalidMessage,
    InvalidTarget,
    MessagingError,
    UnknownMethod,
    UnsupportedVersion,
)
from stratus.core.bus.target import Target
from stratus.core.bus.transport.base import Incoming, QueueSpec, Subscription, Transport
from stratus.core.context import (
    RequestContext,
    reset_instance,
    reset_request_id,
    set_instance,
    set_request_id,
)
from stratus.core.exceptions import StratusError
from stratus.core.metrics import BUS_HANDLED, BUS_IN_FLIGHT, UNKNOWN_METHOD, child
from stratus.core.tracing import span

LOG = logging.getLogger(__name__)

#: Whether the handler running is the first run of its message's first delivery (False: the
#: broker delivered it before, or the handler ran before in this delivery, through a database
#: outage). Outside a handler: True.
_FIRST_DELIVERY: ContextVar[bool] = ContextVar("bus_first_delivery", default=True)


def first_delivery() -> bool:
    """Whether the message being handled is seen for the first time, as far as the bus
    can tell: its first delivery, first run. A handler may then skip a check that only a
    repeated message needs; a sender's duplicate (a publish retried after a lost confirm)
    is a first delivery too, so what it skips must be safe to find done already."""
    return _FIRST_DELIVERY.get()


DEFAULT_PREFETCH = 32
#: Message ids remembered for duplicate suppression.
DEFAULT_DEDUPE_WINDOW = 10_000

#: Errors of the sender: retrying the same message cannot succeed.
_NEVER_RETRY = (InvalidMessage, UnknownMethod, UnsupportedVersion)


#: Seconds a handler is run again while the database is unreachable before it fails.
DATABASE_OUTAGE_WAIT = 45.0


class RPCServer:
    """Serves ``methods`` of ``manager`` on ``target`` (see the module's contracts);
    ``host_only``: on the target server's own queues only."""

    def __init__(self, transport: Transport, target: Target, manager: object,
                 methods: Iterable[str], *, prefetch: int = DEFAULT_PREFETCH,
                 dedupe_window: int = DEFAULT_DEDUPE_WINDOW, host_only: bool = False) -> None:
        if target.fanout:
            raise InvalidTarget("a server listens on a topic (and server), not a fanout")
        if host_only and target.server is None:
            raise InvalidTarget("a host-only server needs the target's server")
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        self.transport = transport
        self.target = target
        self.dispatcher = Dispatcher(manager, methods, version=target.version)
        self.prefetch = prefetch
        self.host_only = host_only
        self._dedupe_window = dedupe_window
        self._recent: OrderedDict[str, asyncio.Future[bool]] = OrderedDict()
        self._subscriptions: list[Subscription] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._running = False
        self._in_flight_gauge = BUS_IN_FLIGHT.labels(target.topic)

    @property
    def running(self) -> bool:
        return self._running

    @property
    def inflight(self) -> int:
        """Messages being handled right now."""
        return len(self._inflight)

    async def start(self) -> None:
        if self._running:
            return
        topic, server = self.target.topic, self.target.server
        queues = [] if self.host_only else [QueueSpec.cast(topic), QueueSpec.call(topic)]
        if server is not None:
            queues += [QueueSpec.cast(topic, server), QueueSpec.call(topic, server)]
        try:
            for queue in queues:
                self._subscriptions.append(await self.transport.subscribe(
                    queue, self._on_message, prefetch=self.prefetch))
            if not self.host_only:
                self._subscriptions.append(await self.transport.subscribe_fanout(
                    topic, self._on_message, prefetch=self.prefetch))
        except BaseException:
            await self._close_subscriptions()
            raise
        self._running = True
        LOG.info("bus: serving %s (%s) on %s", self.target,
                 ", ".join(self.dispatcher.endpoints), self.transport.url)

    async def stop(self, *, drain_timeout: float = 30.0) -> None:
        """Stop taking messages; let in-flight handlers finish (up to ``drain_timeout``
        seconds, after which they are cancelled and their messages go back to the queue)."""
        self._running = False
        for subscription in self._subscriptions:
            try:
                await subscription.cancel()
            except MessagingError as exc:
                LOG.debug("bus: cancel failed: %s", exc)
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=drain_timeout)
            if pending:
                LOG.warning("bus: %d handler(s) of %s still running after %.1fs; cancelled, "
                            "their messages go back to the queue", len(pending), self.target,
                            drain_timeout)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        await self._close_subscriptions()

    async def _close_subscriptions(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            try:
                await subscription.close()
            except MessagingError as exc:
                LOG.debug("bus: closing a subscription failed: %s", exc)

    async def __aenter__(self) -> RPCServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # Handling -------------------------------------------------------------------------------

    def _on_message(self, incoming: Incoming) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(incoming))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _handle(self, incoming: Incoming) -> None:
        gauge = self._in_flight_gauge
        gauge.inc()
        try:
            await self._handle_one(incoming)
        finally:
            gauge.dec()

    async def _handle_one(self, incoming: Incoming) -> None:
        try:
            request = decode_request(incoming.body)
        except InvalidMessage as exc:
            doc = _peek(incoming.body)
            context = doc.get("context")
            request_id = context.get("request_id") if isinstance(context, dict) else None
            named = f" (request {request_id})" if isinstance(request_id, str) else ""
            if incoming.queue.kind == "call":
                LOG.error("bus: invalid call on %s%s dropped: %s", incoming.queue.name,
                          named, exc)
                await self._answer_invalid(doc, exc)
            else:
                LOG.error("bus: invalid message on %s%s sent to the dead-letter queue: %s",
                          incoming.queue.name, named, exc)
            await _settle(incoming.reject)
            self._count(incoming.queue.kind, UNKNOWN_METHOD, "invalid")
            return
        ctx = request.context.to_context()
        token = set_request_id(ctx.request_id)
        instance_token = set_instance(_instance_of(request.args))
        first_token = _FIRST_DELIVERY.set(incoming.delivery_count == 0)
        outcome = "error"
        try:
            if request.kind == "call":
                outcome = await self._handle_call(request, ctx, incoming)
            else:
                outcome = await self._handle_cast(request, ctx, incoming)
        finally:
            method = (request.method if request.method in self.dispatcher.endpoints
                      else UNKNOWN_METHOD)
            self._count(request.kind, method, outcome)
            _FIRST_DELIVERY.reset(first_token)
            reset_instance(instance_token)
            reset_request_id(token)

    def _count(self, kind: str, method: str, outcome: str) -> None:
        child(BUS_HANDLED, kind, self.target.topic, method, outcome).inc()

    async def _answer_invalid(self, doc: dict[str, Any], exc: InvalidMessage) -> None:
        """Tell the caller of an invalid call why, when the message says who it is."""
        msg_id, reply_to = doc.get("id"), doc.get("reply_to")
        if isinstance(msg_id, str) and isinstance(reply_to, str) and msg_id and reply_to:
            await self.transport.send_reply(
                reply_to, encode_error(msg_id, type(exc).__name__, str(exc)), msg_id=msg_id)

    async def _run(self, request: Request, ctx: RequestContext, queue: str) -> Any:
        attributes: dict[str, Any] = {
            "openstack.global_request_id": ctx.global_request_id,
            "messaging.system": self.transport.system,
            "messaging.destination.name": queue,
            "messaging.message.id": request.id,
            "messaging.operation": "process",
        }
        parent = otel_context.attach(propagate.extract(request.trace)) if request.trace \
            else None
        try:
            with span(f"bus.{request.kind} {self.target.topic}.{request.method}",
                      SpanKind.CONSUMER, **attributes):
                return await self._dispatch_through_outages(request, ctx)
        finally:
            if parent is not None:
                otel_context.detach(parent)

    async def _dispatch_through_outages(self, request: Request, ctx: RequestContext) -> Any:
        """Run the handler; while it fails because the database went away (a restart), run
        it again with backoff for up to ``DATABASE_OUTAGE_WAIT`` seconds (and no longer than
        a call's caller waits). Its transaction was rolled back and handlers are idempotent;
        failing at once would spend a cast's redeliveries within the outage and leave the
        instance it was about (a failed build, a delete) in its task state for good."""
        from stratus.core.db import database_unreachable

        deadline = time.monotonic() + DATABASE_OUTAGE_WAIT
        delay = 0.25
        while True:
            try:
                return await self.dispatcher.dispatch(request, ctx)
            except Exception as exc:
                if not database_unreachable(exc):
                    raise
                retry_at = time.monotonic() + delay
                if retry_at > deadline or (request.expires is not None
                                           and time.time() + delay > request.expires):
                    raise
                LOG.warning("bus: %s: the database is unreachable (%s); running it again in "
                            "%g s", describe(request), type(exc).__name__, delay)
                _FIRST_DELIVERY.set(False)  # the run again may find its own work done
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)

    async def _handle_call(self, request: Request, ctx: RequestContext,
                           incoming: Incoming) -> str:
        if request.expires is not None and request.expires < time.time():
            LOG.info("bus: skipping %s: its caller stopped waiting", describe(request))
            await _settle(incoming.ack)
            return "expired"
        outcome = "ok"
        try:
            body = encode_result(request.id, await self._run(request, ctx,
                                                             incoming.queue.name))
        except Exception as exc:
            _log_failure(request, exc, "answered with an error")
            body = encode_error(request.id, type(exc).__name__, str(exc))
            outcome = "rejected" if isinstance(exc, _NEVER_RETRY) else "error"
        if request.reply_to:
            await self.transport.send_reply(request.reply_to, body, msg_id=request.id)
        await _settle(incoming.ack)
        return outcome

    async def _handle_cast(self, request: Request, ctx: RequestContext,
                           incoming: Incoming) -> str:
        prior = self._recent.get(request.id)
        if prior is not None:
            handled = await asyncio.shield(prior) if not prior.done() else prior.result()
            if handled:
                LOG.info("bus: %s was already handled here; acknowledged without running it "
                         "again", describe(request))
                await _settle(incoming.ack)
                return "duplicate"
        marker: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._remember(request.id, marker)
        try:
            await self._run(request, ctx, incoming.queue.name)
        except _NEVER_RETRY as exc:
            marker.set_result(False)
            LOG.error("bus: %s cannot be handled (%s: %s); sent to the dead-letter queue",
                      describe(request), type(exc).__name__, exc)
            await _settle(incoming.reject)
            return "rejected"
        except Exception as exc:
            marker.set_result(False)
            await self._failed(request, incoming, exc)
            return "error"
        else:
            marker.set_result(True)
            await _settle(incoming.ack)
            return "ok"
        finally:
            if not marker.done():  # cancelled (stop): the message goes back to the queue
                marker.set_result(False)

    async def _failed(self, request: Request, incoming: Incoming, exc: Exception) -> None:
        attempt = incoming.delivery_count + 1
        limit = self.transport.options.max_attempts
        if request.kind == "fanout":
            _log_failure(request, exc, "not redelivered (fanout)")
            await _settle(incoming.ack)
        elif attempt >= limit:
            _log_failure(request, exc, f"sent to the dead-letter queue after {attempt} "
                                       "attempts", level=logging.ERROR)
            await _settle(incoming.reject)
        else:
            _log_failure(request, exc, f"attempt {attempt} of {limit}; requeued")
            await _settle(incoming.requeue)

    def _remember(self, msg_id: str, marker: asyncio.Future[bool]) -> None:
        recent = self._recent
        recent[msg_id] = marker
        recent.move_to_end(msg_id)
        while len(recent) > self._dedupe_window:
            recent.popitem(last=False)


def _instance_of(args: dict[str, Any]) -> str | None:
    """The instance a message is about, for its log lines: its ``instance_uuid`` argument,
    or that of the request or claim it carries (one instance only)."""
    uuid = args.get("instance_uuid")
    if isinstance(uuid, str):
        return uuid
    for name in ("request", "claim"):
        inner = args.get(name)
        if isinstance(inner, dict):
            uuid = inner.get("instance_uuid")
            if isinstance(uuid, str):
                return uuid
            uuids = inner.get("instance_uuids")
            if isinstance(uuids, list) and len(uuids) == 1 and isinstance(uuids[0], str):
                return uuids[0]
    return None


def _peek(body: bytes) -> dict[str, Any]:
    """What can be read of an invalid message (to name its request and caller), or {}."""
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


async def _settle(action: Callable[[], Awaitable[None]]) -> None:
    try:
        await action()
    except MessagingError as exc:
        LOG.info("bus: %s", exc)


def _log_failure(request: Request, exc: Exception, outcome: str,
                 level: int = logging.WARNING) -> None:
    """One line per failure; the traceback too unless it is an expected domain error."""
    expected = isinstance(exc, StratusError | MessagingError)
    LOG.log(level, "bus: %s failed: %s: %s; %s", describe(request), type(exc).__name__, exc,
            outcome, exc_info=None if expected else exc)
