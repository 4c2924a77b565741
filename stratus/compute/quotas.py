"""Per-project quotas on instances, cores and RAM, checked without races.

The check and the rows it allows are made in one transaction that holds a per-project lock:
an advisory transaction lock on PostgreSQL (``lock_project``), and around the whole
transaction an asyncio lock per project on SQLite, whose databases belong to one process
(``local_project_lock``).
"""

from __future__ import annotations

import asyncio
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.compute.errors import QuotaExceeded
from stratus.compute.models import Instance, KeyPair, QuotaLimit, ServerGroup
from stratus.core.exceptions import BadRequest

__all__ = ["DEFAULTS", "QuotaExceeded", "Quotas", "local_project_lock"]

DEFAULTS = {"instances": 10, "cores": 20, "ram": 51200, "key_pairs": 100,
            "server_groups": 10, "server_group_members": 10, "metadata_items": 128}

_local_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


@asynccontextmanager
async def local_project_lock(project_id: str) -> AsyncIterator[None]:
    """In-process lock for a project's quota; wrap the whole transaction in it (SQLite)."""
    async with _local_locks[project_id]:
        yield


class Quotas:
    """A project's limits and use, within one transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def limits(self, project_id: str) -> dict[str, int]:
        limits = dict(DEFAULTS)
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

    async def usage(self, project_id: str) -> dict[str, int]:
        row = (await self.session.execute(
            select(func.count(), func.coalesce(func.sum(Instance.vcpus), 0),
                   func.coalesce(func.sum(Instance.memory_mb), 0))
            .where(Instance.project_id == project_id, Instance.deleted_at.is_(None)))).one()
        return {"instances": int(row[0]), "cores": int(row[1]), "ram": int(row[2])}

    async def server_groups_of(self, project_id: str) -> int:
        return int(await self.session.scalar(
            select(func.count()).select_from(ServerGroup)
            .where(ServerGroup.project_id == project_id)) or 0)

    async def usage_detail(self, project_id: str) -> dict[str, int]:
        """Use of every quota ``os-quota-sets/detail`` shows (key pairs count per user: 0)."""
        used = await self.usage(project_id)
        used["key_pairs"] = 0
        used["server_groups"] = await self.server_groups_of(project_id)
        return used

    async def update(self, project_id: str, changes: dict[str, int], *,
                     force: bool) -> dict[str, int]:
        """Set new limits; unless ``force``, none may fall below what is in use."""
        if not changes:
            raise BadRequest("No quota to update was given.")
        if not force:
            used = await self.usage(project_id)
            for key, value in changes.items():
                if value >= 0 and used.get(key, 0) > value:
                    raise BadRequest(f"Quota limit {value} for {key} must be greater than or "
                                     f"equal to already used and reserved {used[key]}.")
        return await self.set_limits(project_id, changes)

    async def key_pairs_of(self, user_id: str) -> int:
        return int(await self.session.scalar(
            select(func.count()).select_from(KeyPair).where(KeyPair.user_id == user_id)) or 0)

    async def lock_project(self, project_id: str) -> None:
        """On PostgreSQL, hold the project's quota lock until this transaction ends."""
        if self.session.get_bind().dialect.name == "postgresql":
            key = zlib.crc32(f"stratus-quota:{project_id}".encode())
            await self.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    async def check_instances(self, project_id: str, count: int, vcpus: int,
                              ram: int) -> None:
        """Raise ``QuotaExceeded`` unless ``count`` more such instances fit the quota."""
        limits = await self.limits(project_id)
        if all(limits[resource] < 0 for resource in ("instances", "cores", "ram")):
            return  # unlimited: nothing to count
        used = await self.usage(project_id)
        wanted = {"instances": count, "cores": count * vcpus, "ram": count * ram}
        for resource, amount in wanted.items():
            limit = limits[resource]
            if limit >= 0 and used[resource] + amount > limit:
                raise QuotaExceeded(
                    f"Quota exceeded for {resource}: Requested {amount}, but already used "
                    f"{used[resource]} of {limit} {resource}")
