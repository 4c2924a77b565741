"""Logging set-up: every line names the request it belongs to.

``stratus up`` writes the whole log to ``DIR/stratus.log`` and keeps the console for its own
summary (plus errors), unless ``--verbose``; ``stratus serve`` logs to the console, as a
daemon under a supervisor does.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from stratus.core.context import current_request_id

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True


def setup_logging(level: str = "INFO", *, log_file: Path | None = None,
                  console_level: int = logging.NOTSET) -> None:
    """Log at ``level`` to stderr (records below ``console_level`` left out there) and, when
    given, to ``log_file`` (appended to; everything at ``level``)."""
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
        handler.addFilter(RequestIdFilter())
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    # uvicorn's access log repeats what our request middleware logs, with the request id.
    logging.getLogger("uvicorn.access").disabled = True
