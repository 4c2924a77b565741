"""One volume or snapshot by id, as a project may see it.

Both kinds of row are soft-deleted (``deleted_at``) and owned by a project; a row that is
missing, deleted (unless asked for) or another project's is ``NotFound``, worded as Cinder
words it (``"Volume <id> could not be found."``).
"""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.exceptions import NotFound
from stratus.volume.models import Snapshot, Volume

_Owned = TypeVar("_Owned", Volume, Snapshot)


async def get_owned(session: AsyncSession, model: type[_Owned], row_id: str,
                    project_id: str | None, *, include_deleted: bool) -> _Owned:
    """The row, re-read from the database (a manager may have changed it meanwhile);
    ``project_id`` None means any project (admin)."""
    row = await session.get(model, row_id, populate_existing=True)
    if (row is None or (row.deleted_at is not None and not include_deleted)
            or (project_id is not None and row.project_id != project_id)):
        raise NotFound(f"{model.__name__} {row_id} could not be found.")
    return row
