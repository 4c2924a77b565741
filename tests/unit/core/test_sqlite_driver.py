"""SQLite through ``Database``: no trip to aiosqlite's thread for a statement or a COMMIT
(they run on the loop's thread unless SQLite's lock is busy: ``tests/integration/
test_db.py``), none for a ROLLBACK with nothing open, the WAL's checkpoints on a thread of
their own every so many commits (nobody waiting for them), a file's pool keeping its
connections, and the statements' outcomes as before (rows, ``RETURNING``, ``rowcount``,
``lastrowid``, many rows at once, errors)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from stratus.core.db import Database, sqlite_driver

METADATA = MetaData()
THINGS = Table("thing", METADATA, Column("id", Integer, primary_key=True),
               Column("name", String(20), unique=True))


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    async with database.engine.begin() as connection:
        await connection.run_sync(METADATA.create_all)
    try:
        yield database
    finally:
        await database.engine.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The calls handed to aiosqlite's thread, by the name of the function run there."""
    seen: list[str] = []
    handed = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await handed(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    yield seen


async def test_a_statement_makes_no_trip_and_its_outcome_comes_back(
        database: Database, trips: list[str]) -> None:
    async with database.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))  # the connection made and checked
        trips.clear()
        inserted = await connection.execute(
            insert(THINGS).values(name="a").returning(THINGS.c.id, THINGS.c.name))
        assert inserted.all() == [(1, "a")]
        assert trips == []
        plain = await connection.execute(insert(THINGS).values(name="b"))
        assert plain.lastrowid == 2 and plain.rowcount == 1
        many = await connection.execute(insert(THINGS), [{"name": "c"}, {"name": "d"}])
        assert many.rowcount == 2
        changed = await connection.execute(
            update(THINGS).where(THINGS.c.name.in_(["a", "b", "z"])).values(name=THINGS.c.name
                                                                          + "!"))
        assert changed.rowcount == 2
        rows = await connection.execute(select(THINGS.c.name).order_by(THINGS.c.id))
        assert rows.scalars().all() == ["a!", "b!", "c", "d"]
        assert trips == []  # five statements, none handed to aiosqlite's thread
        with pytest.raises(IntegrityError):
            await connection.execute(insert(THINGS).values(name="c"))
        await connection.commit()


async def test_no_trip_for_a_commit_nor_for_a_rollback_with_nothing_open(
        database: Database, trips: list[str]) -> None:
    async with database.session() as session:  # a read: SQLite opens no transaction
        await session.execute(select(THINGS.c.id))
    names = [name for name in trips if name in ("commit", "rollback")]
    assert names == []
    trips.clear()
    async with database.session() as session:  # a write: its COMMIT on the loop's thread
        await session.execute(insert(THINGS).values(name="x"))
    assert [name for name in trips if name in ("commit", "rollback")] == []
    with pytest.raises(RuntimeError):
        async with database.session() as session:
            await session.execute(insert(THINGS).values(name="y"))
            raise RuntimeError("undone")
    async with database.session() as session:
        names_left = (await session.execute(select(THINGS.c.name))).scalars().all()
    assert names_left == ["x"]


async def test_the_wal_is_checkpointed_beside_the_writers_every_so_many_commits(
        database: Database, trips: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's own checkpoint (which syncs the disk) would run inside a COMMIT on the
    loop's thread: it is off on the driver's connections, and every
    ``CHECKPOINT_EVERY_COMMITS`` commits to the file one starts on a thread of its own
    (one at a time). Nobody waits for it: the commit that started it, and the writers
    after it, go on while it runs (it used to hold the file's write lock meanwhile)."""
    monkeypatch.setattr(sqlite_driver, "CHECKPOINT_EVERY_COMMITS", 3)
    async with database.engine.connect() as connection:
        automatic = (await connection.execute(text("PRAGMA wal_autocheckpoint"))).scalar()
    assert automatic == 0
    started, release = threading.Event(), threading.Event()
    ran: list[tuple[str, tuple[int, int, int]]] = []

    def held_checkpoint(connection: sqlite3.Connection) -> tuple[int, int, int]:
        started.set()
        release.wait(10)
        outcome = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        ran.append((threading.current_thread().name, outcome))
        return outcome

    monkeypatch.setattr(sqlite_driver, "_checkpoint", held_checkpoint)
    trips.clear()

    async def write(names: str) -> None:
        for name in names:
            async with database.transaction() as txn:
                await (await txn.connection()).execute(insert(THINGS).values(name=name))

    try:
        # Past the third commit a checkpoint is held on its thread; the writes finish.
        await asyncio.wait_for(write("pqrstuv"), 5)
        assert await asyncio.to_thread(started.wait, 5)
        assert ran == []  # still held: and no second one began meanwhile
    finally:
        release.set()
    for _ in range(500):
        if ran:
            break
        await asyncio.sleep(0.01)
    [(thread, (busy, frames, copied))] = ran
    assert thread == "sqlite-checkpoint" and busy == 0 and frames > 0 and copied == frames
    assert "_checkpoint" not in trips  # nothing of it on aiosqlite's thread
    async with database.engine.connect() as connection:
        names = (await connection.execute(select(THINGS.c.name))).scalars().all()
    assert sorted(names) == ["p", "q", "r", "s", "t", "u", "v"]


async def test_a_wal_grown_long_is_checkpointed_with_no_writer_beside(
        database: Database, trips: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint beside the writers never lets the WAL start over while they write: when
    the WAL was ``WAL_CATCH_UP_FRAMES`` long as the last one began, the next runs inside the
    COMMIT (on aiosqlite's thread, awaited, holding the file's write lock), and after it the
    WAL starts over."""
    monkeypatch.setattr(sqlite_driver, "CHECKPOINT_EVERY_COMMITS", 2)
    monkeypatch.setattr(sqlite_driver, "WAL_CATCH_UP_FRAMES", 1)
    checkpoints = sqlite_driver._CHECKPOINTS[str(database.url.database)]

    async def write(name: str) -> None:
        async with database.transaction() as txn:
            await (await txn.connection()).execute(insert(THINGS).values(name=name))

    trips.clear()
    for name in ("a", "b"):
        await write(name)
    for _ in range(500):  # the first, on its own thread, saw a WAL with frames in it
        if not checkpoints.running and checkpoints.wal_frames:
            break
        await asyncio.sleep(0.01)
    assert checkpoints.wal_frames > 0 and "_checkpoint" not in trips
    for name in ("c", "d"):
        await write(name)
    assert trips.count("_checkpoint") == 1 and not checkpoints.running
    await write("e")  # the WAL started over: this commit's frames are its first
    reader = sqlite3.connect(str(database.url.database))
    try:
        _busy, frames, _copied = reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        reader.close()
    assert 0 < frames <= 4


async def test_a_burst_of_connections_stays_open_for_the_next(database: Database) -> None:
    """A SQLite file's pool keeps every connection it opened (up to its cap), where
    SQLAlchemy's default closed all but five when they came back: each new one a thread
    and trips to it, which a write transaction made while holding the file's lock."""
    opened: list[object] = []
    event.listen(database.engine.sync_engine.pool, "connect",
                 lambda connection, record: opened.append(connection))

    async def burst(size: int) -> None:
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(size):
                connection = await stack.enter_async_context(database.engine.connect())
                await connection.execute(text("SELECT 1"))

    await burst(12)
    assert len(opened) >= 12 - 1  # (the fixture's connection may be one of them)
    before = len(opened)
    await burst(12)
    await burst(8)
    assert len(opened) == before
