"""A request's path for operators (``GET /v2.1/os-stratus-trace/{key}``): the seeds' step
table (``stratus.core.trace_table``) of the spans this host's span store holds for a
request id or a server, as ``stratus trace --json`` prints it.

The store is the file the processes of this host write (``DIR/traces.db``); it is read off
the event loop, with a connection of the read's own (SQLite connections stay in the thread
that made them).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stratus.core.config import TracingSettings
from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.spanstore import SpanStore
from stratus.core.trace_table import Row, as_json, rows_of

#: Request ids and server ids are far shorter; a longer key is a mistake.
MAX_KEY_LENGTH = 255


class RequestTraces:
    def __init__(self, data_dir: Path, tracing: TracingSettings) -> None:
        self.data_dir = data_dir
        self.tracing = tracing

    async def table(self, key: str) -> dict[str, Any]:
        """The table of every trace naming ``key``; ``NotFound`` when the store has none."""
        if not key or len(key) > MAX_KEY_LENGTH:
            raise BadRequest(f"A request id or server id has 1 to {MAX_KEY_LENGTH} "
                             "characters.")
        if not (self.tracing.enabled and self.tracing.store):
            raise NotFound("This cloud keeps no spans (tracing.enabled and tracing.store).")
        rows = await asyncio.to_thread(self._rows, key)
        if not rows:
            raise NotFound(f"No spans of {key}: spans are kept "
                           f"{self.tracing.store_max_age:g} s, and written about a second "
                           "after they end.")
        return as_json(key, rows)

    def _rows(self, key: str) -> list[Row]:
        store = SpanStore(self.data_dir)
        try:
            return rows_of(store, key)
        finally:
            store.close()
