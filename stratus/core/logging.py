"""Logging set-up: every line names the request it belongs to."""

from __future__ import annotations

import logging
import sys

from stratus.core.context import current_request_id

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return True


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    root.setLevel(level.upper())
    for handler in list(root.handlers):
        if getattr(handler, "_stratus", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._stratus = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    # uvicorn's access log repeats what our request middleware logs, with the request id.
    logging.getLogger("uvicorn.access").disabled = True
