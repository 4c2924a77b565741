"""SQLAlchemy's aiosqlite driver with SQLite's statements run on the event loop's thread.

aiosqlite runs a connection's calls on a thread of its own; SQLAlchemy's adapter makes four
such calls for a statement (open a cursor, execute, fetch every row, close the cursor),
each a hand-off through a queue to that thread and a future back to the event loop. That
hand-off, not SQLite, was the largest item of a boot's CPU (issue 21's profiles): a boot's
statements each take SQLite a few microseconds, the hand-off tens (a queue put that wakes
the thread, the thread's GIL round, a self-pipe write that wakes the loop). So a statement
runs here as one function on the loop's own thread: executed, its rows read, ``rowcount``
and ``lastrowid`` taken, the cursor closed. The SQL, the transactions and the locking are
SQLAlchemy's and SQLite's as before.

Why that cannot stall the loop on a lock: the connection's ``busy_timeout`` is 0, so a
statement that would wait for SQLite's lock (a writer outside the process's queue of
writers, such as the conductor's, or another process) fails at once with ``SQLITE_BUSY``
having changed nothing; it is then run again on aiosqlite's thread with SQLite's busy
handler waiting up to ``BUSY_WAIT_MS``, as every statement did before, while the loop goes
on. A COMMIT too runs on the loop's thread: in WAL mode with ``synchronous=NORMAL`` it
writes the transaction's pages to the WAL and syncs nothing. What syncs the disk is the
WAL's checkpoint (70-140 ms on a busy disk), which SQLite would run inside the COMMIT that
crosses ``wal_autocheckpoint`` pages: the driver's connections have that off, and every
``CHECKPOINT_EVERY_COMMITS`` commits to a database file a passive checkpoint starts on a
thread of its own, with a connection of its own, and nobody waits for it. Not inside the
COMMIT, as it was (on aiosqlite's thread, awaited): that COMMIT's transaction held the
process's write lock of the file (``txn.py``) through the disk's sync, so every writer of
the file queued behind it and, with a burst of boots all queued there, the event loop sat
idle (1,000 concurrent boots: ~40 checkpoints). SQLite lets a checkpoint run beside its
writer and readers (it copies only the frames no reader still needs, and the writer goes
on appending to the WAL), so it needs no lock of the process's. But the WAL starts over
only after a checkpoint that copied all of it, which one beside a burst's writers never
does: when the WAL has grown to ``WAL_CATCH_UP_FRAMES``, the next runs as before (inside
the COMMIT, awaited), copying only what the last one left. A ROLLBACK stays on
aiosqlite's thread. A COMMIT or ROLLBACK with no transaction open (the pool's rollback of
each connection it takes back, the commit of a transaction that only read) makes no call
at all.

``Database`` passes ``aiosqlite_module()`` as the engine's DBAPI module for
``sqlite+aiosqlite`` URLs. Server-side cursors (``stream``) keep aiosqlite's own cursor.
"""

from __future__ import annotations

import collections
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_, in_greenlet

from stratus.core.db.prepared import MustWait

LOG = logging.getLogger(__name__)

#: What one statement brings back: description, rows, rowcount, lastrowid.
_Outcome = tuple[Any, list[Any], int, int | None]

#: Milliseconds SQLite's busy handler waits for a lock, for a statement (or COMMIT) that
#: found it taken and runs again on aiosqlite's thread: what every statement waited before.
BUSY_WAIT_MS = 5000
#: The connection's own ``busy_timeout``: a statement on the loop's thread never waits.
BUSY_TIMEOUT_MS = 0
#: Commits to one database file between two checkpoints of its WAL. SQLite's own default
#: is every 1,000 pages written; a boot's transactions write a few pages each.
CHECKPOINT_EVERY_COMMITS = 200
#: The WAL's length in frames past which the next checkpoint runs with no writer beside it
#: (``_Checkpoints.committed``): SQLite's WAL index holds 4,096 frames a table. A boot's
#: transactions write a few frames each: 200 commits, ~1,000.
WAL_CATCH_UP_FRAMES = 4096
_SQLITE_BUSY = 5
#: A read transaction's snapshot is older than the last commit: waiting cannot help.
_SQLITE_BUSY_SNAPSHOT = 517


def lock_was_busy(exc: BaseException) -> bool:
    """Whether SQLite refused ``exc``'s statement because another connection held the lock
    it needed (the statement changed nothing), such that waiting for it could succeed."""
    code = getattr(exc, "sqlite_errorcode", None)
    return (isinstance(exc, sqlite3.OperationalError) and isinstance(code, int)
            and code & 0xFF == _SQLITE_BUSY and code != _SQLITE_BUSY_SNAPSHOT)


def _run(connection: sqlite3.Connection, operation: str, parameters: Any,
         many: bool) -> _Outcome:
    """On the connection's thread: the statement executed, read and its cursor closed."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _waiting(connection: sqlite3.Connection, work: Callable[..., Any], *args: Any) -> Any:
    """On aiosqlite's thread: ``work`` with SQLite's busy handler waiting for the lock."""
    connection.execute(f"PRAGMA busy_timeout={BUSY_WAIT_MS}")
    try:
        return work(*args)
    finally:
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _checkpoint(connection: sqlite3.Connection) -> tuple[int, int, int]:
    """The WAL's pages copied into the database as far as no reader needs them
    (``PASSIVE``: it waits for nobody); SQLite's answer: (busy, frames in the WAL, frames
    copied)."""
    busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(busy), int(frames), int(copied)


class _Checkpoints:
    """One database file's WAL checkpoints (this process's): the commits since the last one
    began, and whether one is running."""

    __slots__ = ("count", "database", "running", "uri", "wal_frames")

    def __init__(self, database: str | None, uri: bool) -> None:
        #: The file (None: an in-memory database, which has no WAL).
        self.database = database
        self.uri = uri
        self.count = 0
        self.running = False
        #: Frames in the WAL when the last checkpoint on its own thread began.
        self.wal_frames = 0

    def committed(self) -> bool:
        """A commit to the file; every ``CHECKPOINT_EVERY_COMMITS`` of them a checkpoint
        starts on a thread of its own (not while one still runs), and this returns at once
        (False). True: the caller runs this one itself and waits for it, holding the file's
        write lock as the COMMIT's transaction does.

        Why sometimes True: SQLite starts its WAL over from the beginning only after a
        checkpoint copied every frame, and one that runs beside the writers never does while
        they keep writing (it copies the frames there when it began): through a long burst
        the WAL would only grow, and every read searches its index. So when the WAL had
        grown to ``WAL_CATCH_UP_FRAMES`` when the last one began (it had not started over
        since a few checkpoints), the next is run with no writer beside it: it copies the
        few frames left and the WAL starts over."""
        self.count += 1
        if self.count < CHECKPOINT_EVERY_COMMITS or self.running or self.database is None:
            return False
        self.count = 0
        if self.wal_frames >= WAL_CATCH_UP_FRAMES:
            self.wal_frames = 0
            return True
        self.running = True
        try:
            threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True).start()
        except RuntimeError as exc:  # no thread to be had (interpreter exiting): next time
            self.running = False
            LOG.warning("SQLite: a WAL checkpoint could not start: %s", exc)
        return False

    def _run(self) -> None:
        """On the checkpoint's thread: a connection of its own (the pool's are the loop's),
        closed after. A daemon thread: an exit mid-way leaves the WAL as a crash would,
        which SQLite recovers from."""
        assert self.database is not None
        try:
            connection = sqlite3.connect(self.database, uri=self.uri, check_same_thread=False)
            try:
                # The frames there when it began (SQLite's answer): the WAL's length.
                self.wal_frames = _checkpoint(connection)[1]
            finally:
                connection.close()
        except sqlite3.Error as exc:  # committed all the same; the next one tries again
            LOG.warning("SQLite: a WAL checkpoint failed: %s", exc)
        finally:
            self.running = False


_CHECKPOINTS: dict[str, _Checkpoints] = {}


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose statement is one call, on the loop's thread (on aiosqlite's when it
    has to wait for SQLite's lock); it holds the outcome."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        return  # nothing open: the rows are here already

    def close(self) -> None:
        self._rows.clear()

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None

    def nextset(self) -> None:
        return None

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        if in_greenlet():
            return super().execute(operation, parameters)
        self._keep(self._at_once(operation, parameters))
        return None

    def _at_once(self, operation: Any, parameters: Any) -> _Outcome:
        """Outside a greenlet (``prepared.PreparedConnection``, which runs only a single
        execution so): the statement on this thread, or ``MustWait`` having done nothing
        when it would have to wait (the connection busy with another statement on
        aiosqlite's thread, or SQLite's lock taken)."""
        if self._adapt_connection._execute_mutex.locked():
            raise MustWait
        try:
            return _run(self._connection._conn, operation, parameters, False)
        except sqlite3.OperationalError as exc:
            if lock_was_busy(exc):
                raise MustWait from exc
            self._adapt_connection._handle_exception(exc)
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _trip(self, operation: Any, parameters: Any, many: bool) -> _Outcome:
        """Under the connection's mutex: the statement on this thread or, when the lock it
        needs is taken, on aiosqlite's thread waiting for it (off the loop's thread).
        (A coroutine all the same, with no wait in the first case: SQLAlchemy's async
        connection takes an execution that never awaited for a driver that is not async.)"""
        async with self._adapt_connection._execute_mutex:
            connection = self._connection
            raw = connection._conn
            try:
                return _run(raw, operation, parameters, many)
            except sqlite3.OperationalError as exc:
                if not lock_was_busy(exc):
                    raise
            return await connection._execute(_waiting, raw, _run, raw, operation, parameters,
                                             many)

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        self._keep(await self._trip(operation, parameters, False))

    async def _executemany_async(self, operation: Any,
                                 seq_of_parameters: Sequence[Any]) -> Any:
        self._keep(await self._trip(operation, seq_of_parameters, True))

    def _keep(self, outcome: _Outcome) -> None:
        """The statement's outcome, for SQLAlchemy to read."""
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_checkpoints",)
    _cursor_cls = _OneTripCursor
    #: This connection's database file's checkpoints.
    _checkpoints: _Checkpoints
    #: The ``busy_timeout`` the connect listener sets (``stratus.core.db._sqlite_pragmas``).
    busy_timeout_ms = BUSY_TIMEOUT_MS

    def _idle(self) -> bool:
        """Whether SQLite has no transaction open on this connection (its autocommit flag,
        read here: no statement of this connection is running meanwhile), when a COMMIT or
        ROLLBACK would be a no-op that ``sqlite3`` skips anyway, after the trip to the
        thread. The pool's rollback of every connection it takes back is one such."""
        raw: sqlite3.Connection | None = self._connection._connection
        try:
            return raw is not None and not raw.in_transaction
        except sqlite3.Error:  # closed: as SQLAlchemy's adapter does
            return False

    def rollback(self) -> None:
        if not self._idle():
            super().rollback()

    def commit(self) -> None:
        if self._idle():
            return
        try:
            raw: sqlite3.Connection = self._connection._conn
            try:
                raw.commit()
            except sqlite3.OperationalError as exc:
                if not lock_was_busy(exc):
                    raise
                # SQLite keeps the transaction open after a busy COMMIT: again, waiting.
                await_(self._connection._execute(_waiting, raw, raw.commit))
        except Exception as error:
            self._handle_exception(error)
        if self._checkpoints.committed():
            try:
                await_(self._connection._execute(_checkpoint, raw))
            except sqlite3.Error as exc:  # committed all the same; the next one tries again
                LOG.warning("SQLite: a WAL checkpoint failed: %s", exc)


class _DBAPI(AsyncAdapt_aiosqlite_dbapi):
    #: Its cursors run a single execution outside a greenlet (``_OneTripCursor.execute``).
    statements_without_greenlet = True

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        creator_fn = kw.pop("async_creator_fn", None)
        if creator_fn:
            connection = creator_fn(*arg, **kw)
        else:
            connection = self.aiosqlite.connect(*arg, **kw)
            connection._thread.daemon = True  # as SQLAlchemy's own adapter does
        adapted = _Connection(self, await_(connection))
        # The WAL's checkpoints are the driver's (``commit``), on a thread of their own.
        adapted._connection._conn.execute("PRAGMA wal_autocheckpoint=0").fetchall()
        database = str(arg[0] if arg else kw.get("database", ""))
        uri = bool(kw.get("uri"))
        checkpoints = _CHECKPOINTS.get(database)
        if checkpoints is None:
            in_memory = database in ("", ":memory:") or (uri and "mode=memory" in database)
            checkpoints = _CHECKPOINTS[database] = _Checkpoints(
                None if in_memory else database, uri)
        adapted._checkpoints = checkpoints
        return adapted


def aiosqlite_module() -> Any:
    """The DBAPI module for ``create_async_engine(..., module=...)``."""
    return _DBAPI(aiosqlite, sqlite3)
