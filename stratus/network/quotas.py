"""Per-project quotas of the network service on core's ``QuotaTable``: limits (configured
defaults, overridden by rows), usage (row counts) and the check a create makes under the
project's lock. Neutron's wording: ``OverQuota`` (409) and its 400s for ``set``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from stratus.core.config import NetworkSettings
from stratus.core.db import Txn
from stratus.core.quotas import Overage, QuotaTable
from stratus.core.quotas import Quotas as QuotaRows
from stratus.network.errors import InvalidInput, OverQuota
from stratus.network.models import (
    FloatingIP,
    Network,
    Port,
    Quota,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
)

QUOTA_RESOURCES = ("network", "subnet", "port", "security_group", "security_group_rule",
                   "router", "floatingip")

#: The table each quota resource counts.
_COUNTED: dict[str, Any] = {"network": Network, "subnet": Subnet, "port": Port,
                            "security_group": SecurityGroup,
                            "security_group_rule": SecurityGroupRule,
                            "router": Router, "floatingip": FloatingIP}


def _over(over: Overage) -> Exception:
    return OverQuota(over.resource)


def quota_table(options: NetworkSettings) -> QuotaTable:
    """The network service's quotas (made once per process)."""
    return QuotaTable(Quota, {r: int(getattr(options, f"quota_{r}")) for r in QUOTA_RESOURCES},
                      scope="network", over=_over)


@dataclass
class Quotas:
    """The quotas of one transaction."""

    txn: Txn
    table: QuotaTable
    rows: QuotaRows = field(init=False)

    def __post_init__(self) -> None:
        self.rows = QuotaRows(self.txn, self.table)

    def defaults(self) -> dict[str, int]:
        return dict(self.table.defaults)

    async def limits(self, project_id: str) -> dict[str, int]:
        limits = await self.rows.limits(project_id)
        return {r: limits[r] for r in QUOTA_RESOURCES}

    async def _used(self, project_id: str, resource: str) -> int:
        model = _COUNTED[resource]
        return int(await self.txn.session.scalar(select(func.count()).select_from(model).where(
            model.project_id == project_id)) or 0)

    async def usage(self, project_id: str) -> dict[str, int]:
        return {resource: await self._used(project_id, resource) for resource in _COUNTED}

    def lock_by_statement(self, project_id: str) -> int | None:
        """The project's (exclusive) quota lock, taken by the caller's next statement
        (``Txn.lock_by_statement``): the ``lock_key`` it binds, or None when it need not."""
        return self.rows.lock_by_statement(project_id)

    def limit_of(self, resource: str, override: int | None) -> int:
        """The limit on ``resource`` of a project whose override of it is ``override``
        (None: it has none)."""
        return self.table.defaults[resource] if override is None else int(override)

    async def check(self, project_id: str, resource: str, adding: int = 1, *,
                    limits: Mapping[str, int] | None = None) -> None:
        """Raise ``OverQuota`` unless ``adding`` more fit; the project's lock is held to the
        end of the transaction, so two requests cannot both take the last unit. ``limits``:
        the project's limit on ``resource`` read by the caller in this transaction, with the
        lock held or taken (``Networks.read_network_and_limit``); else read here."""

        async def used() -> dict[str, int]:
            return {resource: await self._used(project_id, resource)}

        await self.rows.check(project_id, {resource: adding}, used, limits=limits)

    async def set(self, project_id: str, changes: Mapping[str, int]) -> dict[str, int]:
        for resource, value in changes.items():
            if resource not in QUOTA_RESOURCES:
                raise InvalidInput(f"Unrecognized attribute(s) '{resource}'")
            if value < -1:
                raise InvalidInput(f"Invalid input for {resource}: '{value}' is smaller than "
                                   "-1.")
        await self.rows.set(project_id, changes)
        return await self.limits(project_id)

    async def reset(self, project_id: str) -> None:
        await self.rows.reset(project_id)

    async def projects(self) -> list[str]:
        return await self.rows.projects_with_quotas()
