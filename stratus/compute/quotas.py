"""Per-project quotas on instances, cores and RAM (and key pairs, server groups, metadata
items), checked without races: compute's use of ``stratus.core.quotas``.

The check and the rows it allows are made in one transaction that holds the project's quota
lock (``txn.lock("quota", "compute", project_id)``: an advisory transaction lock on
PostgreSQL; on SQLite every write transaction is already exclusive). Over quota is
``QuotaExceeded``, a 403 as in Nova.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.compute.errors import QuotaExceeded
from stratus.compute.models import Instance, KeyPair, QuotaLimit, ServerGroup
from stratus.core import quotas as core
from stratus.core.db import Txn
from stratus.core.exceptions import BadRequest

__all__ = ["DEFAULTS", "TABLE", "QuotaExceeded", "Quotas"]

DEFAULTS = {"instances": 10, "cores": 20, "ram": 51200, "key_pairs": 100,
            "server_groups": 10, "server_group_members": 10, "metadata_items": 128}


def _exceeded(over: core.Overage) -> QuotaExceeded:
    return QuotaExceeded(f"Quota exceeded for {over.resource}: Requested {over.requested}, but "
                         f"already used {over.used} of {over.limit} {over.resource}")


TABLE = core.QuotaTable(QuotaLimit, DEFAULTS, scope="compute", over=_exceeded)

_INSTANCES = cast(Table, Instance.__table__)
#: A project's (``p_project``) live instances, cores and RAM: built once (a boot under a
#: set quota counts).
USAGE: Any = select(
    func.count().label("used_instances"),
    func.coalesce(func.sum(_INSTANCES.c.vcpus), 0).label("used_cores"),
    func.coalesce(func.sum(_INSTANCES.c.memory_mb), 0).label("used_ram"),
).where(_INSTANCES.c.project_id == bindparam("p_project"), _INSTANCES.c.deleted_at.is_(None))


class Quotas:
    """A project's limits and use, within one transaction."""

    def __init__(self, txn: Txn) -> None:
        self.txn = txn
        self.table = core.Quotas(txn, TABLE)

    @property
    def session(self) -> AsyncSession:
        return self.txn.session

    async def limits(self, project_id: str) -> dict[str, int]:
        return await self.table.limits(project_id)

    async def set_limits(self, project_id: str, changes: dict[str, int]) -> dict[str, int]:
        return await self.table.set(project_id, changes)

    async def usage(self, project_id: str) -> dict[str, int]:
        connection = await self.txn.connection()
        row = (await connection.execute(USAGE, {"p_project": project_id})).one()
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

    async def lock_project(self, project_id: str, *, shared: bool = False) -> None:
        """Hold the project's quota lock (or ``shared``) until this transaction ends."""
        await self.table.lock(project_id, shared=shared)

    def lock_by_statement(self, project_id: str, *, shared: bool = False) -> int | None:
        """``lock_project`` taken by the caller's next statement
        (``stratus.core.db.Txn.lock_by_statement``): its ``lock_key``, or None."""
        return self.table.lock_by_statement(project_id, shared=shared)

    async def check_instances(self, project_id: str, count: int, vcpus: int,
                              ram: int, *, shared: bool = False,
                              limits: Mapping[str, int] | None = None,
                              usage: Mapping[str, int] | None = None) -> None:
        """Raise ``QuotaExceeded`` unless ``count`` more such instances fit the quota;
        ``shared``: under the shared lock (``core.NeedsExclusiveLock`` if one is set).
        ``limits`` and ``usage``: the project's, if read already in this transaction
        under the lock (``usage``: after it was taken); counted here otherwise."""
        await self.table.check(
            project_id, {"instances": count, "cores": count * vcpus, "ram": count * ram},
            usage if usage is not None else (lambda: self.usage(project_id)), shared=shared,
            limits=limits)

    async def check_growth(self, project_id: str, cores: int, ram: int) -> None:
        """Raise ``QuotaExceeded`` unless a server may grow by ``cores`` and ``ram`` (a
        resize; shrinking is always allowed)."""
        adding = {k: v for k, v in (("cores", cores), ("ram", ram)) if v > 0}
        if adding:
            await self.table.check(project_id, adding, lambda: self.usage(project_id))
