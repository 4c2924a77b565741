"""Snapshots of one transaction: read, list, create (under the project's quota lock), rename,
and the checks before a delete.

The data of a snapshot is made and removed by the volume's host (``VolumeRuntime`` tells it
over the bus after the transaction commits); here only rows change.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, NotFound
from stratus.volume import states
from stratus.volume.models import Snapshot, Volume
from stratus.volume.quotas import Quotas


class Snapshots:
    """Snapshots within one transaction."""

    def __init__(self, session: AsyncSession, quotas: Quotas) -> None:
        self.session = session
        self.quotas = quotas

    async def get(self, snapshot_id: str, project_id: str | None = None, *,
                  include_deleted: bool = False) -> Snapshot:
        snapshot = await self.session.get(Snapshot, snapshot_id, populate_existing=True)
        if (snapshot is None or (snapshot.deleted_at is not None and not include_deleted)
                or (project_id is not None and snapshot.project_id != project_id)):
            raise NotFound(f"Snapshot {snapshot_id} could not be found.")
        return snapshot

    async def live(self, volume_id: str) -> list[Snapshot]:
        return list(await self.session.scalars(select(Snapshot).where(
            Snapshot.volume_id == volume_id, Snapshot.deleted_at.is_(None))))

    async def list_page(self, project_id: str | None, *, filters: dict[str, Any],
                        limit: int | None, marker: str | None) -> list[Snapshot]:
        query = select(Snapshot).where(Snapshot.deleted_at.is_(None))
        if project_id is not None:
            query = query.where(Snapshot.project_id == project_id)
        for key, value in filters.items():
            query = query.where(getattr(Snapshot, key) == value)
        rows = list(await self.session.scalars(query.order_by(Snapshot.created_at.desc(),
                                                               Snapshot.id.desc())))
        if marker is not None:
            ids = [s.id for s in rows]
            if marker not in ids:
                raise BadRequest(f"Invalid input received: marker [{marker}] not found.")
            rows = rows[ids.index(marker) + 1:]
        return rows if limit is None else rows[:limit]

    async def create(self, ctx: RequestContext, volume: Volume, *, name: str | None,
                     description: str | None, metadata: dict[str, str],
                     force: bool) -> Snapshot:
        """A ``creating`` snapshot of ``volume``; call under the project's quota lock."""
        project_id = ctx.project_id
        assert project_id is not None
        allowed = (states.AVAILABLE, states.IN_USE) if force else (states.AVAILABLE,)
        if volume.status not in allowed:
            raise BadRequest(f"Invalid volume: Volume {volume.id} status must be "
                             f"available, but current status is: {volume.status}.")
        await self.quotas.check(project_id, snapshots=1, gigabytes=volume.size)
        snapshot = Snapshot(id=str(uuid.uuid4()), project_id=project_id,
                            user_id=ctx.user_id, volume_id=volume.id, name=name,
                            description=description, size=volume.size,
                            status=states.CREATING, metadata_=dict(metadata))
        self.session.add(snapshot)
        await self.session.flush()
        return snapshot

    async def rename(self, snapshot: Snapshot, changes: dict[str, str | None]) -> Snapshot:
        """Set ``name``/``description`` (the keys given; None clears)."""
        if not changes:
            raise BadRequest("Invalid input received: nothing to update.")
        for key, value in changes.items():
            setattr(snapshot, key, value)
        await self.session.flush()
        return snapshot

    async def start_delete(self, snapshot_id: str, project_id: str | None) -> Snapshot:
        """Mark the snapshot ``deleting`` if it may be deleted now (available or error, and
        no volume being created from it)."""
        snapshot = await self.get(snapshot_id, project_id)
        if snapshot.status not in (states.AVAILABLE, states.ERROR):
            raise BadRequest(f"Invalid snapshot: Volume Snapshot status must be "
                             f"available or error, currently {snapshot.status}.")
        if await self.session.scalar(select(func.count()).select_from(Volume).where(
                Volume.snapshot_id == snapshot.id, Volume.deleted_at.is_(None),
                Volume.status == states.CREATING)):
            raise BadRequest("Invalid snapshot: a volume is being created from it.")
        snapshot.status = states.DELETING
        return snapshot
