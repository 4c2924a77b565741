"""Snapshots of one transaction: read, list, create (under the project's quota lock), rename,
and the checks before a delete.

The data of a snapshot is made and removed by the volume's host (``VolumeRuntime`` tells it
over the bus after the transaction commits); here only rows change.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.context import RequestContext
from stratus.core.db.paging import SortKey
from stratus.core.exceptions import BadRequest
from stratus.volume import states
from stratus.volume.lookup import get_owned
from stratus.volume.metadata import Metadata
from stratus.volume.models import Snapshot, Volume
from stratus.volume.queries import ListQuery, page_of
from stratus.volume.quotas import Quotas

#: ``GET /snapshots`` sort keys → columns.
SORT_COLUMNS = {key: getattr(Snapshot, key) for key in (
    "id", "name", "status", "size", "created_at", "updated_at")}
DEFAULT_SORT = (SortKey("created_at", "desc"),)


class Snapshots:
    """Snapshots within one transaction."""

    def __init__(self, session: AsyncSession, quotas: Quotas) -> None:
        self.session = session
        self.quotas = quotas

    async def get(self, snapshot_id: str, project_id: str | None = None, *,
                  include_deleted: bool = False) -> Snapshot:
        return await get_owned(self.session, Snapshot, snapshot_id, project_id,
                               include_deleted=include_deleted)

    async def live(self, volume_id: str) -> list[Snapshot]:
        return list(await self.session.scalars(select(Snapshot).where(
            Snapshot.volume_id == volume_id, Snapshot.deleted_at.is_(None))))

    async def list_page(self, q: ListQuery) -> tuple[list[Snapshot], bool]:
        """The page of snapshots ``q`` asks for, in SQL, and whether more follow."""
        query = select(Snapshot).where(Snapshot.deleted_at.is_(None))
        if q.project_id is not None:
            query = query.where(Snapshot.project_id == q.project_id)
        for key, value in q.filters.items():
            query = query.where(getattr(Snapshot, key) == value)
        return await page_of(self.session, query, q, sort_columns=SORT_COLUMNS,
                             default=DEFAULT_SORT, id_column=Snapshot.id)

    async def create(self, ctx: RequestContext, volume: Volume, *, name: str | None,
                     description: str | None, metadata: dict[str, str],
                     force: bool) -> Snapshot:
        """A ``creating`` snapshot of ``volume``; call under the project's quota lock."""
        project_id = ctx.require_project()
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

    @property
    def metadata(self) -> Metadata:
        """The snapshots' user metadata (``/snapshots/{id}/metadata``)."""
        return Metadata(self.session)

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
