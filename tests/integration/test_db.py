"""Database: per-service Alembic histories, SQLite pragmas, UTC timestamps — on real backends."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Column, ForeignKey, Integer, MetaData, Table, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, StatementError

from stratus.core.db import Database, UTCDateTime

IDENTITY_MIGRATIONS = "stratus.identity:migrations"
IDENTITY_VERSION_TABLE = "alembic_version_identity"
IDENTITY_TABLES = {
    "domain", "project", "user", "group", "user_group_membership", "role", "assignment",
    "region", "service", "endpoint", "revocation_event", "application_credential",
}


def identity_head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", IDENTITY_MIGRATIONS)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


@pytest.fixture
async def database(empty_db_url: str) -> AsyncIterator[Database]:
    db = Database(empty_db_url)
    yield db
    await db.dispose()


async def insert_row(db: Database, table_name: str, **values: Any) -> None:
    """Insert one row, filling every required column not given with a plain value of its type.

    Keeps these tests independent of the identity schema's exact columns.
    """

    def fill(sync: Connection) -> None:
        table = Table(table_name, MetaData(), autoload_with=sync)
        row = dict(values)
        for column in table.columns:
            if column.name in row or column.nullable or column.server_default is not None:
                continue
            if column.autoincrement is True:
                continue
            python_type = _python_type(column.type)
            row[column.name] = {str: f"x-{column.name}", bool: True, int: 0, dict: {},
                                list: [], dt.datetime: dt.datetime(2024, 1, 1)}[python_type]
        sync.execute(table.insert().values(**row))

    async with db.engine.begin() as conn:
        await conn.run_sync(fill)


def _python_type(column_type: Any) -> type:
    if isinstance(column_type, JSON):
        return dict
    try:
        python_type: type = column_type.python_type
        return python_type
    except NotImplementedError:
        return str


async def table_names(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_upgrade_creates_identity_schema(database: Database) -> None:
    assert await database.current_revision(IDENTITY_VERSION_TABLE) is None
    assert not IDENTITY_TABLES & await table_names(database)

    await database.upgrade(IDENTITY_MIGRATIONS, IDENTITY_VERSION_TABLE)

    tables = await table_names(database)
    assert tables >= IDENTITY_TABLES
    assert IDENTITY_VERSION_TABLE in tables
    # the history's version table is named after the service, never Alembic's shared default
    assert "alembic_version" not in tables
    assert await database.current_revision(IDENTITY_VERSION_TABLE) == identity_head()


async def test_upgrade_twice_is_a_noop(database: Database) -> None:
    await database.upgrade(IDENTITY_MIGRATIONS, IDENTITY_VERSION_TABLE)
    await insert_row(database, "domain", id="d-test", name="TestDomain")
    tables_before = await table_names(database)

    await database.upgrade(IDENTITY_MIGRATIONS, IDENTITY_VERSION_TABLE)

    assert await table_names(database) == tables_before
    assert await database.current_revision(IDENTITY_VERSION_TABLE) == identity_head()
    async with database.session() as session:
        versions = (await session.execute(
            text(f"SELECT version_num FROM {IDENTITY_VERSION_TABLE}"))).scalars().all()
        names = (await session.execute(
            text("SELECT name FROM domain WHERE id = 'd-test'"))).scalars().all()
    assert versions == [identity_head()]
    assert names == ["TestDomain"]


# UTCDateTime ------------------------------------------------------------------------------

metadata = MetaData()
stamps = Table("stamps", metadata,
               Column("id", Integer, primary_key=True),
               Column("at", UTCDateTime, nullable=True))


@pytest.fixture
async def stamps_db(database: Database) -> Database:
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return database


async def test_utc_datetime_round_trips_aware_values(stamps_db: Database) -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    local = dt.datetime(2024, 5, 17, 14, 30, 15, 123456, tzinfo=plus_two)
    utc = dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)
    async with stamps_db.session() as session:
        await session.execute(stamps.insert(), [{"id": 1, "at": local}, {"id": 2, "at": utc},
                                                 {"id": 3, "at": None}])
    async with stamps_db.session() as session:
        rows = {row.id: row.at for row in await session.execute(select(stamps.c.id, stamps.c.at))}
    assert rows[1] == local                      # the same instant...
    assert rows[1].tzinfo == dt.UTC              # ...returned in UTC
    assert rows[1].hour == 12 and rows[1].microsecond == 123456
    assert rows[2] == utc and rows[2].tzinfo == dt.UTC
    assert rows[3] is None


async def test_utc_datetime_stored_as_naive_utc(stamps_db: Database) -> None:
    local = dt.datetime(2024, 5, 17, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    async with stamps_db.session() as session:
        await session.execute(stamps.insert(), [{"id": 1, "at": local}])
        raw = (await session.execute(text("SELECT at FROM stamps WHERE id = 1"))).scalar_one()
    if isinstance(raw, str):  # SQLite hands back text when the type is not applied
        raw = dt.datetime.fromisoformat(raw)
    assert raw.tzinfo is None
    assert raw == dt.datetime(2024, 5, 17, 19, 30)


async def test_utc_datetime_rejects_naive_values(stamps_db: Database) -> None:
    with pytest.raises(StatementError) as info:
        async with stamps_db.session() as session:
            await session.execute(stamps.insert(), [{"id": 1, "at": dt.datetime(2024, 1, 1)}])
    assert isinstance(info.value.orig, ValueError)
    assert "naive" in str(info.value.orig)
    async with stamps_db.session() as session:
        count = (await session.execute(select(stamps.c.id))).all()
    assert count == []


async def test_session_rolls_back_on_error(stamps_db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with stamps_db.session() as session:
            await session.execute(stamps.insert(), [{"id": 1, "at": None}])
            raise RuntimeError("abort")
    async with stamps_db.session() as session:
        await session.execute(stamps.insert(), [{"id": 2, "at": None}])
    async with stamps_db.session() as session:
        ids = (await session.execute(select(stamps.c.id))).scalars().all()
    assert ids == [2]


# SQLite specifics (no PostgreSQL variant: these are properties of the SQLite set-up) ------


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "wal.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        assert db.backend == "sqlite"
        async with db.engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            foreign_keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
            busy_timeout = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
        assert mode.lower() == "wal"
        assert foreign_keys == 1
        # The driver's statements never wait on the loop's thread: a busy one waits on
        # aiosqlite's (stratus.core.db.sqlite_driver).
        assert busy_timeout == 0
        assert path.is_file()  # the parent directories were created
    finally:
        await db.dispose()


async def test_sqlite_statements_run_on_the_event_loops_thread(tmp_path: Path) -> None:
    """A statement is one plain call on the loop's thread, with no hand-off to aiosqlite's
    thread and back (which cost more CPU than SQLite's work on a boot's statements)."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'thread.db'}")
    try:
        async with db.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            await raw.create_function("thread_id", 0, threading.get_ident)
            ran_on = (await conn.execute(text("SELECT thread_id()"))).scalar_one()
        assert ran_on == threading.get_ident()
    finally:
        await db.dispose()


async def test_sqlite_statement_waits_for_a_busy_lock_without_stalling_the_loop(
        tmp_path: Path) -> None:
    """Another connection (another process's, or a writer outside the process's queue)
    holds SQLite's write lock: the statement waits for it, as SQLite's busy handler did
    before, and the loop goes on meanwhile (here the other connection's commit is itself
    run by the loop, so a statement that waited on the loop's thread would never see it)."""
    path = tmp_path / "busy.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t (id) VALUES (1)")
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, other.execute, "COMMIT")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        try:
            async with db.engine.begin() as conn:
                await conn.execute(text("INSERT INTO t (id) VALUES (2)"))
        finally:
            ticker.cancel()
        assert ticks >= 5  # the loop ran while the statement waited for the lock
        async with db.engine.connect() as conn:
            ids = (await conn.execute(text("SELECT id FROM t ORDER BY id"))).scalars().all()
        assert ids == [1, 2]
    finally:
        other.close()
        await db.dispose()


async def test_sqlite_enforces_foreign_keys(tmp_path: Path) -> None:
    fk_metadata = MetaData()
    Table("parent", fk_metadata, Column("id", Integer, primary_key=True))
    child = Table("child", fk_metadata, Column("id", Integer, primary_key=True),
                  Column("parent_id", Integer, ForeignKey("parent.id"), nullable=False))
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'fk.db'}")
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(fk_metadata.create_all)
        with pytest.raises(IntegrityError, match="FOREIGN KEY"):
            async with db.session() as session:
                await session.execute(child.insert(), [{"id": 1, "parent_id": 42}])
    finally:
        await db.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_connection_refused_for_too_many_clients_is_busy(db_url: str) -> None:
    """PostgreSQL at its connection limit (here a role's: 0) refuses a new connection: the
    busy error an API answers 503 with Retry-After, not an error that reads as a bug (the
    pools of several API processes on one server can ask for more than it serves)."""
    import uuid

    from sqlalchemy.engine import make_url

    from stratus.core.db import BUSY_ERRORS

    role = f"stratus_full_{uuid.uuid4().hex[:8]}"
    admin = Database(db_url)
    async with admin.engine.connect() as connection:
        await connection.execute(text(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0"))
        await connection.commit()
    limited = Database(make_url(db_url).set(username=role, password=None)
                       .render_as_string(hide_password=False))
    try:
        with pytest.raises(BUSY_ERRORS, match="too many connections"):
            async with limited.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await limited.dispose()
        async with admin.engine.connect() as connection:
            await connection.execute(text(f"DROP ROLE {role}"))
            await connection.commit()
        await admin.dispose()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_pooled_connection_the_server_closed_is_not_handed_out(db_url: str) -> None:
    """A pooled connection whose backend the server ended (a restart, ``pg_ctl stop``, a
    terminated backend) is replaced at checkout, without a round trip to ask: the next
    transaction runs on a new connection instead of failing."""
    import asyncio

    from sqlalchemy.exc import DBAPIError

    db = Database(db_url)
    admin = Database(db_url)
    try:
        async with db.transaction(write=False) as txn:
            connection = await txn.connection()
            first = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            driver = (await connection.get_raw_connection()).driver_connection
            assert driver is not None
            closed = asyncio.Event()
            driver.add_termination_listener(lambda _connection: closed.set())
        assert db.engine.pool.checkedin() == 1  # type: ignore[attr-defined]
        async with admin.engine.connect() as other:
            ended = (await other.execute(text("SELECT pg_terminate_backend(:pid)"),
                                         {"pid": first})).scalar_one()
        assert ended is True
        # Until the server's goodbye reached the pooled connection (asyncpg's own listener:
        # a checkout to look would replace it).
        await closed.wait()
        assert driver.is_closed()
        try:
            async with db.transaction(write=False) as txn:
                connection = await txn.connection()
                second = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        except DBAPIError as exc:  # the closed connection was handed out
            pytest.fail(f"a closed pooled connection was used: {exc}")
        assert second != first
    finally:
        await db.dispose()
        await admin.dispose()
