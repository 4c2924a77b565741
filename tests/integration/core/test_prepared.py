"""A transaction's statements from their compiled form (``stratus.core.db.prepared``), on
both backends: a prebuilt statement is compiled (its cache key looked up) once, not on each
execution; on SQLite it runs with no greenlet; and every outcome is SQLAlchemy's as before
(values bound per execution, a statement's own literal values, typed columns, RETURNING,
``rowcount``, IN lists, many rows at once, errors, listeners)."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import engine as asyncio_engine
from sqlalchemy.sql.elements import ClauseElement

from stratus.core.db import Database, UTCDateTime, prepared

METADATA = MetaData()
NOTES = Table("core_test_note", METADATA, Column("id", Integer, primary_key=True),
              Column("name", String(20), unique=True), Column("size", Integer),
              Column("stamp", UTCDateTime, nullable=True))

#: Prebuilt, as the hot paths' statements are.
_INSERT = insert(NOTES).values(name=bindparam("n"), size=bindparam("s"),
                               stamp=bindparam("t"))
_BY_NAME = select(NOTES.c.id, NOTES.c.size, NOTES.c.stamp).where(NOTES.c.name == bindparam("n"))
_GROW = (update(NOTES).where(NOTES.c.name == bindparam("n"))
         .values(size=NOTES.c.size + bindparam("by")).returning(NOTES.c.size))


@pytest.fixture
async def db(empty_db_url: str) -> Any:
    database = Database(empty_db_url)
    async with database.engine.begin() as connection:
        await connection.run_sync(METADATA.create_all)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The statements SQLAlchemy compiled or looked up in its compiled cache."""
    seen: list[Any] = []
    compile_w_cache = ClauseElement._compile_w_cache

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(self)
        return compile_w_cache(self, *args, **kwargs)

    monkeypatch.setattr(ClauseElement, "_compile_w_cache", counted)
    return seen


async def test_a_prebuilt_statement_is_compiled_once_and_binds_each_executions_values(
        db: Database, compiles: list[Any]) -> None:
    stamp = dt.datetime(2026, 12, 7, 3, 30, tzinfo=dt.UTC)
    for n in range(3):
        async with db.transaction() as txn:
            connection = await txn.connection()
            await connection.execute(_INSERT, {"n": f"note-{n}", "s": n, "t": stamp})
    for n in range(3):
        async with db.transaction(write=False) as txn:
            connection = await txn.connection()
            row = (await connection.execute(_BY_NAME, {"n": f"note-{n}"})).one()
            assert (row.size, row.stamp) == (n, stamp)  # typed: aware UTC again
    async with db.transaction() as txn:
        connection = await txn.connection()
        grown = await connection.execute(_GROW, {"n": "note-2", "by": 5})
        assert grown.scalar_one() == 7
        again = await connection.execute(_GROW, {"n": "note-2", "by": 1})
        assert again.scalar_one() == 8
        assert (await connection.execute(_GROW, {"n": "none", "by": 1})).first() is None
    # Compiled (its cache key made and looked up) once per statement, not per execution.
    assert [compiles.count(s) for s in (_INSERT, _BY_NAME, _GROW)] == [1, 1, 1]


async def test_statements_of_one_shape_keep_their_own_literal_values(db: Database) -> None:
    async with db.transaction() as txn:
        connection = await txn.connection()
        await connection.execute(insert(NOTES), [{"name": "a", "size": 1},
                                                 {"name": "b", "size": 2},
                                                 {"name": "c", "size": 3}])
        base = select(NOTES.c.name).order_by(NOTES.c.name)
        assert (await connection.execute(base)).scalars().all() == ["a", "b", "c"]
        # Built per call with values of their own, and derived from one run before.
        for size, name in ((1, "a"), (3, "c")):
            picked = base.where(NOTES.c.size == size)
            assert (await connection.execute(picked)).scalars().all() == [name]
        listed = base.where(NOTES.c.name.in_(bindparam("names", expanding=True)))
        assert (await connection.execute(listed, {"names": ["c", "a"]})).scalars().all() == [
            "a", "c"]
        assert (await connection.execute(listed, {"names": ["b"]})).scalars().all() == ["b"]
        changed = await connection.execute(update(NOTES).where(NOTES.c.size > 1)
                                           .values(size=0))
        assert changed.rowcount == 2
        assert await connection.scalar(select(func.count()).where(NOTES.c.size == 0)) == 2


async def test_an_error_is_sqlalchemys_and_rolls_the_transaction_back(db: Database) -> None:
    async with db.transaction() as txn:
        connection = await txn.connection()
        await connection.execute(_INSERT, {"n": "x", "s": 1, "t": None})
    with pytest.raises(IntegrityError):
        async with db.transaction() as txn:
            connection = await txn.connection()
            await connection.execute(_INSERT, {"n": "y", "s": 1, "t": None})
            await connection.execute(_INSERT, {"n": "x", "s": 2, "t": None})
    async with db.transaction(write=False) as txn:
        connection = await txn.connection()
        names = (await connection.execute(select(NOTES.c.name))).scalars().all()
    assert names == ["x"]


async def test_statement_listeners_still_see_every_statement(db: Database) -> None:
    cursor_seen: list[str] = []
    executed: list[Any] = []

    def on_cursor(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        cursor_seen.append(statement.split()[0])

    def on_execute(_conn: Any, clause: Any, *_args: Any) -> None:
        executed.append(clause)

    engine = db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_cursor)
    try:
        async with db.transaction() as txn:
            connection = await txn.connection()
            await connection.execute(_INSERT, {"n": "z", "s": 1, "t": None})
            await connection.execute(_BY_NAME, {"n": "z"})
        assert cursor_seen == ["INSERT", "SELECT"]
        event.listen(engine, "before_execute", on_execute)
        async with db.transaction(write=False) as txn:
            connection = await txn.connection()
            assert (await connection.execute(_BY_NAME, {"n": "z"})).one().size == 1
        assert executed == [_BY_NAME]
    finally:
        event.remove(engine, "before_cursor_execute", on_cursor)
        if event.contains(engine, "before_execute", on_execute):
            event.remove(engine, "before_execute", on_execute)


async def test_a_full_table_of_statements_starts_over(db: Database,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepared, "MAX_STATEMENTS", 2)
    async with db.transaction() as txn:
        connection = await txn.connection()
        for n in range(5):
            await connection.execute(_INSERT, {"n": f"n{n}", "s": n, "t": None})
            picked = select(NOTES.c.size).where(NOTES.c.name == f"n{n}")
            assert (await connection.execute(picked)).scalar_one() == n
    assert len(prepared._COMPILED) <= 2


async def test_sqlite_statements_run_without_a_greenlet(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite a transaction's statement is a plain call in the caller's task: no
    greenlet made and switched to for it (where SQLAlchemy's ``AsyncConnection.execute``
    makes one per statement)."""
    spawned: list[str] = []

    def counting(spawn: Any) -> Any:
        async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
            spawned.append(getattr(fn, "__name__", repr(fn)))
            return await spawn(fn, *args, **kwargs)
        return counted

    for module in (asyncio_engine, prepared):
        monkeypatch.setattr(module, "greenlet_spawn", counting(module.greenlet_spawn))
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}")
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(METADATA.create_all)
        async with db.transaction() as txn:
            connection = await txn.connection()
            spawned.clear()
            await connection.execute(_INSERT, {"n": "a", "s": 1, "t": None})
            assert (await connection.execute(_BY_NAME, {"n": "a"})).one().size == 1
            assert spawned == []
    finally:
        await db.dispose()


async def test_sqlite_statement_that_finds_the_lock_taken_waits_for_it(tmp_path: Path) -> None:
    """Another connection holds SQLite's write lock (another process, or the conductor's
    writes outside the queue): the statement, refused at once on the loop's thread, runs
    again the way that waits, and the loop goes on meanwhile."""
    path = tmp_path / "busy.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(METADATA.create_all)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO core_test_note (id, name) VALUES (1, 'other')")
        asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
        async with db.transaction() as txn:
            connection = await txn.connection()
            await connection.execute(_INSERT, {"n": "mine", "s": 2, "t": None})
        async with db.transaction(write=False) as txn:
            connection = await txn.connection()
            names = (await connection.execute(select(NOTES.c.name).order_by(NOTES.c.id)))
            assert names.scalars().all() == ["other", "mine"]
    finally:
        other.close()
        await db.dispose()
