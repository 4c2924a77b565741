"""``Part``: what every part of the network domain holds, its transaction, and the two
reads every part makes through it (one row by its id, one page of a list).

A part (``Networks``, ``Ports``, ``Agents``...) is made for one transaction with the parts
it works with; it reads and writes only through that transaction's session, so a request's
changes commit or roll back together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.db.paging import Page
from stratus.core.db.txn import Txn
from stratus.core.policy import Caller
from stratus.network import filters as flt

_Row = TypeVar("_Row")


@dataclass
class Part:
    """The base of a part: its transaction (subclasses add their collaborators as fields)."""

    txn: Txn

    @property
    def session(self) -> AsyncSession:
        return self.txn.session

    async def _one(self, query: Select[_Row], missing: Exception,
                   params: dict[str, Any] | None = None) -> _Row:
        """The row ``query`` finds (eager joins allowed; ``params``: its bound parameters);
        ``missing`` raised if none."""
        row = (await self.session.scalars(query, params)).unique().one_or_none()
        if row is None:
            raise missing
        return row

    async def _list_page(self, caller: Caller, attributes: flt.Attributes,
                         visible: Select[Any], query: flt.ListQuery) -> Page:
        """One page of the ``visible`` rows that match ``query`` (``filters.list_page``)."""
        return await flt.list_page(self.session, self.txn.dialect, caller, attributes,
                                   visible, query)
