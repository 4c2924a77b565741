"""SQLAlchemy's aiosqlite driver with one trip to SQLite's thread per statement.

aiosqlite runs a connection's calls on a thread of its own; SQLAlchemy's adapter makes four
such calls for a statement (open a cursor, execute, fetch every row, close the cursor),
each a hand-off through a queue to that thread and a future back to the event loop. That
hand-off, not SQLite, was the largest item of a boot's CPU (issue 21's profiles). Here the
four run as one function on the connection's thread: the statement, its rows, ``rowcount``
and ``lastrowid`` come back together. The SQL, the transactions and the locking are
SQLAlchemy's and SQLite's as before; only the number of hand-offs changes. A COMMIT or
ROLLBACK with no transaction open (the pool's rollback of each connection it takes back,
the commit of a transaction that only read) makes no trip at all.

``Database`` passes ``aiosqlite_module()`` as the engine's DBAPI module for
``sqlite+aiosqlite`` URLs. Server-side cursors (``stream``) keep aiosqlite's own cursor.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

#: What one trip brings back: description, rows, rowcount, lastrowid.
_Outcome = tuple[Any, list[Any], int, int | None]


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


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose statement is one call on aiosqlite's thread; it holds the outcome."""

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

    async def _trip(self, operation: Any, parameters: Any, many: bool) -> None:
        async with self._adapt_connection._execute_mutex:
            outcome: _Outcome = await self._connection._execute(
                _run, self._connection._conn, operation, parameters, many)
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._trip(operation, parameters, False)

    async def _executemany_async(self, operation: Any,
                                 seq_of_parameters: Sequence[Any]) -> Any:
        await self._trip(operation, seq_of_parameters, True)


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _OneTripCursor

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
        if not self._idle():
            super().commit()


class _DBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        creator_fn = kw.pop("async_creator_fn", None)
        if creator_fn:
            connection = creator_fn(*arg, **kw)
        else:
            connection = self.aiosqlite.connect(*arg, **kw)
            connection._thread.daemon = True  # as SQLAlchemy's own adapter does
        return _Connection(self, await_(connection))


def aiosqlite_module() -> Any:
    """The DBAPI module for ``create_async_engine(..., module=...)``."""
    return _DBAPI(aiosqlite, sqlite3)
