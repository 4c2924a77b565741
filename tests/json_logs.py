"""The process's log records as ``--log-json`` writes them, into a handler of a test's."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from stratus.core.logging import JsonFormatter, RequestIdFilter


@contextmanager
def json_lines_to(handler: logging.Handler) -> Iterator[logging.Handler]:
    """Every record at INFO and above goes to ``handler`` as a JSON line, until the end."""
    handler.addFilter(RequestIdFilter(spans=True))
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
