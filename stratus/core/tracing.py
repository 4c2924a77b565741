"""Tracing: one span per API request and per outgoing call, each carrying the request id
(and the instance the request is about, where known).

Spans go through OpenTelemetry. The trace context travels in the bus envelope and in HTTP
headers (W3C ``traceparent``), so one request's spans share one trace id across processes.
The CLI's processes keep their spans in the embedded span store
(``stratus.core.spanstore.enable_span_store``) and, with an OTLP endpoint, export them in
batches; tests attach an in-memory exporter. Without an OTLP endpoint the spans are made by
``stratus.core.lean_tracer`` (the same spans to every reader, at a fraction of the SDK's
Python calls); with one, by the SDK's tracer.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
)
from opentelemetry.trace.propagation import _SPAN_KEY

from stratus.core.context import INSTANCE_VARIABLE, REQUEST_ID_VARIABLE
from stratus.core.lean_tracer import LeanSpan, LeanTracer, ParentOrAlwaysOn, lean_tracer

REQUEST_ID_ATTRIBUTE = "openstack.request_id"
#: The instance (server) a span's request or message is about.
INSTANCE_ATTRIBUTE = "stratus.instance_uuid"
#: The steps of the seeds' launch table (``shared/seeds/004``) a span of the flow is.
SEED_STEP_ATTRIBUTE = "stratus.seed_step"
#: For a span the trace table cannot place by its kind and name (a guest's DHCP reply or
#: metadata request): who talks to whom, what, and the unit that recorded it.
SOURCE_ATTRIBUTE = "stratus.from"
TARGET_ATTRIBUTE = "stratus.to"
WHAT_ATTRIBUTE = "stratus.what"
UNIT_ATTRIBUTE = "stratus.unit"

_provider: TracerProvider | None = None


def setup_tracing(service_name: str = "stratus",
                  otlp_endpoint: str | None = None) -> TracerProvider:
    """Install the process's tracer provider once; later calls return the same one."""
    global _provider, _tracer, _lean
    if _provider is not None:
        return _provider
    # OTEL_TRACES_SAMPLER, when set, chooses the sampler as OpenTelemetry documents.
    sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else ParentOrAlwaysOn()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                              sampler=sampler)
    if otlp_endpoint:
        # Imported lazily: the exporter is an optional dependency.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)
    # This process's spans from now on: lean ones when only the span store (or a test's
    # exporter) takes them; the SDK's own when they may leave the host.
    _tracer = (None if otlp_endpoint or trace.get_tracer_provider() is not provider
               else lean_tracer(provider, "stratus"))
    _lean = _tracer if isinstance(_tracer, LeanTracer) else None
    _provider = provider
    return provider


def add_span_processor(processor: SpanProcessor) -> None:
    setup_tracing().add_span_processor(processor)


_tracer: trace.Tracer | None = None
#: The tracer when it is a ``LeanTracer``, for ``span``.
_lean: LeanTracer | None = None
#: The context variable that holds OpenTelemetry's current context (its default runtime
#: context's; ``None`` when ``OTEL_PYTHON_CONTEXT`` chose another).
_CONTEXT: ContextVar[Context] | None = (
    otel_context._RUNTIME_CONTEXT._current_context
    if type(otel_context._RUNTIME_CONTEXT) is ContextVarsRuntimeContext else None)


def tracer() -> trace.Tracer:
    """The process's tracer, made once: ``get_tracer`` builds a new one on every call (its
    instrumentation scope, attributes and lock), a third of a short span's cost. Made before
    ``setup_tracing`` it is OpenTelemetry's proxy, which follows the provider set later."""
    global _tracer
    if _tracer is None:
        _tracer = trace.get_tracer("stratus")
    return _tracer


def _stamped(step: str | None, attributes: dict[str, Any]) -> dict[str, Any]:
    if step is not None:
        attributes[SEED_STEP_ATTRIBUTE] = step
    request_id = REQUEST_ID_VARIABLE.get()
    if request_id and REQUEST_ID_ATTRIBUTE not in attributes:
        attributes[REQUEST_ID_ATTRIBUTE] = request_id
    instance = INSTANCE_VARIABLE.get()
    if instance and INSTANCE_ATTRIBUTE not in attributes:
        attributes[INSTANCE_ATTRIBUTE] = instance
    stamped = {}
    for key, value in attributes.items():  # a loop, not a comprehension: no call
        if value is not None:
            stamped[key] = value
    return stamped


class span:  # a class, not a generator: half the Python calls of @contextmanager's
    """A span stamped with the current request id and instance; ``step``: the seed steps it
    is (``"9-11"``); ``parent``: a context to join instead of the current one.

    The span is current inside the block; an exception leaving the block is recorded on it
    (an event, and status ERROR) and raised on, as ``start_as_current_span`` does. Written
    out rather than calling that: it nests two more generator context managers per span
    (itself and ``use_span``). With the lean tracer (``setup_tracing`` without an OTLP
    endpoint) the span is started and made current without OpenTelemetry's context API
    functions in between: the parent read from, and the new context set in, the context
    variable OpenTelemetry keeps it in (the same variable, so ``trace.get_current_span``
    and propagation see the same span)."""

    __slots__ = ("_attributes", "_kind", "_name", "_parent", "_span", "_step", "_token")

    def __init__(self, name: str, kind: SpanKind = SpanKind.INTERNAL, *,
                 step: str | None = None, parent: Context | None = None,
                 **attributes: Any) -> None:
        self._name = name
        self._kind = kind
        self._step = step
        self._parent = parent
        self._attributes = attributes

    def __enter__(self) -> Span:
        lean, variable = _lean, _CONTEXT
        if lean is None or variable is None:
            current = tracer().start_span(self._name, context=self._parent, kind=self._kind,
                                          attributes=_stamped(self._step, self._attributes))
            self._token = otel_context.attach(trace.set_span_in_context(current))
            self._span = current
            return current
        now = variable.get()
        parent = self._parent
        holder = (now if parent is None else parent).get(_SPAN_KEY)
        if type(holder) is LeanSpan:  # a span of this process: no calls to ask its context
            of = holder._context
        elif isinstance(holder, Span):
            of = holder.get_span_context()
        else:
            of = INVALID_SPAN_CONTEXT
        current = lean.start(self._name, of, self._kind,
                             _stamped(self._step, self._attributes), None, parent)
        made = Context(now)
        dict.__setitem__(made, _SPAN_KEY, current)  # Context refuses item assignment
        self._token = variable.set(made)
        self._span = current
        return current

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        current = self._span
        try:
            if _CONTEXT is not None:  # the variable OpenTelemetry's attach set
                try:
                    _CONTEXT.reset(self._token)
                except Exception:  # another context's token: OpenTelemetry's detach logs it
                    otel_context.detach(self._token)
            else:
                otel_context.detach(self._token)
            # Exceptions only: GeneratorExit, CancelledError and the like are not the span's
            # failure.
            if exc is not None and isinstance(exc, Exception) and current.is_recording():
                current.record_exception(exc)
                current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            current.end()


def record(name: str, start_ns: int, end_ns: int, *, parent: Context | None = None,
           step: str | None = None, **attributes: Any) -> None:
    """A span of something seen after it happened (a DHCP reply dnsmasq reported), with
    its own times; not made current."""
    done = tracer().start_span(name, context=parent, start_time=start_ns,
                               attributes=_stamped(step, attributes))
    done.end(end_time=max(end_ns, start_ns))


def context_of(span_context: SpanContext) -> Context:
    """A context whose current span is ``span_context`` (a span remembered from an earlier
    message), for ``parent``."""
    return trace.set_span_in_context(NonRecordingSpan(span_context))
