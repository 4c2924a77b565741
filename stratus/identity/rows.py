"""Row helpers every identity repository shares: load-or-404 and Keystone's PATCH.

Contracts: ``get_row`` raises ``NotFound`` with Keystone's message; ``apply_changes`` sets
the row's own columns and keeps every other attribute the client sent in ``extra`` (Keystone
stores unknown attributes and returns them).
"""

from __future__ import annotations

from typing import Any, TypeVar

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
