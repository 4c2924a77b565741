"""``stratus.core.tracing.span``: what it records, whatever the block does."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, StatusCode, TraceFlags

from stratus.core import tracing
from stratus.core.context import reset_instance, reset_request_id, set_instance, set_request_id
from stratus.core.lean_tracer import LeanTracer
from stratus.core.tracing import (
    INSTANCE_ATTRIBUTE,
    REQUEST_ID_ATTRIBUTE,
    SEED_STEP_ATTRIBUTE,
    context_of,
    span,
)


@pytest.fixture(autouse=True, params=["lean", "sdk"])
def process_tracer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test with the tracer ``setup_tracing`` makes without an OTLP endpoint (lean),
    and with the SDK's own (as with one)."""
    provider = tracing.setup_tracing()
    assert isinstance(tracing.tracer(), LeanTracer)
    if request.param == "sdk":
        monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("stratus"))
        monkeypatch.setattr(tracing, "_lean", None)
    return str(request.param)


def test_a_span_is_current_inside_and_stamped(span_exporter: InMemorySpanExporter) -> None:
    request = set_request_id("req-4d6c1f0e-0b7e-4c55-9a43-7f1d2d1bd7a1")
    instance = set_instance("9a5e7c5e-1e55-4f52-8a3b-1b8d5c1f3f00")
    try:
        with span("outer", step="5", **{"x.kept": 1, "x.none": None}) as outer:
            with span("inner") as inner:
                assert trace.get_current_span() is inner
            assert trace.get_current_span() is outer
        assert not trace.get_current_span().is_recording()
    finally:
        reset_instance(instance)
        reset_request_id(request)
    inner_done, outer_done = span_exporter.get_finished_spans()
    assert inner_done.parent is not None
    assert inner_done.parent.span_id == outer_done.context.span_id
    assert dict(outer_done.attributes or {}) == {
        "x.kept": 1, SEED_STEP_ATTRIBUTE: "5",
        REQUEST_ID_ATTRIBUTE: "req-4d6c1f0e-0b7e-4c55-9a43-7f1d2d1bd7a1",
        INSTANCE_ATTRIBUTE: "9a5e7c5e-1e55-4f52-8a3b-1b8d5c1f3f00"}


def test_an_exception_leaving_the_block_is_recorded_and_raised(
        span_exporter: InMemorySpanExporter) -> None:
    with pytest.raises(KeyError), span("failing"):
        raise KeyError("gone")
    (done,) = span_exporter.get_finished_spans()
    assert done.status.status_code is StatusCode.ERROR
    assert done.status.description == "KeyError: 'gone'"
    assert [event.name for event in done.events] == ["exception"]
    assert not trace.get_current_span().is_recording()


def test_a_parent_that_was_not_sampled_is_followed(span_exporter: InMemorySpanExporter) -> None:
    def remote(flags: int) -> SpanContext:
        return SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(flags))

    with span("unsampled", parent=context_of(remote(0))) as dropped:
        assert not dropped.is_recording()
    with span("sampled", parent=context_of(remote(TraceFlags.SAMPLED))) as kept:
        assert kept.is_recording()
    (done,) = span_exporter.get_finished_spans()
    assert done.name == "sampled"
    assert done.context.trace_id == 0x1234
