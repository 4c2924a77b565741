"""One transaction of the network service: the session, what runs after the commit, and
transaction-scoped locks and insert-if-absent.

Contract: ``after_commit`` actions run only once the transaction committed (the runtime
runs them, logging failures), so nobody is told of a change that then rolled back.
``lock(*key)`` is a PostgreSQL advisory transaction lock; on SQLite, whose database belongs
to one process, the runtime serialises writing transactions instead, so it is a no-op.
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

AfterCommit = Callable[[], Awaitable[None]]


class Txn:
    """The session of one transaction and the actions queued for after its commit."""

    def __init__(self, session: AsyncSession, dialect: str) -> None:
        self.session = session
        self.dialect = dialect
        self.pending: list[AfterCommit] = []

    def after_commit(self, action: AfterCommit) -> None:
        self.pending.append(action)

    def insert_ignore(self, table: Any) -> Any:
        """``INSERT ... ON CONFLICT DO NOTHING`` on ``table`` (see ``common.rowcount``)."""
        module = postgresql if self.dialect == "postgresql" else sqlite
        return module.insert(table).on_conflict_do_nothing()

    async def lock(self, *key: str) -> None:
        """A transaction-scoped lock on ``key`` (PostgreSQL; SQLite writers are already
        serialised)."""
        if self.dialect == "postgresql":
            number = zlib.crc32("/".join(key).encode()) - 2**31
            await self.session.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                                       {"k": number})
