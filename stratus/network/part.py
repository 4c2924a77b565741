"""``Part``: what every part of the network domain holds, its transaction.

A part (``Networks``, ``Ports``, ``Agents``...) is made for one transaction with the parts
it works with; it reads and writes only through that transaction's session, so a request's
changes commit or roll back together."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.db.txn import Txn


@dataclass
class Part:
    """The base of a part: its transaction (subclasses add their collaborators as fields)."""

    txn: Txn

    @property
    def session(self) -> AsyncSession:
        return self.txn.session
