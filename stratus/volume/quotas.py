"""Per-project quotas on volumes, snapshots and gigabytes: core's ``QuotaTable`` in
Cinder's words.

Usage is counted from the rows themselves (volumes and snapshots not deleted; gigabytes
counts both, as Cinder does), so nothing can drift. A check and the rows it allows are made
in one transaction holding the project's lock (``stratus.core.quotas``: ``Txn.lock``). Over
quota is ``QuotaExceeded``, a 413 as in Cinder.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from stratus.core.config import VolumeSettings
from stratus.core.db import Txn
from stratus.core.exceptions import BadRequest
from stratus.core.quotas import Overage, QuotaTable
from stratus.core.quotas import Quotas as QuotaRows
from stratus.volume.errors import QuotaExceeded
from stratus.volume.models import QuotaLimit, Snapshot, Volume

RESOURCES = ("volumes", "snapshots", "gigabytes", "backups", "backup_gigabytes",
             "per_volume_gigabytes", "groups")


def defaults(settings: VolumeSettings) -> dict[str, int]:
    return {"volumes": settings.quota_volumes, "snapshots": settings.quota_snapshots,
            "gigabytes": settings.quota_gigabytes, "backups": 10, "backup_gigabytes": 1000,
            "per_volume_gigabytes": settings.quota_per_volume_gigabytes, "groups": 10}


def _over(over: Overage) -> QuotaExceeded:
    if over.resource == "gigabytes":
        return QuotaExceeded(
            f"VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed "
            f"gigabytes quota. Requested {over.requested}G, quota is {over.limit}G and "
            f"{over.used}G has been consumed.")
    return QuotaExceeded(f"Maximum number of {over.resource} allowed ({over.limit}) exceeded")


def quota_table(settings: VolumeSettings) -> QuotaTable:
    return QuotaTable(QuotaLimit, defaults(settings), scope="volume", over=_over)


class Quotas:
    """The quota limits and usage of one transaction."""

    def __init__(self, txn: Txn, table: QuotaTable) -> None:
        self.session = txn.session
        self.rows = QuotaRows(txn, table)

    async def lock(self, project_id: str) -> None:
        """Hold the project's quota lock until this transaction ends."""
        await self.rows.lock(project_id)

    async def limits(self, project_id: str) -> dict[str, int]:
        return await self.rows.limits(project_id)

    async def set_limits(self, project_id: str, changes: dict[str, int]) -> dict[str, int]:
        return await self.rows.set(project_id, changes)

    async def update(self, project_id: str, quota_set: dict[str, Any]) -> dict[str, int]:
        """Set the limits a ``quota_set`` body names (ids aside); -1 is unlimited."""
        changes: dict[str, int] = {}
        for key, value in quota_set.items():
            if key in ("tenant_id", "id"):
                continue
            if key not in RESOURCES:
                raise BadRequest(f"Invalid input received: Bad key(s) in quota set: {key}")
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise BadRequest(f"Invalid input received: {key} must be an integer.") from None
            if number < -1:
                raise BadRequest(f"Invalid input received: {key} must be >= -1.")
            changes[key] = number
        return await self.set_limits(project_id, changes)

    async def reset(self, project_id: str) -> None:
        await self.rows.reset(project_id)

    async def usage(self, project_id: str) -> dict[str, int]:
        volumes, volume_gb = (await self.session.execute(
            select(func.count(), func.coalesce(func.sum(Volume.size), 0)).where(
                Volume.project_id == project_id, Volume.deleted_at.is_(None)))).one()
        snapshots, snapshot_gb = (await self.session.execute(
            select(func.count(), func.coalesce(func.sum(Snapshot.size), 0)).where(
                Snapshot.project_id == project_id, Snapshot.deleted_at.is_(None)))).one()
        return {"volumes": int(volumes), "snapshots": int(snapshots),
                "gigabytes": int(volume_gb) + int(snapshot_gb), "backups": 0,
                "backup_gigabytes": 0, "per_volume_gigabytes": 0, "groups": 0}

    async def check(self, project_id: str, *, volumes: int = 0, snapshots: int = 0,
                    gigabytes: int = 0, volume_size: int | None = None) -> None:
        """Raise ``QuotaExceeded`` unless these additions fit (takes the project's lock)."""
        await self.lock(project_id)
        per_volume = (await self.limits(project_id))["per_volume_gigabytes"]
        if volume_size is not None and 0 <= per_volume < volume_size:
            raise QuotaExceeded(f"Requested volume size {volume_size}G is larger than "
                                f"maximum allowed limit {per_volume}G.")
        # Only what is added is checked: a project over a lowered limit may still shrink.
        adding = {r: n for r, n in (("volumes", volumes), ("snapshots", snapshots),
                                    ("gigabytes", gigabytes)) if n}
        await self.rows.check(project_id, adding, lambda: self.usage(project_id))
