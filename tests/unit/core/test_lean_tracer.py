"""``stratus.core.lean_tracer``: its spans read as the OpenTelemetry SDK's would, to every
processor, exporter and propagator, whatever is done with them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from stratus.core import tracing
from stratus.core.lean_tracer import LeanSpan, LeanTracer, ParentOrAlwaysOn, lean_tracer
from stratus.core.spanstore import SpanStore, SpanStoreExporter, SpanStoreProcessor

REMOTE_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
SAMPLED_PARENT = SpanContext(REMOTE_TRACE, 0x00F067AA0BA902B7, is_remote=True,
                             trace_flags=TraceFlags(0x03),
                             trace_state=TraceState([("vendor", "v1")]))
UNSAMPLED_PARENT = SpanContext(REMOTE_TRACE, 0x00F067AA0BA902B8, is_remote=True,
                               trace_flags=TraceFlags(0x02))


def _provider(limits: SpanLimits | None = None) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(resource=Resource.create({"service.name": "lean-test"}),
                              sampler=ParentOrAlwaysOn(), span_limits=limits)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _lean(provider: TracerProvider) -> trace.Tracer:
    made = lean_tracer(provider, "stratus")
    assert isinstance(made, LeanTracer)
    return made


def _sdk(provider: TracerProvider) -> trace.Tracer:
    return provider.get_tracer("stratus")


class _Unprintable:
    """No ``__str__`` nor ``__repr__`` of its own: the SDK keeps ``None`` for it."""

    __str__ = object.__str__


def _scenario(tracer: trace.Tracer) -> dict[str, Any]:
    """Everything a caller may do with spans; what is seen live (not exported)."""
    seen: dict[str, Any] = {}
    root = tracer.start_span("root", kind=SpanKind.SERVER, attributes={
        "s": "x", "i": 1, "f": 1.5, "b": True, "list": ["a", "b"], "path": Path("/p"),
        "": "an empty key", "none": None})
    root.set_attribute("late", 2)
    root.set_attribute("s", "y")  # set again: moves to the end
    root.set_attribute("object", _Unprintable())
    root.set_attributes({"more": "m", "tuple": (1, 2)})
    child = tracer.start_span("child", context=trace.set_span_in_context(root),
                              kind=SpanKind.CLIENT, start_time=1_000)
    child.set_status(Status(StatusCode.ERROR, "bad"))
    child.set_status(StatusCode.UNSET)  # never set
    child.set_status(StatusCode.OK, "fine")
    child.set_status(Status(StatusCode.ERROR, "ignored: OK is final"))
    child.record_exception(ValueError("v"), {"extra": "e"}, timestamp=7, escaped=True)
    child.add_event("event", {"k": 1, "list": [1, 2]}, timestamp=5)
    child.update_name("child renamed")
    child.end(end_time=2_000)
    child.end()  # twice: ignored
    child.set_attribute("after", 1)  # ended: ignored
    child.update_name("after")
    child.set_status(StatusCode.ERROR)
    child.add_event("after")
    seen["child_recording"] = child.is_recording()
    remote = tracer.start_span("remote child", kind=SpanKind.CONSUMER,
                               context=trace.set_span_in_context(NonRecordingSpan(
                                   SAMPLED_PARENT)))
    remote.add_link(SAMPLED_PARENT, {"why": "because"})
    remote.add_link(SpanContext(0, 0, False))  # invalid, nothing: not linked
    remote.end()
    dropped = tracer.start_span("not sampled", context=trace.set_span_in_context(
        NonRecordingSpan(UNSAMPLED_PARENT)))
    seen["dropped"] = (type(dropped).__name__, dropped.is_recording(),
                       dropped.get_span_context().trace_id == REMOTE_TRACE,
                       int(dropped.get_span_context().trace_flags))
    dropped.end()
    linked = tracer.start_span("linked", links=[Link(SAMPLED_PARENT, {"a": 1})])
    linked.end()
    with pytest.raises(KeyError), tracer.start_as_current_span("as current") as current:
        seen["current_is_current"] = trace.get_current_span() is current
        raise KeyError("gone")
    with pytest.raises(KeyError), tracer.start_span("as context manager"):
        raise KeyError("again")
    quiet = tracer.start_span("no exception recorded", record_exception=False,
                              set_status_on_exception=False)
    with pytest.raises(KeyError), quiet:
        raise KeyError("quiet")
    root.end()
    return seen


def _summary(done: list[ReadableSpan]) -> list[tuple[Any, ...]]:
    """The finished spans as a reader sees them, ids replaced by their span's position."""
    positions = {s.context.span_id: n for n, s in enumerate(done) if s.context}
    traces: dict[int, str] = {REMOTE_TRACE: "remote"}  # the others: in order of appearance
    rows = []
    for span in done:
        context, parent = span.context, span.parent
        assert context is not None
        rows.append((
            span.name, span.kind,
            None if parent is None else positions.get(parent.span_id, f"{parent.span_id:x}"),
            None if parent is None else parent.is_remote,
            traces.setdefault(context.trace_id, f"trace {len(traces)}"),
            int(context.trace_flags), dict(context.trace_state), context.is_remote,
            list((span.attributes or {}).items()), span.dropped_attributes,
            span.status.status_code, span.status.description,
            [(e.name, sorted(e.attributes or {}),
              {k: v for k, v in (e.attributes or {}).items() if k != "exception.stacktrace"},
              e.timestamp if e.timestamp < 10_000 else "now") for e in span.events],
            span.dropped_events,
            [(link.context, dict(link.attributes or {})) for link in span.links],
            span.dropped_links,
            span.start_time if span.start_time == 1_000 else "now",
            span.end_time if span.end_time == 2_000 else "now",
            {k: v for k, v in span.resource.attributes.items() if k != "service.instance.id"},
            span.instrumentation_scope.name if span.instrumentation_scope else None))
    return rows


@pytest.mark.parametrize("limits", [None, SpanLimits(
    max_span_attributes=4, max_span_attribute_length=1, max_events=1, max_event_attributes=1,
    max_links=1, max_link_attributes=1)], ids=["default limits", "tight limits"])
def test_lean_spans_are_read_as_the_sdks(limits: SpanLimits | None) -> None:
    lean_provider, lean_spans = _provider(limits)
    sdk_provider, sdk_spans = _provider(limits)
    lean_seen = _scenario(_lean(lean_provider))
    sdk_seen = _scenario(_sdk(sdk_provider))
    assert lean_seen == sdk_seen
    assert lean_seen["dropped"] == ("NonRecordingSpan", False, True, 0x02)
    lean_done, sdk_done = lean_spans.get_finished_spans(), sdk_spans.get_finished_spans()
    assert [type(s) for s in lean_done].count(LeanSpan) == len(lean_done) - 1  # links: SDK's
    assert not any(isinstance(s, LeanSpan) for s in sdk_done)
    assert _summary(list(lean_done)) == _summary(list(sdk_done))


def test_a_span_and_its_context_travel_as_w3c_traceparent(
        span_exporter: InMemorySpanExporter) -> None:
    assert isinstance(tracing.tracer(), LeanTracer)  # setup_tracing without OTLP
    with tracing.span("sender", SpanKind.PRODUCER) as sender:
        assert isinstance(sender, LeanSpan)
        carrier: dict[str, str] = {}
        inject(carrier)
    sent = sender.get_span_context()
    assert carrier["traceparent"] == f"00-{sent.trace_id:032x}-{sent.span_id:016x}-03"
    with tracing.span("handler", SpanKind.CONSUMER, parent=extract(carrier)) as handler:
        assert trace.get_current_span() is handler
    assert not trace.get_current_span().is_recording()
    sender_done, handler_done = span_exporter.get_finished_spans()
    assert handler_done.context is not None and handler_done.parent is not None
    assert handler_done.context.trace_id == sent.trace_id
    assert (handler_done.parent.span_id, handler_done.parent.is_remote) == (sent.span_id, True)
    assert sender_done.parent is None


class _Starts(SpanProcessor):
    def __init__(self) -> None:
        self.started: list[str] = []
        self.ending: list[str] = []

    def on_start(self, span: SdkSpan, parent_context: Any = None) -> None:
        self.started.append(span.name)
        span.set_attribute("stamped.at.start", True)

    def _on_ending(self, span: SdkSpan) -> None:
        self.ending.append(span.name)


def test_processors_added_after_the_tracer_get_every_hook() -> None:
    provider, spans = _provider()
    tracer = _lean(provider)
    tracer.start_span("before").end()
    later = _Starts()
    provider.add_span_processor(later)
    tracer.start_span("after").end()
    assert later.started == later.ending == ["after"]
    assert [(s.name, dict(s.attributes or {})) for s in spans.get_finished_spans()] == [
        ("before", {}), ("after", {"stamped.at.start": True})]


@pytest.mark.parametrize("provider", [
    lambda: TracerProvider(),  # OTEL_TRACES_SAMPLER set: the SDK's choice of sampler
    lambda: TracerProvider(sampler=ParentOrAlwaysOn(), id_generator=_OtherIds()),
], ids=["another sampler", "another id generator"])
def test_the_sdks_tracer_when_set_up_otherwise(provider: Callable[[], TracerProvider]) -> None:
    assert type(lean_tracer(provider(), "stratus")) is SdkTracer


class _OtherIds(RandomIdGenerator):
    pass


def _stored(make: Callable[[TracerProvider], trace.Tracer], directory: Path) -> list[Any]:
    store = SpanStore(directory)
    provider = TracerProvider(sampler=ParentOrAlwaysOn())
    provider.add_span_processor(SpanStoreProcessor(SpanStoreExporter(store)))
    tracer = make(provider)
    with tracer.start_as_current_span("outer", kind=SpanKind.SERVER, attributes={
            "openstack.request_id": "req-1", "http.method": "POST"}) as outer:
        with tracer.start_as_current_span("compute.spawn", attributes={
                "stratus.seed_step": "43-44", "stratus.instance_uuid": "inst-1"}) as inner:
            inner.set_status(Status(StatusCode.ERROR, "no room"))
        outer.set_attribute("http.status_code", 202)
    provider.shutdown()
    reader = SpanStore(directory)
    spans = reader.trace(reader.traces_of("req-1"))
    reader.close()
    ids = {s.span_id: n for n, s in enumerate(spans)}
    return [(s.name, s.kind, ids.get(s.parent_id or ""), s.status, s.status_message,
             s.request_id, s.instance_uuid, s.attributes) for s in spans]


def test_the_span_store_keeps_lean_spans_as_it_keeps_the_sdks(tmp_path: Path) -> None:
    lean = _stored(_lean, tmp_path / "lean")
    assert lean == _stored(_sdk, tmp_path / "sdk")
    assert [row[:5] for row in lean] == [("outer", SpanKind.SERVER.value, None, 0, None),
                                         ("compute.spawn", 0, 0, 2, "no room")]
