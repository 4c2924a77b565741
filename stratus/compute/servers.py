"""Servers as the Compute API reads them, within one transaction: the list with its filters
and sort keys, what a detailed view adds (faults, host liveness, server groups), edits of
the user-settable fields, and the instance action log.

The instance rows and their life are ``stratus.compute.instances``'s; this module holds the
queries the API's views need besides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import QueryParams

from stratus.compute import server_filters
from stratus.compute.instances import InstanceManager
from stratus.compute.models import (
    ComputeServiceRecord,
    Instance,
    InstanceAction,
    InstanceActionEvent,
    InstanceFault,
    ServerGroupMember,
)
from stratus.compute.scheduler.host_state import COMPUTE_BINARY, is_up
from stratus.core.exceptions import BadRequest
from stratus.core.web.microversions import APIVersion

#: Seconds without a heartbeat after which a compute host is down.
SERVICE_DOWN_TIME = 60.0


@dataclass(frozen=True)
class ServerPage:
    """One page of a server list, and the marker of the next page (None on the last)."""

    instances: list[Instance]
    next_marker: str | None


@dataclass(frozen=True)
class ServerUpdate:
    """The user-settable fields a ``PUT /servers/{id}`` names (absent: unchanged)."""

    fields: dict[str, Any]


@dataclass(frozen=True)
class DetailFacts:
    """What a detailed view shows besides the row: latest faults, host liveness, groups."""

    faults: dict[str, InstanceFault]
    host_up: dict[str, bool]
    groups: dict[str, list[str]]


class Servers:
    """Reads and edits of servers for the API, within one transaction."""

    def __init__(self, session: AsyncSession, instances: InstanceManager) -> None:
        self.session = session
        self.instances = instances

    async def page(self, params: QueryParams, version: APIVersion, *, admin: bool,
                   project_id: str | None, all_tenants: bool) -> ServerPage:
        """The servers a list request asks for; filters and sort keys: ``server_filters``."""
        query = select(Instance)
        if all_tenants:
            project = params.get("project_id") or params.get("tenant_id")
            if project:
                query = query.where(Instance.project_id == project)
        else:
            query = query.where(Instance.project_id == project_id)
        query = server_filters.apply_sql(query, params, version, admin)
        order = server_filters.sort_order(params, admin)
        instances = list(await self.session.scalars(query.order_by(*order)))
        instances = server_filters.apply_python(instances, params, version)
        marker = params.get("marker")
        if marker is not None:
            ids = [i.uuid for i in instances]
            if marker not in ids:
                raise BadRequest(f"marker [{marker}] not found")
            instances = instances[ids.index(marker) + 1:]
        next_marker = None
        if params.get("limit") is not None:
            try:
                limit = int(params["limit"])
            except ValueError as exc:
                raise BadRequest("limit must be an integer") from exc
            if limit < 0:
                raise BadRequest("limit must be >= 0")
            if len(instances) > limit:
                next_marker = instances[limit - 1].uuid if limit else None
            instances = instances[:limit]
        return ServerPage(instances, next_marker)

    async def hosts_up(self, hosts: set[str]) -> dict[str, bool]:
        """Host → whether its compute service is up (hosts without a record are absent)."""
        if not hosts:
            return {}
        rows = await self.session.scalars(select(ComputeServiceRecord).where(
            ComputeServiceRecord.binary == COMPUTE_BINARY,
            ComputeServiceRecord.host.in_(hosts)))
        return {r.host: is_up(r.last_seen_up, r.forced_down, SERVICE_DOWN_TIME) for r in rows}

    async def detail_facts(self, instances: list[Instance], *,
                           with_groups: bool) -> DetailFacts:
        uuids = [i.uuid for i in instances]
        groups: dict[str, list[str]] = {}
        if with_groups and instances:
            for member in await self.session.scalars(select(ServerGroupMember).where(
                    ServerGroupMember.instance_uuid.in_(uuids))):
                groups.setdefault(member.instance_uuid, []).append(member.group_uuid)
        return DetailFacts(faults=await self.instances.faults_of(uuids),
                           host_up=await self.hosts_up({i.host for i in instances if i.host}),
                           groups=groups)

    async def update(self, instance: Instance, update: ServerUpdate) -> Instance:
        fields = update.fields
        if "name" in fields:
            instance.display_name = fields["name"] or instance.display_name
        if "description" in fields:
            instance.display_description = fields["description"]
        if "access_ip_v4" in fields:
            instance.access_ip_v4 = fields["access_ip_v4"]
        if "access_ip_v6" in fields:
            instance.access_ip_v6 = fields["access_ip_v6"]
        if fields.get("hostname"):
            instance.hostname = fields["hostname"]
        await self.session.flush()
        return instance

    async def hosts_of(self, uuids: set[str]) -> dict[str, str | None]:
        """Server id → its host (None before placement), for the servers not deleted."""
        rows = await self.session.execute(select(Instance.uuid, Instance.host).where(
            Instance.uuid.in_(uuids), Instance.deleted_at.is_(None)))
        return {uuid: host for uuid, host in rows.all()}

    async def actions(self, instance_uuid: str) -> list[InstanceAction]:
        """The server's actions, newest first."""
        return list(await self.session.scalars(select(InstanceAction).where(
            InstanceAction.instance_uuid == instance_uuid).order_by(InstanceAction.id.desc())))

    async def events(self, action_id: int) -> list[InstanceActionEvent]:
        return list(await self.session.scalars(select(InstanceActionEvent).where(
            InstanceActionEvent.action_id == action_id).order_by(InstanceActionEvent.id)))
