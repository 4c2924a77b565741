"""The embedded span store: what it keeps, for how long, how many, and from which thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from stratus.core.spanstore import (
    Row,
    SpanStore,
    SpanStoreExporter,
    SpanStoreProcessor,
    StoredSpan,
)
from stratus.core.trace_table import table


def stored(n: int, *, age: float = 0.0, trace: str = "t1", request_id: str | None = None,
           instance: str | None = None) -> StoredSpan:
    start = time.time_ns() - int(age * 1e9) + n
    return StoredSpan(trace_id=trace, span_id=f"s{n}", parent_id=None, name=f"span {n}",
                      kind=0, start_ns=start, end_ns=start + 1000, status=0,
                      status_message=None, request_id=request_id, instance_uuid=instance,
                      host="h", pid=1, units="compute-agent", attributes={"n": n})


def test_spans_are_found_by_request_or_instance_with_their_whole_trace(tmp_path: Path) -> None:
    store = SpanStore(tmp_path)
    store.write([stored(1, trace="a", request_id="req-1"), stored(2, trace="a"),
                 stored(3, trace="b", instance="inst-1"), stored(4, trace="c")])
    assert store.traces_of("req-1") == ["a"]
    assert store.traces_of("inst-1") == ["b"]
    assert store.traces_of("nothing") == []
    spans = store.trace(store.traces_of("req-1"))
    assert [s.span_id for s in spans] == ["s1", "s2"]
    assert spans[1].attributes == {"n": 2} and spans[1].duration_ns == 1000
    store.close()


def test_the_store_is_bounded_by_age_and_by_size(tmp_path: Path) -> None:
    store = SpanStore(tmp_path, max_age=60, max_spans=10)
    store.write([stored(1, age=120, request_id="req-old")])
    store.write([stored(2, request_id="req-new")])
    assert store.traces_of("req-old") == [], "older than max_age: gone"
    other = SpanStore(tmp_path / "other", max_age=60)
    other.write([stored(3, age=120, request_id="req-old-2"), stored(4, request_id="req-new-2")])
    assert other.traces_of("req-old-2") == [] and other.traces_of("req-new-2") == ["t1"]
    other.close()
    for batch in range(3):
        store.write([stored(100 + batch * 10 + i) for i in range(10)])
    kept = store.trace(["t1"])
    assert len(kept) == 10
    assert [s.span_id for s in kept] == [f"s{120 + i}" for i in range(10)], "the newest kept"
    store.close()


class _ThreadRecordingStore(SpanStore):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.threads: set[int] = set()

    def write_rows(self, rows: Sequence[Row]) -> None:
        self.threads.add(threading.get_ident())
        super().write_rows(rows)


def test_finished_spans_are_written_in_batches_by_a_worker_thread(tmp_path: Path) -> None:
    store = _ThreadRecordingStore(tmp_path)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(SpanStoreExporter(store),
                                                   schedule_delay_millis=50))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("outer", attributes={
            "openstack.request_id": "req-x", "stratus.instance_uuid": "inst-x"}):
        with tracer.start_as_current_span("compute.spawn",
                                          attributes={"stratus.seed_step": "43-44"}):
            pass
    deadline = time.monotonic() + 10
    while not store.threads and time.monotonic() < deadline:  # the worker's schedule
        time.sleep(0.01)
    assert store.threads and threading.get_ident() not in store.threads
    provider.shutdown()
    reader = SpanStore(tmp_path)
    spans = reader.trace(reader.traces_of("inst-x"))
    assert [s.name for s in spans] == ["outer", "compute.spawn"]
    assert spans[1].parent_id == spans[0].span_id
    assert spans[0].request_id == "req-x"
    (row,) = [r for r in table(spans) if r.what == "compute.spawn"]
    assert (row.step, row.target) == ("43-44", "virt driver")
    reader.close()


def test_the_store_processor_writes_from_its_worker_in_batches(tmp_path: Path) -> None:
    store = _ThreadRecordingStore(tmp_path)
    provider = TracerProvider()
    provider.add_span_processor(SpanStoreProcessor(SpanStoreExporter(store), max_batch_size=2))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("outer", attributes={"stratus.instance_uuid": "inst-y"}):
        for name in ("one", "two", "three"):
            with tracer.start_as_current_span(name):
                pass
    # A full batch wakes the worker before its (default, one second) schedule.
    deadline = time.monotonic() + 10
    while not store.threads and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.threads and threading.get_ident() not in store.threads
    provider.shutdown()  # the rest
    reader = SpanStore(tmp_path)
    assert [s.name for s in reader.trace(reader.traces_of("inst-y"))] == [
        "outer", "one", "two", "three"]
    reader.close()


def test_the_store_processor_drops_the_oldest_when_full(tmp_path: Path) -> None:
    store = _ThreadRecordingStore(tmp_path)
    processor = SpanStoreProcessor(SpanStoreExporter(store), max_queue_size=2,
                                   schedule_delay=3600, max_batch_size=10)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    for name in ("first", "second", "third"):
        with tracer.start_as_current_span(name, attributes={"stratus.instance_uuid": name}):
            pass
    assert processor.force_flush()
    assert store.threads == {threading.get_ident()}  # flushed by the caller, not the worker
    assert [SpanStore(tmp_path).traces_of(name) != [] for name in ("first", "second", "third")
            ] == [False, True, True]
    provider.shutdown()
    assert not processor.force_flush()
