"""Per-project quotas of the network service: limits (configured defaults, overridden by
rows), usage (row counts) and the check a create makes under the project's lock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.config import NetworkSettings
from stratus.network.errors import InvalidInput, OverQuota
from stratus.network.models import Network, Port, Quota, SecurityGroup, SecurityGroupRule, Subnet
from stratus.network.txn import Txn

QUOTA_RESOURCES = ("network", "subnet", "port", "security_group", "security_group_rule")

#: The table each quota resource counts.
_COUNTED: dict[str, Any] = {"network": Network, "subnet": Subnet, "port": Port,
                            "security_group": SecurityGroup,
                            "security_group_rule": SecurityGroupRule}


def default_limits(options: NetworkSettings) -> dict[str, int]:
    return {r: int(getattr(options, f"quota_{r}")) for r in QUOTA_RESOURCES}


@dataclass
class Quotas:
    """The quotas of one transaction."""

    txn: Txn
    options: NetworkSettings

    @property
    def session(self) -> AsyncSession:
        return self.txn.session

    def defaults(self) -> dict[str, int]:
        return default_limits(self.options)

    async def limits(self, project_id: str) -> dict[str, int]:
        limits = self.defaults()
        for row in await self.session.scalars(
                select(Quota).where(Quota.project_id == project_id)):
            if row.resource in limits:
                limits[row.resource] = row.hard_limit
        return limits

    async def _used(self, project_id: str, resource: str) -> int:
        model = _COUNTED[resource]
        return int(await self.session.scalar(select(func.count()).select_from(model).where(
            model.project_id == project_id)) or 0)

    async def usage(self, project_id: str) -> dict[str, int]:
        return {resource: await self._used(project_id, resource) for resource in _COUNTED}

    async def check(self, project_id: str, resource: str, adding: int = 1) -> None:
        """Raise ``OverQuota`` unless ``adding`` more fit; the project's lock is held to the
        end of the transaction, so two requests cannot both take the last unit."""
        limit = (await self.limits(project_id))[resource]
        if limit < 0:
            return
        await self.txn.lock("quota", project_id, resource)
        if await self._used(project_id, resource) + adding > limit:
            raise OverQuota(resource)

    async def set(self, project_id: str, changes: Mapping[str, int]) -> dict[str, int]:
        for resource, value in changes.items():
            if resource not in QUOTA_RESOURCES:
                raise InvalidInput(f"Unrecognized attribute(s) '{resource}'")
            if value < -1:
                raise InvalidInput(f"Invalid input for {resource}: '{value}' is smaller than "
                                   "-1.")
            row = await self.session.get(Quota, (project_id, resource))
            if row is None:
                self.session.add(Quota(project_id=project_id, resource=resource,
                                       hard_limit=value))
            else:
                row.hard_limit = value
        await self.session.flush()
        return await self.limits(project_id)

    async def reset(self, project_id: str) -> None:
        await self.session.execute(delete(Quota).where(Quota.project_id == project_id))

    async def projects(self) -> list[str]:
        return list(await self.session.scalars(select(Quota.project_id).distinct()))
