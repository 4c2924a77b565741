"""The embedded span store: every finished span of this host's processes, kept for a while in
``DIR/traces.db`` (SQLite), so ``stratus trace`` can show a request's path without any
collector.

Contracts:

* Off the hot path: a finished span is appended to ``SpanStoreProcessor``'s queue (bounded;
  when full, the oldest pending spans are dropped rather than a request slowed); its worker
  thread hands batches to ``SpanStoreExporter``, which converts them and writes each batch
  in one transaction.
* Bounded by age and size: each write removes the spans older than ``max_age`` seconds and
  the oldest beyond ``max_spans`` (by the order they were written in).
* Several processes of one host (split mode) share the file: SQLite's WAL and a busy timeout
  let them write in turn; a write that still fails is logged and its batch dropped.
* A span is stored with its ids, times, status, the request id and instance it names, the
  process that recorded it (host, pid, units) and its attributes (JSON). Attributes never
  hold secrets (``stratus.core.tracing``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from stratus.core.tracing import INSTANCE_ATTRIBUTE, REQUEST_ID_ATTRIBUTE, add_span_processor

LOG = logging.getLogger(__name__)

FILE_NAME = "traces.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    status INTEGER NOT NULL,
    status_message TEXT,
    request_id TEXT,
    instance_uuid TEXT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    units TEXT NOT NULL,
    attributes TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_trace ON spans (trace_id);
CREATE INDEX IF NOT EXISTS spans_request ON spans (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_instance ON spans (instance_uuid)
    WHERE instance_uuid IS NOT NULL;
"""

#: One stored span as written: the columns in order, attributes as JSON text.
Row = tuple[str, str, str | None, str, int, int, int, int, str | None, str | None,
            str | None, str, int, str, str]


#: Attributes as JSON (what JSON cannot hold, as its ``str``): one encoder for every span,
#: where ``json.dumps(..., default=str)`` builds one per call.
_to_json = json.JSONEncoder(default=str).encode

_COLUMNS = ("trace_id", "span_id", "parent_id", "name", "kind", "start_ns", "end_ns", "status",
            "status_message", "request_id", "instance_uuid", "host", "pid", "units")


@dataclass(frozen=True)
class StoredSpan:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    #: 0 unset, 1 ok, 2 error (OpenTelemetry's ``StatusCode`` values).
    status: int
    status_message: str | None
    request_id: str | None
    instance_uuid: str | None
    host: str
    pid: int
    units: str
    attributes: dict[str, Any]

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns


class SpanStore:
    """``traces.db`` in ``directory``: written by the exporter, read by ``stratus trace``."""

    def __init__(self, directory: Path, *, max_age: float = 86400.0,
                 max_spans: int = 200_000) -> None:
        self.path = directory / FILE_NAME
        self.max_age = max_age
        self.max_spans = max_spans
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_SCHEMA)
            self._local.connection = connection
        return connection

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def write(self, spans: Sequence[StoredSpan]) -> None:
        """Store ``spans`` in one transaction, then drop what is too old or too many."""
        self.write_rows([(s.trace_id, s.span_id, s.parent_id, s.name, s.kind, s.start_ns,
                          s.end_ns, s.status, s.status_message, s.request_id, s.instance_uuid,
                          s.host, s.pid, s.units, _to_json(s.attributes))
                         for s in spans])

    def write_rows(self, rows: Sequence[Row]) -> None:
        """``write``, of rows already in the table's shape.

        Rows go in in the order spans end, so the rowid order is (nearly) the time order:
        both bounds delete a range of the oldest rowids, never scanning the table."""
        if not rows:
            return
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO spans VALUES "
                           "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            # Too old: the rows before the first one young enough (all, when none is).
            db.execute("DELETE FROM spans WHERE rowid < coalesce("
                       "(SELECT rowid FROM spans WHERE start_ns >= ? ORDER BY rowid LIMIT 1), "
                       "(SELECT max(rowid) + 1 FROM spans))",
                       (time.time_ns() - int(self.max_age * 1e9),))
            db.execute("DELETE FROM spans WHERE rowid <= (SELECT max(rowid) FROM spans) - ?",
                       (self.max_spans,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # Reading ------------------------------------------------------------------------------

    def _select(self, where: str, args: Iterable[Any]) -> list[StoredSpan]:
        if not self.path.exists():
            return []
        rows = self._connection().execute(
            f"SELECT * FROM spans WHERE {where} ORDER BY start_ns", tuple(args)).fetchall()
        return [StoredSpan(**dict(zip(_COLUMNS, row[:14], strict=True)),
                           attributes=json.loads(row[14])) for row in rows]

    def traces_of(self, key: str) -> list[str]:
        """The trace ids of the spans naming ``key`` as their request id (or global request
        id) or instance, oldest first."""
        spans = self._select("request_id = ? OR instance_uuid = ?", (key, key))
        return list(dict.fromkeys(s.trace_id for s in spans))

    def trace(self, trace_ids: Sequence[str]) -> list[StoredSpan]:
        """Every stored span of these traces, by start time."""
        if not trace_ids:
            return []
        marks = ", ".join("?" for _ in trace_ids)
        return self._select(f"trace_id IN ({marks})", trace_ids)


#: The units this process runs (``stratus up``: all of them), stamped on its spans.
_process_units: list[str] = []


def set_process_units(names: Iterable[str]) -> None:
    _process_units[:] = list(names)


class SpanStoreExporter(SpanExporter):
    """Writes the batches of a ``BatchSpanProcessor`` into a ``SpanStore``."""

    def __init__(self, store: SpanStore) -> None:
        self.store = store
        self.host = socket.gethostname()
        self.pid = os.getpid()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        units = ",".join(_process_units) or "-"
        host, pid, to_json = self.host, self.pid, _to_json
        rows: list[Row] = []
        for span in spans:
            context = span.context
            if context is None:
                continue
            attributes = dict(span.attributes) if span.attributes else {}
            request_id = attributes.get(REQUEST_ID_ATTRIBUTE)
            instance = attributes.get(INSTANCE_ATTRIBUTE)
            parent = span.parent
            status = span.status
            start = span.start_time or 0
            rows.append((
                f"{context.trace_id:032x}", f"{context.span_id:016x}",
                f"{parent.span_id:016x}" if parent is not None else None,
                span.name, span.kind.value, start, span.end_time or start,
                status.status_code.value, status.description,
                request_id if isinstance(request_id, str) else None,
                instance if isinstance(instance, str) else None,
                host, pid, units, to_json(attributes)))
        try:
            self.store.write_rows(rows)
        except sqlite3.Error as exc:
            LOG.warning("span store: %d span(s) not written: %s", len(rows), exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.store.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class SpanStoreProcessor(SpanProcessor):
    """Hands finished spans to ``exporter`` in batches, from a thread of its own.

    Why not the OpenTelemetry SDK's ``BatchSpanProcessor``, which does the same: ``on_end``
    runs for every span on the thread that ended it, the most often run code of tracing,
    and the SDK's checks the pid (for a fork), the span's sampling and its own metrics each
    time before it queues the span. Here a span's end is one bounded ``deque`` append (when
    ``max_queue_size`` spans are pending, the oldest is dropped). Measured with the leaner
    ``tracing.span`` that came with it (``benchmarks/profiles/spans-2026-12-06.md``): 148
    Python calls per span on the calling thread instead of 186, ~43 µs of CPU per span
    instead of ~50, the store's export included.

    The worker wakes every ``schedule_delay`` seconds, or when a batch is full, and exports
    what is pending in batches of at most ``max_batch_size``. ``force_flush`` exports what
    is pending in the calling thread; ``shutdown`` exports the rest and stops the worker. A
    process forked after this was made gets a worker of its own and none of its parent's
    pending spans.
    """

    def __init__(self, exporter: SpanExporter, *, max_queue_size: int = 8192,
                 schedule_delay: float = 1.0, max_batch_size: int = 1024) -> None:
        self._exporter = exporter
        self._queue: deque[ReadableSpan] = deque(maxlen=max_queue_size)
        self._schedule_delay = schedule_delay
        self._max_batch_size = max_batch_size
        self._stopped = False
        self._start_worker()
        if hasattr(os, "register_at_fork"):
            reinit = weakref.WeakMethod(self._start_worker)
            os.register_at_fork(after_in_child=lambda: (method := reinit()) and method())

    def _start_worker(self) -> None:
        self._queue.clear()  # a forked child's copy of its parent's pending spans
        self._export_lock = threading.Lock()
        self._wake = threading.Event()
        self._worker = threading.Thread(target=self._work, name="span-store", daemon=True)
        self._worker.start()

    def on_end(self, span: ReadableSpan) -> None:
        queue = self._queue
        queue.append(span)
        if len(queue) == self._max_batch_size:
            self._wake.set()

    def _work(self) -> None:
        while not self._stopped:
            self._wake.wait(self._schedule_delay)
            self._wake.clear()
            self._export_pending()

    def _export_pending(self) -> None:
        with self._export_lock:
            queue, size = self._queue, self._max_batch_size
            while queue:
                batch = [queue.popleft() for _ in range(min(size, len(queue)))]
                try:
                    self._exporter.export(batch)
                except Exception:  # a bug in the exporter must not end the worker
                    LOG.exception("span store: %d span(s) not written", len(batch))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self._stopped:
            return False
        self._export_pending()
        return True

    def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._wake.set()
        self._worker.join()
        self._export_pending()
        self._exporter.shutdown()


def enable_span_store(directory: Path, *, max_age: float, max_spans: int) -> None:
    """Keep this process's finished spans in ``directory``'s span store, written in batches
    by the processor's worker thread."""
    store = SpanStore(directory, max_age=max_age, max_spans=max_spans)
    add_span_processor(SpanStoreProcessor(SpanStoreExporter(store)))
