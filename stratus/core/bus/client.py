"""The sending side: :class:`RPCClient` casts, calls and fans out to one target.

Contracts:

* ``cast`` returns once the broker holds the message durably (confirmed); a server handles it
  at least once, later. It raises :class:`DeliveryFailed` when that cannot happen within the
  send timeout (a broker outage longer than that); it never drops a message silently.
* ``call`` returns the handler's (JSON) result, raises :class:`MessagingTimeout` when no reply
  comes within the client's timeout, and :class:`RemoteError` (type and message, no remote
  traceback) when the handler raised — of the handler's error type too when that type is on
  the client's ``errors`` allow-list (``errors.remote_error``).
* ``fanout`` reaches every server of the topic that is live when it is sent.
* Every message carries ``ctx`` (request ids, identity, roles, tokens): the handler runs with
  an equal context, and its log lines and spans name the same request id.
* Arguments are keyword arguments; anything pydantic can serialise to JSON goes (models,
  dataclasses, datetimes, UUIDs, ...). The server validates them against the handler's
  signature. Code outside the bus uses this class (usually through an ``rpcapi`` module) and
  never builds a message by hand.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import lru_cache
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from stratus.core.bus.envelope import (
    Kind,
    decode_reply,
    encode_request,
    new_message_id,
)
from stratus.core.bus.errors import (
    DeliveryFailed,
    InvalidTarget,
    MessagingTimeout,
    allow_list,
    remote_error,
)
from stratus.core.bus.target import Target
from stratus.core.bus.transport.base import QueueSpec, Transport
from stratus.core.context import RequestContext
from stratus.core.metrics import BUS_CALL_DURATION, BUS_SEND_ERRORS, BUS_SENT, child
from stratus.core.tracing import REQUEST_ID_ATTRIBUTE, span

DEFAULT_CALL_TIMEOUT = 60.0

_UNSET: Any = object()
_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")


def _carrier() -> dict[str, str] | None:
    """W3C trace headers of the current span, so the server's span joins the same trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


@contextmanager
def _traced(name: str, kind: SpanKind, attributes: dict[str, Any]) -> Iterator[Any]:
    with span(name, kind, **attributes):
        yield _carrier()


_UNTRACED: AbstractContextManager[Any] = nullcontext(None)


def _sending(name: str, kind: SpanKind,
             attributes: Callable[[], dict[str, Any]]) -> AbstractContextManager[Any]:
    """Enter to get the trace headers the message carries (or None).

    Inside a recorded span (an API request) the sender gets a span of its own, a child of
    the caller's, and the message carries it. Outside any recorded span (a periodic task, a
    benchmark loop) no sender span is made: it would start a trace of its own and cost more
    than the cast. The handler's span is always recorded.
    """
    current = trace.get_current_span()
    if current.is_recording():
        return _traced(name, kind, attributes())
    if current.get_span_context().is_valid:
        return nullcontext(_carrier())
    return _UNTRACED


@lru_cache(maxsize=4096)
def _checked_method(method: str) -> str:
    if not _METHOD.fullmatch(method):
        raise ValueError(f"{method!r} cannot be a bus method (letters, digits and '_', "
                         "starting with a letter)")
    return method


class RPCClient:
    """Sends messages to ``target`` through ``transport``.

    ``timeout`` bounds a call (send and reply); ``send_timeout`` how long a cast or fanout may
    wait for the broker (default: the transport's ``send_timeout``).
    """

    def __init__(self, transport: Transport, target: Target, *,
                 timeout: float = DEFAULT_CALL_TIMEOUT,
                 send_timeout: float | None = None,
                 errors: Iterable[type[Exception]] = ()) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.transport = transport
        self.target = target
        self.timeout = timeout
        self.send_timeout = send_timeout
        #: Remote error types a call re-raises as themselves (see ``errors.remote_error``).
        self.errors = allow_list(errors)
        self._cast_queue = QueueSpec.cast(target.topic, target.server)
        self._call_queue = QueueSpec.call(target.topic, target.server)

    def prepare(self, *, topic: str | None = None, server: str | None = _UNSET,
                fanout: bool | None = None, version: str | None = None,
                timeout: float | None = None,
                send_timeout: float | None = _UNSET) -> RPCClient:
        """A client for a variant of this target (another topic of the same unit, one
        server, fanout, another version) or with other timeouts. The original is
        unchanged."""
        changes: dict[str, Any] = {}
        if topic is not None:
            changes["topic"] = topic
        if server is not _UNSET:
            changes["server"] = server
        if fanout is not None:
            changes["fanout"] = fanout
        if version is not None:
            changes["version"] = version
        return RPCClient(
            self.transport, self.target.replace(**changes) if changes else self.target,
            timeout=timeout if timeout is not None else self.timeout,
            send_timeout=self.send_timeout if send_timeout is _UNSET else send_timeout,
            errors=self.errors.values())

    def _encode(self, kind: Kind, msg_id: str, ctx: RequestContext, method: str,
                args: dict[str, Any], carrier: dict[str, str] | None, **extra: Any) -> bytes:
        if not isinstance(ctx, RequestContext):
            raise TypeError(f"the first argument of {kind} must be a RequestContext, "
                            f"not {type(ctx).__name__}")
        return encode_request(kind=kind, msg_id=msg_id, method=_checked_method(method),
                              version=self.target.version, args=args, context=ctx,
                              trace=carrier, **extra)

    def _span_attributes(self, ctx: RequestContext, msg_id: str) -> dict[str, Any]:
        return {REQUEST_ID_ATTRIBUTE: ctx.request_id,
                "openstack.global_request_id": ctx.global_request_id,
                "messaging.system": self.transport.system,
                "messaging.destination.name": str(self.target),
                "messaging.message.id": msg_id}

    async def cast(self, ctx: RequestContext, method: str, /, **kwargs: Any) -> None:
        """Send ``method(**kwargs)`` to one server of the target (or all, for a fanout
        target) without waiting for it to run."""
        if self.target.fanout:
            await self._fanout(ctx, method, kwargs)
            return
        msg_id = new_message_id()
        with _sending(f"bus.cast {self.target}.{method}", SpanKind.PRODUCER,
                      lambda: self._span_attributes(ctx, msg_id)) as carrier:
            body = self._encode("cast", msg_id, ctx, method, kwargs, carrier)
            try:
                await self.transport.send(self._cast_queue, body, msg_id=msg_id,
                                          give_up_after=self.send_timeout)
            except DeliveryFailed:
                child(BUS_SEND_ERRORS, "cast", self.target.topic, "delivery").inc()
                raise
        child(BUS_SENT, "cast", self.target.topic, method).inc()

    async def fanout(self, ctx: RequestContext, method: str, /, **kwargs: Any) -> None:
        """Send ``method(**kwargs)`` to every live server of the target's topic."""
        await self._fanout(ctx, method, kwargs)

    async def _fanout(self, ctx: RequestContext, method: str, kwargs: dict[str, Any]) -> None:
        msg_id = new_message_id()
        with _sending(f"bus.fanout {self.target.topic}.{method}", SpanKind.PRODUCER,
                      lambda: self._span_attributes(ctx, msg_id)) as carrier:
            body = self._encode("fanout", msg_id, ctx, method, kwargs, carrier)
            try:
                await self.transport.send_fanout(self.target.topic, body, msg_id=msg_id,
                                                 give_up_after=self.send_timeout)
            except DeliveryFailed:
                child(BUS_SEND_ERRORS, "fanout", self.target.topic, "delivery").inc()
                raise
        child(BUS_SENT, "fanout", self.target.topic, method).inc()

    async def _reply_address(self, deadline: float) -> str:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(max(0.001, deadline - loop.time())):
                return await self.transport.reply_address()
        except TimeoutError:
            raise MessagingTimeout(f"no reply queue within {self.timeout:g}s: the broker "
                                   "is unreachable") from None

    async def call(self, ctx: RequestContext, method: str, /, **kwargs: Any) -> Any:
        """Run ``method(**kwargs)`` on one server and return its result (JSON types)."""
        if self.target.fanout:
            raise InvalidTarget("a call goes to one server, not to a fanout target")
        transport = self.transport
        loop = asyncio.get_running_loop()
        timeout = self.timeout
        deadline = loop.time() + timeout
        msg_id = new_message_id()
        topic = self.target.topic
        started = time.perf_counter()
        with _sending(f"bus.call {self.target}.{method}", SpanKind.CLIENT,
                      lambda: self._span_attributes(ctx, msg_id)) as carrier:
            body = self._encode("call", msg_id, ctx, method, kwargs, carrier,
                                reply_to=await self._reply_address(deadline),
                                expires=time.time() + timeout)
            future = transport.expect_reply(msg_id)
            try:
                await transport.send(
                    self._call_queue, body, msg_id=msg_id, ttl=timeout,
                    give_up_after=max(0.001, deadline - loop.time()))
                child(BUS_SENT, "call", topic, method).inc()
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    raw = await future
            except TimeoutError:
                child(BUS_SEND_ERRORS, "call", topic, "timeout").inc()
                raise MessagingTimeout(
                    f"no reply to {method} from {self.target} within {timeout:g}s") from None
            except DeliveryFailed:
                child(BUS_SEND_ERRORS, "call", topic, "delivery").inc()
                raise
            finally:
                transport.forget_reply(msg_id)
            reply = decode_reply(raw)
        child(BUS_CALL_DURATION, topic, method).observe(time.perf_counter() - started)
        if reply.ok:
            return reply.result
        assert reply.error is not None
        child(BUS_SEND_ERRORS, "call", topic, "remote").inc()
        raise remote_error(reply.error.type, reply.error.message, self.errors)
