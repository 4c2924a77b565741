"""Logging set-up: every line names the request it belongs to.

``stratus up`` writes the whole log to ``DIR/stratus.log`` and keeps the console for its own
summary (plus errors), unless ``--verbose``; ``stratus serve`` logs to the console, as a
daemon under a supervisor does.

Two formats (``log_format``): ``text``, one line per record with the request id in
brackets; ``json``, one JSON object per line (``JsonFormatter``) with the request id, the
trace and span ids of the current span and the instance the request or message is about,
each where known.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Any

from opentelemetry import trace

from stratus.core.context import current_instance, current_request_id

#: The log file ``stratus up`` and ``stratus serve`` write in the data directory.
LOG_FILE = "stratus.log"

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

#: What a JSON line holds besides the message, when known (absent otherwise).
JSON_FIELDS = ("request_id", "trace_id", "span_id", "instance_uuid")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, then ``request_id``, ``trace_id``, ``span_id`` and ``instance_uuid`` where
    known, ``process`` and ``exception`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id and request_id != "-":
            entry["request_id"] = request_id
        span_context = getattr(record, "span_context", None)
        if span_context is not None:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        instance = getattr(record, "instance_uuid", None)
        if instance:
            entry["instance_uuid"] = instance
        entry["process"] = record.process
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (``-`` outside a request), and for
    the JSON format also the current span's context and instance (taken here, in the
    logging task's context: a handler may format later, elsewhere)."""

    def __init__(self, *, spans: bool = False) -> None:
        super().__init__()
        self.spans = spans

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        if self.spans and not hasattr(record, "span_context"):
            context = trace.get_current_span().get_span_context()
            record.span_context = context if context.is_valid else None
            record.instance_uuid = current_instance()
        return True


def setup_logging(level: str = "INFO", *, log_file: Path | None = None,
                  console_level: int = logging.NOTSET, json_lines: bool = False) -> None:
    """Log at ``level`` to stderr (records below ``console_level`` left out there) and, when
    given, to ``log_file`` (appended to; everything at ``level``); as JSON lines when
    ``json_lines``."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for old in list(root.handlers):
        if getattr(old, "_stratus", False):
            root.removeHandler(old)
            old.close()
    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(console_level)
    handlers.append(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler._stratus = True  # type: ignore[attr-defined]
        handler.addFilter(RequestIdFilter(spans=json_lines))
        handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    # uvicorn's access log repeats what our request middleware logs, with the request id.
    logging.getLogger("uvicorn.access").disabled = True
