"""Tracing: one span per API request and per outgoing call, each carrying the request id
(and the instance the request is about, where known).

Spans go through OpenTelemetry. The trace context travels in the bus envelope and in HTTP
headers (W3C ``traceparent``), so one request's spans share one trace id across processes.
The CLI's processes keep their spans in the embedded span store
(``stratus.core.spanstore.enable_span_store``) and, with an OTLP endpoint, export them in
batches; tests attach an in-memory exporter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceState,
)
from opentelemetry.util.types import Attributes

from stratus.core.context import current_instance, current_request_id

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



class _ParentOrAlwaysOn(Sampler):
    """OpenTelemetry's default sampler (``ParentBased(ALWAYS_ON)``: a span is recorded
    unless its parent, remote or local, was not sampled), in one step: the default asks
    the parent's context twice through two samplers for each span."""

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None,
                      trace_state: TraceState | None = None) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, None)
        if parent.trace_flags.sampled:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, parent.trace_state)
        return SamplingResult(Decision.DROP, None, parent.trace_state)

    def get_description(self) -> str:
        return "ParentBased{root:AlwaysOnSampler}"


_provider: TracerProvider | None = None


def setup_tracing(service_name: str = "stratus",
                  otlp_endpoint: str | None = None) -> TracerProvider:
    """Install the process's tracer provider once; later calls return the same one."""
    global _provider
    if _provider is not None:
        return _provider
    # OTEL_TRACES_SAMPLER, when set, chooses the sampler as OpenTelemetry documents.
    sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else _ParentOrAlwaysOn()
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
    _provider = provider
    return provider


def add_span_processor(processor: SpanProcessor) -> None:
    setup_tracing().add_span_processor(processor)


_tracer: trace.Tracer | None = None


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
    request_id = current_request_id()
    if request_id:
        attributes.setdefault(REQUEST_ID_ATTRIBUTE, request_id)
    instance = current_instance()
    if instance:
        attributes.setdefault(INSTANCE_ATTRIBUTE, instance)
    return {k: v for k, v in attributes.items() if v is not None}


@contextmanager
def span(name: str, kind: SpanKind = SpanKind.INTERNAL, *, step: str | None = None,
         parent: Context | None = None, **attributes: Any) -> Iterator[Span]:
    """A span stamped with the current request id and instance; ``step``: the seed steps it
    is (``"9-11"``); ``parent``: a context to join instead of the current one.

    The span is current inside the block; an exception leaving the block is recorded on it
    (an event, and status ERROR) and raised on, as ``start_as_current_span`` does. Written
    out rather than calling that: it nests two more generator context managers per span
    (itself and ``use_span``), a fifth of a span's Python calls."""
    current = tracer().start_span(name, context=parent, kind=kind,
                                  attributes=_stamped(step, attributes))
    try:
        token = otel_context.attach(trace.set_span_in_context(current))
        try:
            yield current
        finally:
            otel_context.detach(token)
    except Exception as exc:
        # Exceptions only: GeneratorExit and the like are not the span's failure.
        if current.is_recording():
            current.record_exception(exc)
            current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
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
