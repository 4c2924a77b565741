"""What every part of the network service's domain layer shares: the caller, the
transaction-bound ``ServiceBase`` (after-commit actions, locks, inserts that yield on a
taken key, quotas) and small helpers."""

from __future__ import annotations

import random
import uuid
import zlib
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.context import RequestContext
from stratus.core.db import utcnow
from stratus.core.policy import Enforcer
from stratus.network import ipam
from stratus.network.exceptions import InvalidInput, OverQuota, PolicyNotAuthorized
from stratus.network.models import Network, Port, Quota, SecurityGroup, SecurityGroupRule, Subnet

if TYPE_CHECKING:
    from stratus.network.service import NetworkRuntime

QUOTA_RESOURCES = ("network", "subnet", "port", "security_group", "security_group_rule")
MAC_PREFIX = "fa:16:3e"

AfterCommit = Callable[[], Awaitable[None]]


def new_id() -> str:
    return str(uuid.uuid4())


def rowcount(result: Any) -> int:
    """Rows an INSERT ... ON CONFLICT DO NOTHING wrote: 0 means the key was taken."""
    return int(getattr(result, "rowcount", 0))


def random_mac() -> str:
    return f"{MAC_PREFIX}:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))


# The caller -------------------------------------------------------------------------------


class Caller:
    """Who asks, and what policy lets them do. ``is_service``: a valid service token with
    the ``service`` or ``admin`` role came with the request."""

    def __init__(self, context: RequestContext, enforcer: Enforcer) -> None:
        self.context = context
        self.enforcer = enforcer
        creds = context.policy_credentials()
        creds["is_service"] = bool({"service", "admin"} & set(context.service_roles))
        self.credentials = creds
        self.is_admin = enforcer.check("context_is_admin", {}, creds)

    @property
    def project_id(self) -> str:
        return self.context.project_id or ""

    def check(self, rule: str, target: Mapping[str, Any] | None = None) -> bool:
        flat = dict(target or {})
        return self.enforcer.check(rule, {**flat, "target": flat}, self.credentials)

    def authorize(self, rule: str, target: Mapping[str, Any] | None = None) -> None:
        if not self.check(rule, target):
            raise PolicyNotAuthorized(f"(rule:{rule}) is disallowed by policy")


def network_target(net: Network) -> dict[str, Any]:
    return {"project_id": net.project_id, "tenant_id": net.project_id, "shared": net.shared,
            "network_id": net.id}

class ServiceBase:
    """One transaction of the network service (see ``NetworkRuntime.service``)."""

    def __init__(self, runtime: NetworkRuntime, session: AsyncSession,
                 pending: list[AfterCommit]) -> None:
        self.runtime = runtime
        self.session = session
        self.pending = pending
        self.dialect = runtime.db.backend
        self.ipam = ipam.IPAM(session, self.dialect)
        self.options = runtime.options

    def after_commit(self, action: AfterCommit) -> None:
        self.pending.append(action)

    def _insert(self, table: Any) -> Any:
        module = postgresql if self.dialect == "postgresql" else sqlite
        return module.insert(table).on_conflict_do_nothing()

    async def _lock(self, *key: str) -> None:
        """A transaction-scoped lock on ``key`` (PostgreSQL; SQLite writers are already
        serialised)."""
        if self.dialect == "postgresql":
            number = zlib.crc32("/".join(key).encode()) - 2**31
            await self.session.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                                        {"k": number})

    @staticmethod
    def _apply(query: Any, model: Any, where: Mapping[str, list[Any]] | None) -> Any:
        """Equality filters pushed down to SQL (``column IN values``)."""
        for column, values in (where or {}).items():
            query = query.where(getattr(model, column).in_(values))
        return query

    @staticmethod
    def _touch(row: Any) -> None:
        row.revision_number = (row.revision_number or 0) + 1
        row.updated_at = utcnow()

    def set_tags(self, row: Any, tags: list[str]) -> None:
        """A resource's tags replaced (duplicates dropped, order kept); a new revision."""
        row.tags = list(dict.fromkeys(tags))
        self._touch(row)

    # Quotas -------------------------------------------------------------------------------

    async def quota_limits(self, project_id: str) -> dict[str, int]:
        limits = {r: int(getattr(self.options, f"quota_{r}")) for r in QUOTA_RESOURCES}
        for row in await self.session.scalars(
                select(Quota).where(Quota.project_id == project_id)):
            if row.resource in limits:
                limits[row.resource] = row.hard_limit
        return limits

    async def quota_usage(self, project_id: str) -> dict[str, int]:
        models: dict[str, Any] = {"network": Network, "subnet": Subnet, "port": Port,
                                  "security_group": SecurityGroup,
                                  "security_group_rule": SecurityGroupRule}
        usage = {}
        for resource, model in models.items():
            usage[resource] = int(await self.session.scalar(
                select(func.count()).select_from(model).where(
                    model.project_id == project_id)) or 0)
        return usage

    async def check_quota(self, project_id: str, resource: str, adding: int = 1) -> None:
        """Raise ``OverQuota`` unless ``adding`` more fit; the project's lock is held to the
        end of the transaction, so two requests cannot both take the last unit."""
        limit = (await self.quota_limits(project_id))[resource]
        if limit < 0:
            return
        await self._lock("quota", project_id, resource)
        model: Any = {"network": Network, "subnet": Subnet, "port": Port,
                      "security_group": SecurityGroup,
                      "security_group_rule": SecurityGroupRule}[resource]
        used = int(await self.session.scalar(select(func.count()).select_from(model).where(
            model.project_id == project_id)) or 0)
        if used + adding > limit:
            raise OverQuota(resource)

    async def set_quotas(self, project_id: str, changes: Mapping[str, int]) -> dict[str, int]:
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
        return await self.quota_limits(project_id)

    async def reset_quotas(self, project_id: str) -> None:
        await self.session.execute(delete(Quota).where(Quota.project_id == project_id))

    async def projects_with_quotas(self) -> list[str]:
        return list(await self.session.scalars(select(Quota.project_id).distinct()))
