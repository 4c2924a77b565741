"""Count the ORM rows the database returned for a model during a block; record the SQL an
engine ran, and how SQLite plans it.

    with count_loaded(Image) as loaded:
        response = await client.get("/v2/images?limit=10&marker=...")
    assert loaded.count <= 11

Counted with SQLAlchemy's ``load`` event (an instance built from a returned row) and
``refresh`` event (an instance already in the session, refreshed from a returned row), on
the class and its subclasses, in every session of the process while the block runs. So an
API that loads every visible row to serve one page shows it here, whatever it answers.
A row whose instance is already in the session (and not refreshed) is not counted: each
API request opens its own session, so in API tests every returned row is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass
class Loaded:
    """How many rows of the model were loaded so far in the block."""

    count: int = 0


@contextmanager
def count_loaded(model: type[Any]) -> Iterator[Loaded]:
    loaded = Loaded()

    def on_load(_target: Any, _context: Any) -> None:
        loaded.count += 1

    def on_refresh(_target: Any, _context: Any, _attrs: Any) -> None:
        loaded.count += 1

    event.listen(model, "load", on_load, propagate=True)
    event.listen(model, "refresh", on_refresh, propagate=True)
    try:
        yield loaded
    finally:
        event.remove(model, "load", on_load)
        event.remove(model, "refresh", on_refresh)


@dataclass
class Statements:
    """The SQL statements (with their parameters) an engine ran during a block."""

    seen: list[tuple[str, Any]]

    def selecting(self, table: str) -> list[tuple[str, Any]]:
        reads = re.compile(rf"\bFROM {re.escape(table)}\b")
        return [(sql, params) for sql, params in self.seen
                if sql.lstrip().upper().startswith("SELECT") and reads.search(sql)]


@contextmanager
def statements_of(engine: AsyncEngine) -> Iterator[Statements]:
    """Record what ``engine`` sends to its database while the block runs."""
    recorded = Statements([])

    def on_execute(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
                   _many: bool) -> None:
        recorded.seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        yield recorded
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)


async def sqlite_plan(engine: AsyncEngine, statement: str, parameters: Any) -> str:
    """SQLite's query plan of a recorded statement, its lines joined: ``SEARCH t USING
    INDEX ix (a=? AND b>?)`` reads a range of an index; ``SCAN t`` reads every row, and
    ``USE TEMP B-TREE FOR ORDER BY`` sorts every row the WHERE kept before the LIMIT."""
    async with engine.connect() as conn:
        rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
        return "\n".join(str(row[-1]) for row in rows)


async def postgres_plan_unsorted(engine: AsyncEngine, statement: str, parameters: Any) -> str:
    """PostgreSQL's plan of a recorded statement with sorting priced out (``enable_sort``
    off), its lines joined: a ``Sort`` still in it means no index gives the statement's
    ORDER BY, so the database sorts every row its WHERE keeps, whatever the table's size or
    statistics (the planner's choice between an index and a sort otherwise depends on both)."""
    async with engine.connect() as conn:
        await conn.exec_driver_sql("SET LOCAL enable_sort = off")
        rows = await conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)
        plan = "\n".join(str(row[0]) for row in rows)
        await conn.rollback()
        return plan
