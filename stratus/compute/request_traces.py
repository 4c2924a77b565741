"""A request's path for operators (``GET /v2.1/os-stratus-trace/{key}``): the seeds' step
table (``stratus.core.trace_table``) of the spans this host's span store holds for a
request id or a server, as ``stratus trace --json`` prints it; and why a server failed
(``GET /v2.1/os-stratus-why/{server_id}``, ``stratus.compute.diagnosis``), as
``stratus why --json`` prints it.

The store is the file the processes of this host write (``DIR/traces.db``); it is read off
the event loop, with a connection of the read's own (SQLite connections stay in the thread
that made them). The log lines ``why`` shows are those of this host's ``DIR/stratus.log``
(the units of ``stratus up``; in split mode, the units logging to that file).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from stratus.compute.diagnosis import Diagnosis, ServerFacts, diagnose, server_facts
from stratus.core.config import TracingSettings
from stratus.core.db import Database
from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.logging import LOG_FILE
from stratus.core.spanstore import SpanStore
from stratus.core.trace_table import Row, as_json, rows_of

#: Request ids and server ids are far shorter; a longer key is a mistake.
MAX_KEY_LENGTH = 255


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise BadRequest(f"A request id or server id has 1 to {MAX_KEY_LENGTH} characters.")


class RequestTraces:
    def __init__(self, data_dir: Path, tracing: TracingSettings, db: Database) -> None:
        self.data_dir = data_dir
        self.tracing = tracing
        self.db = db

    @property
    def stored(self) -> bool:
        return self.tracing.enabled and self.tracing.store

    async def why(self, server_id: str) -> dict[str, Any]:
        """Why the server is as it is (``NotFound`` when compute has no such server, deleted
        ones included); without spans (tracing off, or aged out), from its fault alone."""
        _check_key(server_id)
        facts = await server_facts(self.db, server_id)
        diagnosis = await asyncio.to_thread(self._diagnose, facts)
        return diagnosis.as_json()

    def _diagnose(self, facts: ServerFacts) -> Diagnosis:
        spans = []
        if self.stored:
            store = SpanStore(self.data_dir)
            try:
                spans = store.trace(store.traces_of(facts.uuid))
            finally:
                store.close()
        return diagnose(facts, spans, [self.data_dir / LOG_FILE])

    async def table(self, key: str) -> dict[str, Any]:
        """The table of every trace naming ``key``; ``NotFound`` when the store has none."""
        _check_key(key)
        if not self.stored:
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
