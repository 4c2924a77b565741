"""Server groups: a policy (affinity or anti-affinity, hard or soft) over member servers.

The scheduler reads a group's policy and where its members run (``scheduler/manager.py``);
a boot with the ``group`` hint joins the group (``add_members``), a deleted server leaves
it (``Instances.soft_delete``). Quotas: ``server_groups`` per project and
``server_group_members`` per group, both 403 when exceeded.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.compute.errors import QuotaExceeded
from stratus.compute.models import Instance, ServerGroup, ServerGroupMember
from stratus.compute.quotas import Quotas
from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, NotFound

__all__ = ["POLICIES", "SOFT_POLICIES", "ServerGroup", "ServerGroups", "check_rules"]

POLICIES = ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")
SOFT_POLICIES = ("soft-affinity", "soft-anti-affinity")


def check_rules(policy: str, rules: dict[str, Any]) -> dict[str, Any]:
    """Rules as stored: only ``max_server_per_host`` (a positive integer), only with
    ``anti-affinity``."""
    if not rules:
        return {}
    if policy != "anti-affinity":
        raise BadRequest("Only the anti-affinity policy takes rules.")
    unknown = set(rules) - {"max_server_per_host"}
    if unknown:
        raise BadRequest(f"Invalid input for field 'rules': unknown rule(s) "
                         f"{', '.join(sorted(unknown))}.")
    value = rules["max_server_per_host"]
    if isinstance(value, bool) or not (isinstance(value, int) or
                                       (isinstance(value, str) and value.isdigit())):
        raise BadRequest("Invalid input for field 'rules/max_server_per_host': it must be "
                         "a positive integer.")
    if int(value) < 1:
        raise BadRequest("Invalid input for field 'rules/max_server_per_host': it must be "
                         "at least 1.")
    return {"max_server_per_host": int(value)}


class ServerGroups:
    """Server groups and their members within one transaction."""

    def __init__(self, session: AsyncSession, quotas: Quotas) -> None:
        self.session = session
        self.quotas = quotas

    async def create(self, ctx: RequestContext, name: str, policy: str,
                     rules: dict[str, Any]) -> ServerGroup:
        assert ctx.project_id is not None and ctx.user_id is not None
        await self.quotas.lock_project(ctx.project_id)
        limit = (await self.quotas.limits(ctx.project_id))["server_groups"]
        used = await self.quotas.server_groups_of(ctx.project_id)
        if 0 <= limit < used + 1:
            raise QuotaExceeded(f"Quota exceeded, too many server groups: {used} of {limit} "
                                "in use.")
        group = ServerGroup(uuid=str(uuidlib.uuid4()), name=name, policy=policy,
                            rules=check_rules(policy, rules), project_id=ctx.project_id,
                            user_id=ctx.user_id)
        self.session.add(group)
        await self.session.flush()
        return group

    async def get(self, group_uuid: str, *, project_id: str | None = None) -> ServerGroup:
        """The group; ``NotFound`` if missing or (given ``project_id``) another's."""
        group = await self.session.get(ServerGroup, group_uuid)
        if group is None or (project_id is not None and group.project_id != project_id):
            raise NotFound(f"Instance group {group_uuid} could not be found.")
        return group

    async def find(self, *, project_id: str | None, limit: int | None,
                   offset: int) -> list[ServerGroup]:
        query = select(ServerGroup).order_by(ServerGroup.created_at, ServerGroup.uuid)
        if project_id is not None:
            query = query.where(ServerGroup.project_id == project_id)
        query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        return list(await self.session.scalars(query))

    async def members(self, group_uuids: list[str]) -> dict[str, list[str]]:
        """Each group's members that are not deleted, by group."""
        found: dict[str, list[str]] = {g: [] for g in group_uuids}
        if not group_uuids:
            return found
        rows = await self.session.execute(
            select(ServerGroupMember.group_uuid, ServerGroupMember.instance_uuid)
            .join(Instance, Instance.uuid == ServerGroupMember.instance_uuid)
            .where(ServerGroupMember.group_uuid.in_(group_uuids),
                   Instance.deleted_at.is_(None))
            .order_by(Instance.created_at, Instance.uuid))
        for group_uuid, instance_uuid in rows.all():
            found[group_uuid].append(instance_uuid)
        return found

    async def groups_of(self, instance_uuids: list[str]) -> dict[str, list[str]]:
        """The groups each of the instances is a member of, by instance."""
        found: dict[str, list[str]] = {}
        if not instance_uuids:
            return found
        for member in await self.session.scalars(select(ServerGroupMember).where(
                ServerGroupMember.instance_uuid.in_(instance_uuids))):
            found.setdefault(member.instance_uuid, []).append(member.group_uuid)
        return found

    async def scheduling_hints(self, group_uuid: str | None,
                               ) -> tuple[str | None, frozenset[str]]:
        """(policy, hosts) for the scheduler: the group's policy and the hosts its live
        members are placed on, or, for anti-affinity with ``max_server_per_host``, only the
        hosts that are full (``(None, {})`` without a group)."""
        if group_uuid is None:
            return None, frozenset()
        group = await self.session.get(ServerGroup, group_uuid)
        if group is None:
            return None, frozenset()
        hosts = await self.session.scalars(
            select(Instance.host).join(
                ServerGroupMember, ServerGroupMember.instance_uuid == Instance.uuid)
            .where(ServerGroupMember.group_uuid == group_uuid,
                   Instance.host.is_not(None), Instance.deleted_at.is_(None)))
        placed = [h for h in hosts if h]
        limit = (group.rules or {}).get("max_server_per_host")
        if group.policy == "anti-affinity" and limit:
            # The rule lets a host take up to ``limit`` members: the anti-affinity
            # filter then only has to avoid the hosts that are full.
            return group.policy, frozenset(h for h in set(placed)
                                           if placed.count(h) >= int(limit))
        return group.policy, frozenset(placed)

    async def add_members(self, group: ServerGroup, instance_uuids: list[str]) -> None:
        """Join the group, within the ``server_group_members`` quota of its project."""
        limit = (await self.quotas.limits(group.project_id))["server_group_members"]
        used = len((await self.members([group.uuid]))[group.uuid])
        if 0 <= limit < used + len(instance_uuids):
            raise QuotaExceeded(f"Quota exceeded, too many servers in group {group.uuid}: "
                                f"{used} of {limit} in use, {len(instance_uuids)} requested.")
        for uuid in instance_uuids:
            self.session.add(ServerGroupMember(group_uuid=group.uuid, instance_uuid=uuid))
        await self.session.flush()

    async def delete(self, group: ServerGroup) -> None:
        # Members explicitly: SQLite enforces no foreign keys unless asked to.
        await self.session.execute(delete(ServerGroupMember).where(
            ServerGroupMember.group_uuid == group.uuid))
        await self.session.delete(group)
        await self.session.flush()
