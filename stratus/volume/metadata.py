"""The user metadata of volumes and snapshots: one set of rules for both.

Cinder's metadata calls are the same on ``/volumes/{id}/metadata`` and
``/snapshots/{id}/metadata``: merge or replace the whole set, read, set or delete one key
(the body of a one-key call must name the key of its URI).
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.exceptions import BadRequest, NotFound


class HasMetadata(Protocol):
    metadata_: dict[str, str]


class Metadata:
    """Metadata of one row (a ``Volume`` or ``Snapshot``) within a transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def set_all(self, row: HasMetadata, metadata: dict[str, str], *,
                      replace: bool) -> dict[str, str]:
        """Merge ``metadata`` into the row's (or replace it); the result."""
        row.metadata_ = dict(metadata) if replace else {**(row.metadata_ or {}), **metadata}
        await self.session.flush()
        return dict(row.metadata_)

    @staticmethod
    def item(row: HasMetadata, key: str) -> str:
        if key not in (row.metadata_ or {}):
            raise NotFound(f"Metadata item {key} was not found.")
        return str(row.metadata_[key])

    async def set_item(self, row: HasMetadata, key: str, meta: dict[str, str]) -> None:
        if list(meta) != [key]:
            raise BadRequest("Invalid input received: Request body and URI mismatch.")
        await self.set_all(row, meta, replace=False)

    async def delete_item(self, row: HasMetadata, key: str) -> None:
        self.item(row, key)
        row.metadata_ = {k: v for k, v in row.metadata_.items() if k != key}
        await self.session.flush()
