"""One page of a block storage list, in SQL: the parsed query and the keyset paging.

``ListQuery`` is what the API parsed (whose rows, filters, sort, ``limit``, ``marker``,
``offset``); ``page_of`` pages a SELECT with ``stratus.core.db.paging`` (the marker, then
the offset, then the limit, as Cinder applies them) and words a missing marker as Cinder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.db import paging
from stratus.core.db.paging import SortKey
from stratus.core.exceptions import BadRequest, MarkerNotFound


@dataclass
class ListQuery:
    """A parsed list request: whose rows (None: every project), filters, order, page."""

    project_id: str | None
    filters: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] | None = None
    sort: list[SortKey] = field(default_factory=list)
    limit: int | None = None
    marker: str | None = None
    offset: int = 0


async def page_of(session: AsyncSession, query: Select[Any], q: ListQuery, *,
                  sort_columns: Mapping[str, Any], default: Sequence[SortKey],
                  id_column: Any) -> tuple[list[Any], bool]:
    """The page ``q`` asks for of ``query`` and whether more rows follow."""
    try:
        result = await paging.page(
            session, query.offset(q.offset or None), sort_columns=sort_columns,
            sort=q.sort or default, marker_id=q.marker, limit=q.limit, id_column=id_column,
            marker_query=query)
    except MarkerNotFound:
        raise BadRequest(f"Invalid input received: marker [{q.marker}] not found.") from None
    return result.rows, result.more


async def count(session: AsyncSession, query: Select[Any]) -> int:
    """How many rows ``query`` matches, counted by the database."""
    return int(await session.scalar(select(func.count()).select_from(query.subquery())) or 0)
