"""The embedded span store: every finished span of this host's processes, kept for a while in
``DIR/traces.db`` (SQLite), so ``stratus trace`` can show a request's path without any
collector.

Contracts:

* Off the hot path: a finished span goes into the SDK's ``BatchSpanProcessor`` queue (bounded;
  when full, spans are dropped rather than a request slowed); its worker thread hands
  batches to ``SpanStoreExporter``, which writes each batch in one transaction.
* Bounded by age and size: each write removes spans older than ``max_age`` seconds; once per
  tenth of ``max_spans`` written, the oldest beyond ``max_spans``.
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

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
    attributes TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_request ON spans (request_id);
CREATE INDEX IF NOT EXISTS spans_instance ON spans (instance_uuid);
CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ns);
"""


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
        self._since_pruned = 0

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
        if not spans:
            return
        rows = [(s.trace_id, s.span_id, s.parent_id, s.name, s.kind, s.start_ns, s.end_ns,
                 s.status, s.status_message, s.request_id, s.instance_uuid, s.host, s.pid,
                 s.units, json.dumps(s.attributes, default=str)) for s in spans]
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO spans VALUES "
                           "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("DELETE FROM spans WHERE start_ns < ?",
                       (time.time_ns() - int(self.max_age * 1e9),))
            self._since_pruned += len(rows)
            # Counting past max_spans walks the index: done once per tenth of it written.
            if self._since_pruned * 10 >= self.max_spans:
                self._since_pruned = 0
                db.execute("DELETE FROM spans WHERE start_ns <= (SELECT start_ns FROM spans "
                           "ORDER BY start_ns DESC LIMIT 1 OFFSET ?)", (self.max_spans,))
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
        stored = [self._stored(span, units) for span in spans if span.context is not None]
        try:
            self.store.write(stored)
        except sqlite3.Error as exc:
            LOG.warning("span store: %d span(s) not written: %s", len(stored), exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _stored(self, span: ReadableSpan, units: str) -> StoredSpan:
        context = span.context
        assert context is not None
        attributes = dict(span.attributes or {})
        request_id = attributes.get(REQUEST_ID_ATTRIBUTE)
        instance = attributes.get(INSTANCE_ATTRIBUTE)
        return StoredSpan(
            trace_id=format(context.trace_id, "032x"), span_id=format(context.span_id, "016x"),
            parent_id=format(span.parent.span_id, "016x") if span.parent else None,
            name=span.name, kind=span.kind.value, start_ns=span.start_time or 0,
            end_ns=span.end_time or span.start_time or 0, status=span.status.status_code.value,
            status_message=span.status.description,
            request_id=request_id if isinstance(request_id, str) else None,
            instance_uuid=instance if isinstance(instance, str) else None,
            host=self.host, pid=self.pid, units=units, attributes=attributes)

    def shutdown(self) -> None:
        self.store.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def enable_span_store(directory: Path, *, max_age: float, max_spans: int) -> None:
    """Keep this process's finished spans in ``directory``'s span store, written in batches
    by the processor's worker thread."""
    store = SpanStore(directory, max_age=max_age, max_spans=max_spans)
    add_span_processor(BatchSpanProcessor(SpanStoreExporter(store), max_queue_size=8192,
                                          schedule_delay_millis=1000,
                                          max_export_batch_size=1024))
