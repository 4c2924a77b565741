"""Row helpers every identity repository shares: load-or-404, filters, insert, PATCH.

Contracts: ``get_row`` raises ``NotFound`` with Keystone's message; ``apply_changes`` sets
the row's own columns and keeps every other attribute the client sent in ``extra`` (Keystone
stores unknown attributes and returns them).
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.identity.errors import not_found

_Row = TypeVar("_Row")

#: Never stored as extras: ids and links are the server's, the rest cannot change.
_NOT_EXTRA = ("id", "links", "domain_id", "parent_id", "is_domain")


async def get_row(session: AsyncSession, model: type[_Row], row_id: str, kind: str) -> _Row:
    """The row with this primary key, or ``NotFound("Could not find <kind>: <id>.")``."""
    row = await session.get(model, row_id)
    if row is None:
        raise not_found(kind, row_id)
    return row


def apply_changes(row: Any, changes: dict[str, Any], fields: tuple[str, ...]) -> None:
    """Copy known fields onto the row; everything else goes into its ``extra`` dict."""
    extra = dict(row.extra or {})
    for key, value in changes.items():
        if key in fields:
            setattr(row, key, value)
        elif key not in _NOT_EXTRA:
            extra[key] = value
    row.extra = extra


def where_given(query: Select[Any], *filters: tuple[Any, Any]) -> Select[Any]:
    """``query`` narrowed by ``column == value`` for each filter whose value is not None."""
    for column, value in filters:
        if value is not None:
            query = query.where(column == value)
    return query


async def insert(session: AsyncSession, row: _Row, *, row_id: str | None = None) -> _Row:
    """Add the new row and flush, so its defaults (the id) are set and constraints checked.
    ``row_id``: the id the caller chose (bootstrap's fixed ids), instead of a new one."""
    if row_id:
        row.id = row_id  # type: ignore[attr-defined]
    session.add(row)
    await session.flush()
    return row


async def named_in_domain(session: AsyncSession, model: Any, name: str, domain_id: str,
                          kind: str) -> Any:
    """The ``model`` row called ``name`` in the domain, or ``NotFound`` naming it."""
    row = await session.scalar(
        select(model).where(model.name == name, model.domain_id == domain_id))
    if row is None:
        raise not_found(kind, name)
    return row
