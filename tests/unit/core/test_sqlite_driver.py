"""SQLite through ``Database``: one trip to aiosqlite's thread per statement, none for a
COMMIT or ROLLBACK with nothing open, and the statements' outcomes as before (rows,
``RETURNING``, ``rowcount``, ``lastrowid``, many rows at once, errors)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from stratus.core.db import Database

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


async def test_a_statement_is_one_trip_and_its_outcome_comes_back(
        database: Database, trips: list[str]) -> None:
    async with database.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))  # the connection made and checked
        trips.clear()
        inserted = await connection.execute(
            insert(THINGS).values(name="a").returning(THINGS.c.id, THINGS.c.name))
        assert inserted.all() == [(1, "a")]
        assert len(trips) == 1
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
        assert len(trips) == 5  # five statements, five trips
        with pytest.raises(IntegrityError):
            await connection.execute(insert(THINGS).values(name="c"))
        await connection.commit()


async def test_no_trip_for_a_commit_or_rollback_with_nothing_open(
        database: Database, trips: list[str]) -> None:
    async with database.session() as session:  # a read: SQLite opens no transaction
        await session.execute(select(THINGS.c.id))
    names = [name for name in trips if name in ("commit", "rollback")]
    assert names == []
    trips.clear()
    async with database.session() as session:  # a write: one COMMIT, then nothing open
        await session.execute(insert(THINGS).values(name="x"))
    assert [name for name in trips if name in ("commit", "rollback")] == ["commit"]
    with pytest.raises(RuntimeError):
        async with database.session() as session:
            await session.execute(insert(THINGS).values(name="y"))
            raise RuntimeError("undone")
    async with database.session() as session:
        names_left = (await session.execute(select(THINGS.c.name))).scalars().all()
    assert names_left == ["x"]
