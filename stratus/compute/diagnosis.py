"""Why a server is in ERROR, or stuck in a task: what ``stratus why SERVER`` prints.

Three sources, all kept on the controller: the server's row and newest fault (compute's
database), the spans of every request about it (the span store, as ``stratus trace`` reads
them) and the log lines of the failed request from every unit (log files, text or JSON
lines, as ``stratus up`` and ``stratus serve [--log-json]`` write them).

The failed step is the innermost span in error (where the failure began, not the spans it
unwound through); when a build failed on several hosts, the newest, with the others listed.
The evidence: for "No valid host", each scheduler filter's count and the hosts it removed,
with why (the decision span's ``stratus.scheduler.filter_results``, or the fault's details
once the span has aged out of the store); for a build that failed on a host, the host, the
driver's error and the request's log lines.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from stratus.compute import states
from stratus.compute.errors import FILTER_EVIDENCE_ATTRIBUTE
from stratus.compute.instances import Instances
from stratus.core.db import Database, utcnow
from stratus.core.spanstore import SpanStore, StoredSpan
from stratus.core.trace_table import Row, table

#: At most this many log lines of the failed request are shown (the newest).
MAX_LOG_LINES = 200

_Record = TypeVar("_Record", "ServerFacts", Row)

#: OpenTelemetry's error status, as stored.
_ERROR = 2


@dataclass(frozen=True)
class ServerFacts:
    """What compute's database says of the server."""

    uuid: str
    name: str
    vm_state: str
    task_state: str | None
    host: str | None
    updated_at: str | None
    #: Seconds since the server's row last changed (how long a task has been stuck).
    idle_seconds: float | None
    fault_code: int | None = None
    fault_message: str | None = None
    fault_details: str = ""
    fault_host: str | None = None
    #: The request of the server's last action (its create, a resize, ...).
    action_request_id: str | None = None


@dataclass
class Diagnosis:
    server: ServerFacts
    #: "error", "stuck" (in a task, nothing failed: how long it has been says whether it is
    #: stuck or still under way) or "fine".
    verdict: str
    #: The step that failed (error), or the last step seen (stuck).
    step: Row | None
    error: str | None
    host: str | None
    evidence: list[str] = field(default_factory=list)
    #: Earlier failures of the same server (a build tried on other hosts first).
    earlier: list[Row] = field(default_factory=list)
    #: The request ids and trace the log lines were matched on.
    request_ids: list[str] = field(default_factory=list)
    trace_id: str | None = None
    log_lines: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Diagnosis:
        """A diagnosis as ``as_json`` gave it (the operator route's answer); fields this
        version does not know are left out."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in document.items() if k in known}
        values["server"] = _of(ServerFacts, values["server"])
        values["step"] = _of(Row, values["step"]) if values.get("step") else None
        values["earlier"] = [_of(Row, row) for row in values.get("earlier") or []]
        return cls(**values)

    def lines(self) -> list[str]:
        server = self.server
        task = f", task {server.task_state}" if server.task_state else ""
        lines = [f"Server {server.uuid} ({server.name}): {server.vm_state}{task}"
                 + (f" on {server.host}" if server.host else "")]
        if server.fault_message:
            lines.append(f"Fault ({server.fault_code}): {server.fault_message}")
        if self.verdict == "fine":
            lines.append("Nothing failed: the server is in no error and no task.")
        elif self.verdict == "stuck":
            since = (f" for {server.idle_seconds:.0f} s" if server.idle_seconds is not None
                     else "")
            lines.append(f"In task {server.task_state}{since}; nothing failed.")
        if self.step is not None:
            label = "Failed step" if self.verdict == "error" else "Last step seen"
            lines.append(f"{label}: {_describe(self.step)}")
        elif self.verdict != "fine":
            lines.append("No span of this server's requests is in the span store "
                         "(they age out, or tracing was off).")
        if self.error:
            lines.append(f"Error: {self.error}")
        if self.host:
            lines.append(f"Host: {self.host}")
        if self.evidence:
            lines.append("Evidence:")
            lines += [f"  {line}" for line in self.evidence]
        for row in self.earlier:
            lines.append(f"Earlier failure: {_describe(row)}")
        if self.log_lines:
            lines.append(f"Log lines of {', '.join(self.request_ids)}:")
            lines += [f"  {_readable(line)}" for line in self.log_lines]
        elif self.request_ids:
            lines.append(f"No log line of {', '.join(self.request_ids)} in the log files "
                         "read.")
        return lines


def _of(kind: type[_Record], document: dict[str, Any]) -> _Record:
    known = {f.name for f in fields(kind)}
    return kind(**{k: v for k, v in document.items() if k in known})


def _describe(row: Row) -> str:
    return (f"step {row.step}: {row.source} → {row.target} {row.what} "
            f"({row.unit}@{row.host}, +{row.start_ms:.1f} ms, {row.duration_ms:.1f} ms): "
            f"{row.outcome}")


def _readable(line: str) -> str:
    """A JSON log line as a text one (the format ``stratus up`` writes without --log-json)."""
    if not line.startswith("{"):
        return line
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    if not isinstance(entry, dict):
        return line
    text = (f"{entry.get('time', '')} {entry.get('level', '')} {entry.get('logger', '')} "
            f"[{entry.get('request_id', '-')}] {entry.get('message', '')}")
    if entry.get("exception"):
        text += "\n" + str(entry["exception"])
    return text


async def server_facts(db: Database, server_id: str) -> ServerFacts:
    """The server's state and newest fault (``NotFound`` when compute has no such server)."""
    async with db.transaction(write=False) as txn:
        instances = Instances(txn)
        instance = await instances.get(server_id, include_deleted=True)
        fault = await instances.fault_of(server_id)
        action = await instances.latest_action(server_id)
    updated = instance.updated_at or instance.created_at
    if updated is not None and updated.tzinfo is None:
        updated = updated.replace(tzinfo=dt.UTC)  # SQLite keeps UTC without a zone
    idle = (utcnow() - updated).total_seconds() if updated is not None else None
    return ServerFacts(
        uuid=instance.uuid, name=instance.display_name, vm_state=instance.vm_state,
        task_state=instance.task_state, host=instance.host,
        updated_at=updated.isoformat() if updated else None,
        idle_seconds=idle,
        fault_code=fault.code if fault else None, fault_message=fault.message if fault else None,
        fault_details=fault.details if fault else "", fault_host=fault.host if fault else None,
        action_request_id=action.request_id if action else None)


def _innermost_errors(spans: Sequence[StoredSpan]) -> list[StoredSpan]:
    """The spans in error with no child in error, oldest end first; a REST answer in the
    4xx (a poll of a deleted server) is the client's error, not a failed step."""
    failed = [s for s in spans if s.status == _ERROR
              and not 400 <= int(s.attributes.get("http.status_code", 0) or 0) < 500]
    parents = {s.parent_id for s in failed}
    return sorted((s for s in failed if s.span_id not in parents), key=lambda s: s.end_ns)


def diagnose(facts: ServerFacts, spans: Sequence[StoredSpan],
             log_files: Iterable[Path] = ()) -> Diagnosis:
    """Why the server is as ``facts`` say, from the spans of its requests and the logs."""
    rows = {row.span_id: row for row in table(spans)}
    in_error = facts.vm_state == states.ERROR
    verdict = "error" if in_error else "stuck" if facts.task_state else "fine"
    diagnosis = Diagnosis(server=facts, verdict=verdict, step=None, error=None, host=None)
    if verdict == "fine":
        return diagnosis
    failures = _innermost_errors(spans) if in_error else []
    failed: StoredSpan | None = None
    if failures:
        failed = failures[-1]
        diagnosis.step = rows[failed.span_id]
        diagnosis.error = failed.status_message
        diagnosis.earlier = [rows[s.span_id] for s in failures[:-1]]
        evidence = failed.attributes.get(FILTER_EVIDENCE_ATTRIBUTE)
        if isinstance(evidence, (list, tuple)):
            diagnosis.evidence = [str(line) for line in evidence]
    elif spans and not in_error:
        failed = max(_of_action(spans, facts.action_request_id), key=lambda s: s.end_ns)
        diagnosis.step = rows[failed.span_id]  # where the task got to
    # The host the build failed on or is under way on (none for a server never placed).
    diagnosis.host = (facts.fault_host or facts.host) if in_error else facts.host
    if in_error:
        diagnosis.error = diagnosis.error or facts.fault_message
        if not diagnosis.evidence and facts.fault_details:
            diagnosis.evidence = facts.fault_details.splitlines()
    # The log lines of the failed request: its trace's request ids (each service's own and
    # the global one) and the server's last action's, which names it when no span does.
    request_ids = {s.request_id for s in spans
                   if failed is not None and s.trace_id == failed.trace_id and s.request_id}
    if facts.action_request_id:
        request_ids.add(facts.action_request_id)
    diagnosis.trace_id = failed.trace_id if failed is not None else None
    diagnosis.request_ids = sorted(request_ids)
    diagnosis.log_lines = log_lines_of(log_files, request_ids, diagnosis.trace_id)
    return diagnosis


def _of_action(spans: Sequence[StoredSpan], request_id: str | None) -> Sequence[StoredSpan]:
    """The spans of the traces of the server's last action (not the client's polls since),
    or all of them when none names its request."""
    traces = {s.trace_id for s in spans if request_id and s.request_id == request_id}
    return [s for s in spans if s.trace_id in traces] or spans


def log_lines_of(paths: Iterable[Path], request_ids: set[str],
                 trace_id: str | None) -> list[str]:
    """The lines of ``paths`` that name one of ``request_ids`` (a text line's
    ``[req-...]``) or ``trace_id`` (a JSON line's ``trace_id``), with the traceback lines
    that follow a text line; the newest ``MAX_LOG_LINES``."""
    marks = {f"[{rid}]" for rid in request_ids}
    found: list[str] = []
    for path in paths:
        if not path.is_file():
            continue
        following = False
        with path.open(encoding="utf-8", errors="replace") as lines:
            for raw in lines:
                line = raw.rstrip("\n")
                if line.startswith("{"):
                    following = False
                    if _json_line_matches(line, request_ids, trace_id):
                        found.append(line)
                elif line[:1].isdigit():  # a text line starts with its time
                    following = any(mark in line for mark in marks)
                    if following:
                        found.append(line)
                elif following:
                    found.append(line)  # a traceback's lines
    return found[-MAX_LOG_LINES:]


def _json_line_matches(line: str, request_ids: set[str], trace_id: str | None) -> bool:
    try:
        entry = json.loads(line)
    except ValueError:
        return False
    return isinstance(entry, dict) and (entry.get("request_id") in request_ids
                                        or (trace_id is not None
                                            and entry.get("trace_id") == trace_id))


async def why(db: Database, store: SpanStore, server_id: str,
              log_files: Iterable[Path] = ()) -> Diagnosis:
    """``stratus why``: the server's facts, the spans of its requests, its log lines."""
    facts = await server_facts(db, server_id)
    spans = store.trace(store.traces_of(facts.uuid))
    return diagnose(facts, spans, log_files)
