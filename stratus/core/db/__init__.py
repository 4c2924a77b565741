"""Database access: SQLAlchemy 2 async engines and per-service Alembic histories.

Each service owns a declarative base and a migration history; the history's version table
is named after the service (``alembic_version_identity``) so several services can share
one PostgreSQL database without sharing tables. SQLite databases run in WAL mode.

``Database.transaction()`` yields the one transaction primitive, a ``Txn`` (``txn.py``:
locks, after-commit actions, insert-ignore); ``group.py``'s ``GroupCommit`` runs concurrent
callers' small units of work in one transaction (group commit); ``paging.py`` pages a query in SQL;
``columns.py`` names the column kinds the services' models share (ids, timestamps).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import importlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DateTime, event, inspect, text
from sqlalchemy.engine import Connection, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

from stratus.core.db.group import GroupCommit
from stratus.core.db.txn import AfterCommit, Txn, open_transaction
from stratus.core.db_pool import POOL, configure_pools
from stratus.core.exceptions import BadRequest

_Model = TypeVar("_Model")

LOG = logging.getLogger(__name__)


def as_loaded(model: type[_Model], values: Mapping[str, Any]) -> _Model:
    """An instance of the mapped ``model`` holding ``values`` as a load from the database
    sets them: in its ``__dict__``, with its ORM state, not in any session, without the
    mapped constructor (whose instrumented assignment of each attribute, an event and a
    history entry apiece, cost several times the rest on a hot path)."""
    new_instance = _NEW_INSTANCE.get(model)
    if new_instance is None:
        from sqlalchemy.orm import class_mapper

        new_instance = _NEW_INSTANCE[model] = class_mapper(model).class_manager.new_instance
    instance: _Model = new_instance()
    instance.__dict__.update(values)
    return instance


#: Each mapped model's bare-instance factory (its ORM state, no ``__init__``).
_NEW_INSTANCE: dict[type[Any], Callable[[], Any]] = {}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as naive UTC and always returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


async def statement_connection(session: AsyncSession) -> AsyncConnection:
    """The session's connection, to run prebuilt Core statements on without the ORM's
    execution path (a hot path's statements: their SQL compiled once, their parameters
    given apart). The session's pending ORM changes are flushed first, as its own
    ``execute`` would (autoflush), so the statements see them."""
    if session.new or session.dirty or session.deleted:
        await session.flush()
    return await session.connection()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # A connection of the loop-thread driver waits for no lock on the loop's thread: it
    # says how long (``sqlite_driver``: 0, a busy statement then waits on its own thread).
    busy_timeout = getattr(dbapi_connection, "busy_timeout_ms", 5000)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout}")
    cursor.close()


#: PostgreSQL's SQLSTATE for a character the database encoding cannot hold: a NUL in text.
_CHARACTER_NOT_IN_REPERTOIRE = "22021"
#: too_many_connections: the server (or the role or database) is at its connection limit.
_TOO_MANY_CONNECTIONS = "53300"


class ServerBusy(PoolTimeout):
    """PostgreSQL refused a new connection: it serves as many as it may
    (``max_connections``, or a role's or database's limit). Busy, not broken: with several
    processes on one server (``serve --workers``) the pools together can ask for more."""


def _unstorable_text(context: ExceptionContext) -> BaseException | None:
    """PostgreSQL holds no NUL character in text, even to compare with: a request value with
    one (a name, a filter) is the caller's bad input, answered 400, not a 500. A connection
    refused for too many clients is the busy error (503 with Retry-After), not a 500."""
    error: BaseException | None = context.original_exception
    while error is not None:
        sqlstate = getattr(error, "sqlstate", None)
        if sqlstate == _CHARACTER_NOT_IN_REPERTOIRE:
            return BadRequest("Invalid input: a value holds a character that cannot be "
                              "stored (NUL).")
        if sqlstate == _TOO_MANY_CONNECTIONS:
            return ServerBusy(f"the database server refused a connection: {error}")
        error = error.__cause__
    return None


def _closed_connection_check(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled PostgreSQL connection the server has closed (a restart, ``pg_ctl stop``,
    a terminated backend) is not handed out: the pool drops it and checks out another
    (``DisconnectionError`` in a checkout listener), as ``pool_pre_ping`` would. asyncpg
    reads the server's goodbye (or the socket's end) on the event loop as it comes, so the
    connection already knows it is closed: no round trip is needed to ask, where
    SQLAlchemy's pre-ping on asyncpg costs three (BEGIN, ``;``, ROLLBACK) on every checkout,
    that is every transaction (twice the statements of most of a boot's hops)."""
    connection = getattr(dbapi_connection, "_connection", None)
    is_closed = getattr(connection, "is_closed", None)
    if is_closed is not None and is_closed():
        raise DisconnectionError("the database server closed this connection")


#: A SQLite file's pool: as many connections at most as SQLAlchemy's default (5 + 10
#: overflow), but every one kept once opened. With the default, a connection opened past
#: the fifth was closed again when returned to a full pool, so a burst opened and closed
#: them all the time (1,000 concurrent boots: ~300 of each), mostly by a write transaction
#: holding the file's write lock (``txn.py``): a new aiosqlite connection is a new thread
#: and three trips to it (connect, two functions registered), a close one more and a join,
#: and SQLite then reads the schema and prepares every statement afresh. Meanwhile every
#: other writer of the file waited. An idle connection costs its thread (blocked on its
#: queue) and its page cache.
_SQLITE_POOL = {"pool_size": 15, "max_overflow": 0}
#: Seconds a request waits for a pooled PostgreSQL connection before it is answered 503.
POOL_TIMEOUT = 120.0
# Each PostgreSQL engine's pool: ``stratus.core.db_pool.POOL`` (``configure_pools``).


#: JSON column values that are an empty object or list (most rows' metadata, tags, system
#: metadata, block device mappings): made without the decoder.
_EMPTY_JSON = {"{}": dict, "[]": list}
_raw_decode = json.JSONDecoder().raw_decode


def json_column_value(value: str) -> Any:
    """A JSON column's value, as ``json.loads`` reads it, at less cost per value: a list of
    200 servers decodes eight columns a row, most of them ``{}``/``[]`` or short, where
    ``json.loads``' own checks (type, whitespace before and after) cost as much as the
    decoding. Anything but a plain JSON document (whitespace around it, trailing text) goes
    to ``json.loads``, which says what is wrong."""
    make = _EMPTY_JSON.get(value)
    if make is not None:
        return make()
    try:
        decoded, end = _raw_decode(value)
    except (ValueError, TypeError):
        return json.loads(value)
    return decoded if end == len(value) else json.loads(value)


class Database:
    """One service's database: an async engine, a session factory and its migrations."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = make_url(url)
        kwargs: dict[str, Any] = {"echo": echo, "json_deserializer": json_column_value}
        if self.url.get_backend_name() == "sqlite":
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
            if self.url.get_driver_name() == "aiosqlite":  # one thread hand-off a statement
                from stratus.core.db.sqlite_driver import aiosqlite_module

                kwargs["module"] = aiosqlite_module()
                if (self.url.database and self.url.database != ":memory:"
                        and self.url.query.get("mode") != "memory"):  # a file: a queue pool
                    kwargs.update(_SQLITE_POOL)
        else:
            # A burst of requests queues for a connection rather than failing: writers of one
            # project wait in line on its quota lock holding theirs, so the last of a few
            # hundred at once can wait well past SQLAlchemy's default 30 s. Past this, 503.
            # No ``pool_pre_ping``: a closed connection is found without a round trip
            # (``_closed_connection_check``).
            kwargs.update(pool_timeout=POOL_TIMEOUT, **POOL)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.url.get_backend_name() == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            event.listen(self.engine.sync_engine, "handle_error", _unstorable_text)
            event.listen(self.engine.sync_engine, "checkout", _closed_connection_check)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    def transaction(self, *, write: bool = True,
                    one_statement: bool = False) -> AbstractAsyncContextManager[Txn]:
        """One transaction as a ``Txn``: committed on success, rolled back on error, then its
        after-commit actions run. ``write=False`` (read only) takes no SQLite write lock;
        ``one_statement``: its work is one statement, sent with no BEGIN/COMMIT on
        PostgreSQL. See ``txn.py`` for both contracts. ``open_transaction``'s own context
        manager, not one wrapping it: every API request enters one, and a generator layer
        costs ~10 Python calls to enter and leave."""
        writer = self._sqlite_writer_key if write else None
        return open_transaction(self.engine, self.sessionmaker, self.backend,
                                sqlite_writer=writer, one_statement=one_statement)

    @functools.cached_property
    def _sqlite_writer_key(self) -> str | None:
        """What names this database's SQLite file process-wide (None on PostgreSQL);
        resolved once, not on every transaction."""
        if self.backend != "sqlite":
            return None
        database = self.url.database
        if not database or database == ":memory:":
            return f":memory:{id(self.engine)}"  # one engine, one private database
        return str(Path(database).resolve())

    async def upgrade(self, script_location: str, version_table: str,
                      revision: str = "head", *, known_head: str | None = None) -> None:
        """Run a service's Alembic history up to ``revision``.

        With ``known_head`` (the service's newest revision, kept beside its migrations), a
        database already there is recognised with one query, without loading Alembic: this
        keeps it off every start-up's critical path.
        """
        if known_head is not None and revision == "head":
            if await self._stored_revision(version_table) == known_head:
                return

        def run(connection: Connection) -> None:
            from alembic import command
            from alembic.config import Config

            cfg = Config()
            cfg.set_main_option("script_location", script_location)
            cfg.attributes["connection"] = connection
            cfg.attributes["version_table"] = version_table
            command.upgrade(cfg, revision)

        if self.backend != "sqlite":
            async with self.engine.begin() as conn:
                await conn.run_sync(run)
            return
        # SQLite alters a table in batch mode by copying it and dropping the original, and a
        # DROP TABLE with foreign keys enforced deletes every row that references the
        # original ON DELETE CASCADE (altering network_subnets emptied network_ip_allocations
        # of an upgraded database). So the history runs with enforcement off, as Alembic
        # advises; the pragma only takes effect outside a transaction, hence first, and the
        # references are checked before the commit instead.
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            try:
                await conn.run_sync(run)
                broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if broken:
                    raise RuntimeError(f"migrating to {revision} broke references: {broken[:5]}")
                await conn.commit()
            finally:
                await conn.rollback()
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                await conn.commit()

    async def _stored_revision(self, version_table: str) -> str | None:
        def read(connection: Connection) -> str | None:
            if not inspect(connection).has_table(version_table):
                return None
            rows = connection.execute(text(f"SELECT version_num FROM {version_table}")).all()
            return rows[0][0] if len(rows) == 1 else None

        async with self.engine.connect() as conn:
            return await conn.run_sync(read)

    async def current_revision(self, version_table: str) -> str | None:
        def read(connection: Connection) -> str | None:
            from alembic.runtime.migration import MigrationContext

            ctx = MigrationContext.configure(
                connection, opts={"version_table": version_table}
            )
            return ctx.get_current_revision()

        async with self.engine.connect() as conn:
            return await conn.run_sync(read)

    async def dispose(self) -> None:
        await self.engine.dispose()


def run_migrations_online(context: Any, models: str) -> None:
    """Body of each service's ``env.py``: migrate on the connection handed in by ``upgrade``.

    Alembic's command line is supported too: without a connection an engine is made from
    the ``sqlalchemy.url`` option, and the service's ``models`` module (its ``Base``) is
    the target metadata that ``revision --autogenerate`` compares with. An upgrade handed a
    connection uses no metadata (each migration says what it does), so it does not import
    the models: ``stratus up``'s migrating child starts that much sooner.
    """
    config = context.config
    version_table = config.attributes.get("version_table") or config.get_main_option(
        "version_table"
    )
    connection = config.attributes.get("connection")
    target_metadata = (None if connection is not None
                       else importlib.import_module(models).Base.metadata)

    def configure_and_run(conn: Connection) -> None:
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            version_table=version_table,
            render_as_batch=conn.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()

    if connection is not None:
        configure_and_run(connection)
        return

    async def standalone() -> None:
        engine = create_async_engine(config.get_main_option("sqlalchemy.url"))
        async with engine.begin() as conn:
            await conn.run_sync(configure_and_run)
        await engine.dispose()

    asyncio.run(standalone())


#: Errors that mean "the database is busy, not broken": every connection of the pool was in
#: use for the whole pool timeout. An API answers them 503 with Retry-After, not 500.
BUSY_ERRORS: tuple[type[Exception], ...] = (PoolTimeout,)


@functools.cache
def _outage_errors() -> tuple[type[BaseException], ...]:
    """Asked on the first error, not at import: asyncpg's exceptions import asyncpg whole,
    which a SQLite cloud never needs."""
    found: list[type[BaseException]] = [ConnectionError]
    try:
        from asyncpg import exceptions as pg
    except ImportError:  # SQLite only
        return tuple(found)
    # Refused, starting up or shutting down (57P01-03), connection-class errors (08xxx),
    # a connection that died under the caller.
    found += [pg.PostgresConnectionError, pg.CannotConnectNowError, pg.AdminShutdownError,
              pg.CrashShutdownError, pg.ConnectionDoesNotExistError]
    return tuple(found)


def database_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database server could not be reached or went away (refused,
    shutting down or restarting, the connection lost): an outage, which an API answers 503
    with Retry-After as it does a busy pool, not a bug (500)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    seen: BaseException | None = exc
    for _ in range(6):  # SQLAlchemy's and the driver's wrappers, then the cause
        if seen is None:
            return False
        if isinstance(seen, _outage_errors()):
            return True
        orig = seen.orig if isinstance(seen, DBAPIError) else None
        seen = orig if isinstance(orig, BaseException) else seen.__cause__ or seen.__context__
    return False


__all__ = ["BUSY_ERRORS", "AfterCommit", "Database", "GroupCommit", "ServerBusy", "Txn",
           "UTCDateTime",
           "configure_pools", "database_unreachable", "run_migrations_online", "utcnow"]
