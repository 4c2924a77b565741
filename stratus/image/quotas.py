"""Per-project image quotas (image count, stored bytes) and the project lock they need.

A check and the rows it allows are made in one transaction that first takes the project's
lock (``lock_project``: an upsert of the project's ``ProjectLock`` row, which the database
holds to commit), so two requests of one project cannot both pass a check.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.config import ImageSettings
from stratus.core.exceptions import PayloadTooLarge
from stratus.image.models import Image, ProjectLock

#: Statuses whose data counts against the project's size quota.
STORED = ("active", "deactivated")


class Quotas:
    """The image quotas of one transaction."""

    def __init__(self, session: AsyncSession, settings: ImageSettings) -> None:
        self.session = session
        self.settings = settings

    async def lock_project(self, project_id: str) -> None:
        """Take the project's quota lock (held to commit). Call it first in a transaction."""
        table: Any = ProjectLock.__table__
        if self.session.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(table)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(table)
        stmt = stmt.values(project_id=project_id, generation=0).on_conflict_do_update(
            index_elements=[table.c.project_id],
            set_={"generation": table.c.generation + 1})
        await self.session.execute(stmt)

    async def stored_bytes(self, project_id: str, *, excluding: str | None = None) -> int:
        query = select(func.coalesce(func.sum(Image.size), 0)).where(
            Image.owner == project_id, Image.status.in_(STORED))
        if excluding is not None:
            query = query.where(Image.id != excluding)
        return int(await self.session.scalar(query) or 0)

    async def upload_limit(self, image: Image) -> tuple[int, str]:
        """How many bytes this image's data may have, and what to say when it has more."""
        conf = self.settings
        limit = conf.image_size_cap
        reason = (f"Image exceeds the storage size limit of {conf.image_size_cap} bytes "
                  "per image.")
        total = conf.quota_image_size_total
        if total is not None and image.owner:
            used = await self.stored_bytes(image.owner, excluding=image.id)
            remaining = max(0, total - used)
            if remaining < limit:
                limit = remaining
                reason = (f"Denying the upload: it exceeds the image storage quota of project "
                          f"{image.owner} ({total} bytes, of which {used} are in use).")
        return limit, reason

    async def check_image_count(self, project_id: str) -> None:
        quota = self.settings.quota_image_count
        if quota is None:
            return
        count = await self.session.scalar(
            select(func.count()).select_from(Image).where(Image.owner == project_id))
        if (count or 0) >= quota:
            raise PayloadTooLarge(f"Maximum number of images exceeded for project "
                                  f"{project_id} (quota: {quota}).")
