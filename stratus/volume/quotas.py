"""Per-project quotas on volumes, snapshots and gigabytes, checked without races.

Usage is counted from the rows themselves (volumes and snapshots not deleted; gigabytes
counts both, as Cinder does), so nothing can drift. A check and the rows it allows are made
in one transaction holding the project's lock: ``pg_advisory_xact_lock`` on PostgreSQL, and
on SQLite (one process owns the file) an asyncio lock around the whole transaction
(``project_lock``). Over quota is ``QuotaExceeded``, a 413 as in Cinder.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.config import VolumeSettings
from stratus.core.exceptions import BadRequest
from stratus.volume.errors import QuotaExceeded
from stratus.volume.models import QuotaLimit, Snapshot, Volume

RESOURCES = ("volumes", "snapshots", "gigabytes", "backups", "backup_gigabytes",
             "per_volume_gigabytes", "groups")

_local_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


@asynccontextmanager
async def project_lock(project_id: str) -> AsyncIterator[None]:
    """In-process lock on a project's quota; wrap the whole transaction in it."""
    async with _local_locks[project_id]:
        yield


def defaults(settings: VolumeSettings) -> dict[str, int]:
    return {"volumes": settings.quota_volumes, "snapshots": settings.quota_snapshots,
            "gigabytes": settings.quota_gigabytes, "backups": 10, "backup_gigabytes": 1000,
            "per_volume_gigabytes": settings.quota_per_volume_gigabytes, "groups": 10}


class Quotas:
    """The quota limits and usage of one transaction."""

    def __init__(self, session: AsyncSession, settings: VolumeSettings) -> None:
        self.session = session
        self.settings = settings

    async def lock(self, project_id: str) -> None:
        """On PostgreSQL, hold the project's quota lock until this transaction ends."""
        if self.session.get_bind().dialect.name == "postgresql":
            key = zlib.crc32(f"stratus-volume-quota:{project_id}".encode())
            await self.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    async def limits(self, project_id: str) -> dict[str, int]:
        limits = defaults(self.settings)
        for row in await self.session.scalars(
                select(QuotaLimit).where(QuotaLimit.project_id == project_id)):
            limits[row.resource] = row.hard_limit
        return limits

    async def set_limits(self, project_id: str, changes: dict[str, int]) -> dict[str, int]:
        for resource, value in changes.items():
            row = await self.session.get(QuotaLimit, (project_id, resource))
            if row is None:
                self.session.add(QuotaLimit(project_id=project_id, resource=resource,
                                            hard_limit=value))
            else:
                row.hard_limit = value
        await self.session.flush()
        return await self.limits(project_id)

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
        for row in await self.session.scalars(
                select(QuotaLimit).where(QuotaLimit.project_id == project_id)):
            await self.session.delete(row)
        await self.session.flush()

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
        """Raise ``QuotaExceeded`` unless these additions fit (call under ``lock``)."""
        limits = await self.limits(project_id)
        per_volume = limits["per_volume_gigabytes"]
        if volume_size is not None and 0 <= per_volume < volume_size:
            raise QuotaExceeded(f"Requested volume size {volume_size}G is larger than "
                                f"maximum allowed limit {per_volume}G.")
        used = await self.usage(project_id)
        for resource, amount in (("volumes", volumes), ("snapshots", snapshots),
                                 ("gigabytes", gigabytes)):
            limit = limits[resource]
            if amount and limit >= 0 and used[resource] + amount > limit:
                if resource == "gigabytes":
                    raise QuotaExceeded(
                        f"VolumeSizeExceedsAvailableQuota: Requested volume or snapshot "
                        f"exceeds allowed gigabytes quota. Requested {amount}G, quota is "
                        f"{limit}G and {used[resource]}G has been consumed.")
                raise QuotaExceeded(f"Maximum number of {resource} allowed ({limit}) "
                                    "exceeded")
