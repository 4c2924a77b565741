"""The one transaction primitive: a ``Txn`` (connection, session, locks, after-commit
actions, inserts that yield on a taken key), opened by ``Database.transaction()``.

Contracts:

- The transaction is a Core connection's (``await txn.connection()``, for prebuilt
  statements); its ORM session (``txn.session``) is made on first use, bound to that
  connection and joined to its transaction, so both see each other's changes (pending ORM
  changes are flushed before ``connection()`` answers, and before the commit). A
  transaction whose work is all prebuilt statements (the boot's hops) makes no session.

- The transaction commits when the ``async with`` body ends normally and rolls back when it
  raises; the error propagates.
- ``one_statement=True`` (PostgreSQL): the body's work is one statement, which commits on
  its own (the connection in autocommit): no ``BEGIN`` and ``COMMIT`` round trips around it,
  three round trips made one. Only for a body whose writes are one statement (a guarded
  ``UPDATE ... RETURNING``), and reads after it that need not see a snapshot with it; no
  ``lock()``, which would end with its statement. SQLite ignores it.
- ``after_commit`` actions run in the order they were queued, only after a successful
  commit, and after the transaction's locks are released. A failing action is logged and
  the next one still runs: the commit stands, so nothing is raised to the caller (the
  network service's behaviour for agent and compute notifications). On rollback the queued
  actions are dropped.
- ``lock(*key)`` holds a lock on ``key`` until the transaction ends, so a count or a
  lookup-then-create under it cannot race with another transaction taking the same key.
  ``lock(*key, shared=True)`` holds it shared: any number of transactions together, none
  while another holds it exclusively (what a write that counts nothing takes, so that the
  writes that count wait for it to commit and count it). A transaction that holds a key
  shared cannot then take it exclusively (two doing so would wait for each other):
  ``RuntimeError``.

  PostgreSQL: ``pg_advisory_xact_lock`` (``..._lock_shared``) on a stable 64-bit hash of
  the key.

  SQLite: every write transaction on one database file is serialised inside the process by
  one asyncio lock per file, taken *before* ``BEGIN``; ``lock()`` is then a no-op, as the
  whole transaction is already exclusive. Why this and not a per-key lock taken where
  ``lock()`` is called: a SQLite database belongs to one process (``stratus up`` runs every
  unit in it, and several units may open the same file), SQLite has a single writer anyway,
  and in WAL mode a deferred transaction that has read and then wants to write fails at once
  with "database is locked" (``SQLITE_BUSY_SNAPSHOT``; ``busy_timeout`` does not wait for
  it) when another writer committed since its first read. A per-key lock taken mid-way would
  also leave the count it guards reading the snapshot from before the other writer's commit.
  Taking the file's lock before the first statement avoids both, costs nothing that SQLite
  does not already impose, and needs no ``BEGIN IMMEDIATE`` busy-waiting. A write
  transaction opened inside another on the same file by the same task would wait for itself:
  that raises ``RuntimeError`` instead of hanging. Read-only transactions
  (``transaction(write=False)``) take no lock and must not call ``lock()`` on SQLite.
  Writes made outside ``transaction()`` (``Database.session()``, ``write=False``) are not
  serialised: they wait for SQLite's lock in its busy handler, which a busy queue of
  writers can keep past ``busy_timeout`` ("database is locked"). Only the conductor writes
  so, on purpose (``stratus.compute.conductor.manager``: it retries inside the queue).

  So, on SQLite: never await another unit that writes to the same file (a bus ``call``, a
  REST request to this process) inside a write transaction; it would wait for the lock
  this one holds. Queue such work with ``after_commit`` or end the transaction first.
  (PostgreSQL is not affected beyond the keys actually locked.)
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, bindparam, func, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import Insert

from stratus.core.db.prepared import PreparedConnection

LOG = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[None]]


def lock_number(*key: str) -> int:
    """A stable signed 64-bit number for ``key`` (the argument of ``pg_advisory_xact_lock``);
    the same in every process and release, unlike ``hash()``."""
    digest = hashlib.blake2b("\x1f".join(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


#: ``lock()`` on PostgreSQL, its SQL compiled once: (shared) -> statement.
_ADVISORY_LOCK = {
    False: text("SELECT pg_advisory_xact_lock(:k)").bindparams(bindparam("k")),
    True: text("SELECT pg_advisory_xact_lock_shared(:k)").bindparams(bindparam("k"))}

#: ``Txn.lock`` as a column of another statement (PostgreSQL), the key's number its bound
#: parameter ``lock_key``: (shared) -> column. See ``Txn.lock_by_statement``.
LOCK_COLUMNS: dict[bool, ColumnElement[Any]] = {
    False: func.pg_advisory_xact_lock(bindparam("lock_key", type_=BigInteger)).label("lock"),
    True: func.pg_advisory_xact_lock_shared(
        bindparam("lock_key", type_=BigInteger)).label("lock")}


@functools.lru_cache(maxsize=256)
def _insert_ignore(dialect: str, table: Any) -> Insert:
    """``Txn.insert_ignore``'s statement, built once per dialect and table: statements are
    immutable (``.values`` makes a new one), and a port create makes two, whose building
    and cache keys cost more Python than their execution."""
    # The dialect's own module, imported when first used: PostgreSQL's pulls in
    # asyncpg's (a tenth of a second), which a SQLite cloud never needs.
    module: Any = importlib.import_module(f"sqlalchemy.dialects.{dialect}")
    insert: Insert = module.insert(table).on_conflict_do_nothing()
    return insert


class Txn:
    """One database transaction: its connection, its session (made when first asked for),
    its dialect, its locks and what runs after it committed. Made by
    ``Database.transaction()``; see the module docstring."""

    def __init__(self, connection: AsyncConnection,
                 sessionmaker: async_sessionmaker[AsyncSession], dialect: str, *,
                 exclusive: bool, one_statement: bool = False) -> None:
        self._connection = connection
        #: PostgreSQL: each statement commits on its own (``one_statement``).
        self._one_statement = one_statement
        self._sessionmaker = sessionmaker
        self._session: AsyncSession | None = None
        self.dialect = dialect
        #: SQLite only: whether this transaction holds its file's write lock.
        self._exclusive = exclusive
        self._after: list[AfterCommit] = []
        #: PostgreSQL: the advisory locks this transaction holds, exclusive and shared (a
        #: second ``lock`` of one key, as a boot's quota lock then its quota check make,
        #: needs no statement).
        self._held: set[int] = set()
        self._held_shared: set[int] = set()

    @property
    def session(self) -> AsyncSession:
        """The ORM session of this transaction, made on first use: bound to its connection
        and joined to its transaction ("rollback_only": the session never commits it; a
        failed flush rolls it back, and the error ends the transaction anyway)."""
        session = self._session
        if session is None:
            session = self._session = self._sessionmaker(
                bind=self._connection, join_transaction_mode="rollback_only")
        return session

    async def connection(self) -> AsyncConnection:
        """The transaction's connection, to run prebuilt Core statements on without the
        ORM's execution path; the session's pending changes (if it was made) are flushed
        first, as its own ``execute`` would (autoflush), so the statements see them."""
        session = self._session
        if session is not None and (session.new or session.dirty or session.deleted):
            await session.flush()
        return self._connection

    async def _flush(self) -> None:
        """Before the commit: the session's pending changes written (a session's own
        commit would flush them)."""
        session = self._session
        if session is not None and (session.new or session.dirty or session.deleted):
            await session.flush()

    async def forget_objects(self) -> None:
        """The session's pending changes flushed and its objects forgotten (if it was
        made): what the next unit of a group commit's batch (``group.py``) loads comes from
        the database, not from the identity map of another unit's objects, which that unit's
        prebuilt statements may have made stale."""
        session = self._session
        if session is not None:
            await self._flush()
            session.expunge_all()

    async def _close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def after_commit(self, action: AfterCommit) -> None:
        """Run ``action`` after this transaction committed (in queueing order; a failure is
        logged and does not stop the next action). Dropped if the transaction rolls back."""
        self._after.append(action)

    async def lock(self, *key: str, shared: bool = False) -> None:
        """Hold a lock on ``key`` until this transaction ends, exclusive or ``shared`` (see
        the module docstring)."""
        number = self._to_lock(key, shared)
        if number is not None:
            connection = await self.connection()
            await connection.execute(_ADVISORY_LOCK[shared], {"k": number})
            (self._held_shared if shared else self._held).add(number)

    def lock_by_statement(self, *key: str, shared: bool = False) -> int | None:
        """``lock(*key, shared=...)`` left to the caller's next statement, a round trip
        fewer: that statement selects ``LOCK_COLUMNS[shared]`` with the number returned as
        its ``lock_key``. None: no statement needs to take the lock (SQLite, whose write
        transaction is exclusive already, or a lock held already): run the statement
        without that column. The lock counts as held from here on, so the statement must
        return at least one row (PostgreSQL calls the column's function per row returned)
        or the transaction must end with an error.

        The statement's reads see the database as it was before it waited for the lock
        (under read committed a statement's snapshot is taken before its functions run):
        only for reads of what the lock's other holders do not write. A count the lock
        guards goes in a statement after it."""
        number = self._to_lock(key, shared)
        if number is not None:
            (self._held_shared if shared else self._held).add(number)
        return number

    def _to_lock(self, key: tuple[str, ...], shared: bool) -> int | None:
        """The number of the advisory lock ``key`` to take, or None when there is none to
        take (held already, or SQLite); raises where the lock cannot be taken."""
        if not key:
            raise ValueError("a lock needs a key")
        if self.dialect == "postgresql":
            if self._one_statement:
                raise RuntimeError("lock() in a one-statement transaction would end with its "
                                   "own statement")
            number = lock_number(*key)
            if number in self._held:  # held (exclusively) until the transaction ends
                return None
            if shared and number in self._held_shared:
                return None
            if not shared and number in self._held_shared:
                raise RuntimeError(f"lock {key!r}: this transaction holds it shared; taking "
                                   "it exclusively could wait for another doing the same")
            return number
        if not self._exclusive:
            raise RuntimeError("lock() in a read-only SQLite transaction: open it with "
                               "transaction(write=True)")
        return None

    def insert_ignore(self, table: Any) -> Insert:
        """``INSERT ... ON CONFLICT DO NOTHING`` into ``table`` (a model or a ``Table``);
        add ``.values(...)``. ``rowcount(result) == 0`` then means the key was taken."""
        return _insert_ignore(self.dialect, table)

    @staticmethod
    def rowcount(result: Any) -> int:
        """Rows a DML statement wrote (0 for an ``insert_ignore`` whose key was taken)."""
        return int(getattr(result, "rowcount", 0) or 0)


# SQLite writers: one asyncio lock per database file, per event loop -----------------------

class _Writer:
    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.owner: asyncio.Task[Any] | None = None


#: Seconds of waiting for a SQLite write lock after which a warning names its holder.
SLOW_WRITER_WAIT = 10.0

# Per loop, because an asyncio.Lock belongs to the loop it first waited on (tests run one
# loop per test; ``stratus up`` runs one for the process).
_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Writer]] = (
    weakref.WeakKeyDictionary())


@asynccontextmanager
async def _sqlite_writer(key: str | None) -> AsyncIterator[None]:
    if key is None:
        yield
        return
    writers = _writers.setdefault(asyncio.get_running_loop(), {})
    writer = writers.setdefault(key, _Writer())
    task = asyncio.current_task()
    if writer.owner is not None and writer.owner is task:
        raise RuntimeError(f"a write transaction on {key} inside another one of the same "
                           "task would wait for itself")
    try:
        if writer.lock.locked():
            async with asyncio.timeout(SLOW_WRITER_WAIT):
                await writer.lock.acquire()
        else:  # free: taken at once, with no timer to arm and cancel
            await writer.lock.acquire()
    except TimeoutError:
        # Most likely a transaction awaiting another unit that writes to the same file
        # (see the module docstring): say who holds the lock, then keep waiting.
        LOG.warning("waited %.0f s for the SQLite write lock on %s, held by %r",
                    SLOW_WRITER_WAIT, key, writer.owner)
        await writer.lock.acquire()
    writer.owner = task
    try:
        yield
    finally:
        writer.owner = None
        writer.lock.release()


async def run_after_commit(actions: list[AfterCommit]) -> None:
    """Run the queued actions in order; log each failure and go on."""
    for action in actions:
        try:
            await action()
        except Exception:
            LOG.exception("an action after commit failed")


@asynccontextmanager
async def open_transaction(engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession],
                           dialect: str, *, sqlite_writer: str | None,
                           one_statement: bool = False) -> AsyncIterator[Txn]:
    """Body of ``Database.transaction()``: ``sqlite_writer`` names the SQLite file whose
    write lock to hold (None: no lock, PostgreSQL or a read-only transaction). The
    transaction is a Core connection's (no session unless the body asks for one: a session
    per transaction cost more than the hot paths' statements). ``one_statement``: see the
    module docstring."""
    # The file's write lock is let go as soon as the transaction has ended (committed or
    # rolled back), before the connection goes back to the pool: SQLAlchemy's
    # ``AsyncConnection.__aexit__`` runs ``close()`` in a task of its own and awaits it
    # shielded (so that a cancelled caller cannot abandon it half-way), which takes three
    # turns of the event loop however little the close does. Held through them, the lock
    # made every SQLite write transaction four turns long (with the hand-off to the next
    # writer) and a burst's writers, queued on it, went at one per four turns of a loop
    # busy with everything else (``benchmarks/profiles/aio-2026-12-07.md``).
    writer = _sqlite_writer(sqlite_writer)
    await writer.__aenter__()
    writing = True
    try:
        # Its statements run from their compiled form, on SQLite with no greenlet
        # (``prepared.py``).
        connection = await PreparedConnection(engine)
    except BaseException:
        await writer.__aexit__(None, None, None)
        raise
    try:
        if one_statement and dialect == "postgresql":
            # The driver then sends no BEGIN/COMMIT; the pool puts the connection back to
            # its own isolation level when it is returned (no round trip either).
            await connection.execution_options(isolation_level="AUTOCOMMIT")
        txn = Txn(connection, sessionmaker, dialect, exclusive=sqlite_writer is not None,
                  one_statement=one_statement and dialect == "postgresql")
        try:
            async with connection.begin():
                yield txn
                await txn._flush()
        finally:
            try:
                await txn._close()
            finally:
                writing = False
                await writer.__aexit__(None, None, None)
    finally:
        if writing:  # the transaction never began (a failed isolation level)
            await writer.__aexit__(None, None, None)
        await _close(connection, dialect)
    await run_after_commit(txn._after)


async def _close(connection: AsyncConnection, dialect: str) -> None:
    """``connection`` back to its pool. SQLite's close has nothing to wait for (the pool's
    rollback of a connection with no transaction open makes no call: ``sqlite_driver``), so
    it runs in the caller's task, with no task of its own, no shield and no turns of the
    loop. PostgreSQL's may wait on the server (the pool's reset): it keeps SQLAlchemy's
    shielded close, which a cancelled caller cannot cut short."""
    if dialect == "sqlite":
        await connection.close()
    else:
        await connection.__aexit__(None, None, None)


__all__ = ["LOCK_COLUMNS", "AfterCommit", "Txn", "lock_number", "open_transaction",
           "run_after_commit"]
