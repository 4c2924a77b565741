"""Servers as the Compute API reads them, within one transaction: the list with its filters
and sort keys, what a detailed view adds (faults, host liveness, server groups), edits of
the user-settable fields, and the instance action log.

The instance rows and their life are ``stratus.compute.instances``'s; this module holds the
queries the API's views need besides. ``show`` and ``detailed_page`` read in a transaction
of their own and end it before the caller asks another service for more (the volumes a
view lists): on SQLite a write transaction must not wait for another unit's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only

from stratus.compute import server_filters
from stratus.compute.hosts import Hosts
from stratus.compute.instances import Instances
from stratus.compute.models import Instance, InstanceAction, InstanceActionEvent, InstanceFault
from stratus.compute.server_filters import SORT_COLUMNS
from stratus.compute.server_groups import ServerGroups
from stratus.compute.service import ComputeRuntime, ComputeService
from stratus.core.db.paging import Page, SortKey, page
from stratus.core.exceptions import MarkerNotFound
from stratus.core.policy import Caller
from stratus.core.web.listing import NOVA, ListRequest
from stratus.core.web.microversions import APIVersion

#: Servers a page's view asks another service about per request (their ports, their volume
#: attachments): a page of up to 200 is one request each; the query string of 200 ids is
#: ~10 KB, well within what the HTTP servers parse. Chunks of a larger page go at once.
SERVERS_PER_REQUEST = 200
#: The most rows read per query while filling a page that Python-side filters thin out.
_MAX_BATCH = 1000
#: What a brief list reads of each row: the view's id and name, and what
#: ``server_filters.python_filter`` looks at.
_BRIEF_COLUMNS = (Instance.uuid, Instance.display_name, Instance.vm_state, Instance.task_state,
                  Instance.tags, Instance.network_info)


def target(instance: Instance) -> dict[str, Any]:
    """The policy target of a server."""
    return {"project_id": instance.project_id, "user_id": instance.user_id}


async def visible(svc: ComputeService, caller: Caller, server_id: str, *,
                  lock: bool = False) -> Instance:
    """The server, if the caller's project owns it (admins see every project's); ``lock``:
    its row locked for the transaction (``Instances.get``)."""
    return await svc.instances.get(server_id, lock=lock,
                                   project_id=None if caller.is_admin else caller.project_id)


@dataclass(frozen=True)
class DetailFacts:
    """What a detailed view shows besides the row: latest faults, host liveness, groups."""

    faults: dict[str, InstanceFault]
    host_up: dict[str, bool]
    groups: dict[str, list[str]]


@dataclass(frozen=True)
class ServerPage:
    """One page of a server list, the marker of the next page (None on the last) and, for
    detailed views, what they show besides the rows."""

    instances: list[Instance]
    next_marker: str | None
    facts: DetailFacts | None = None


@dataclass(frozen=True)
class ServerUpdate:
    """The user-settable fields a ``PUT /servers/{id}`` names (absent: unchanged)."""

    fields: dict[str, Any]


@dataclass
class Servers:
    """Reads and edits of servers for the API, within one transaction."""

    session: AsyncSession
    instances: Instances
    hosts: Hosts
    server_groups: ServerGroups

    @classmethod
    def of(cls, svc: ComputeService) -> Servers:
        """The part over a transaction's parts."""
        return cls(svc.session, svc.instances, svc.hosts, svc.server_groups)

    async def page(self, req: ListRequest, version: APIVersion, *, admin: bool,
                   project_id: str | None, all_tenants: bool,
                   brief: bool = False) -> ServerPage:
        """One page of the servers a list request asks for, read in SQL (keyset paging
        after the marker). Filters and sort keys: ``server_filters``. Filters the database
        cannot apply thin the pages it returns; more are read, in growing batches, until
        the page is full or the rows run out. ``brief``: the rows hold only what the brief
        view and the filters read (no flavor, metadata, block devices: the JSON columns a
        detailed view decodes); reading another column raises."""
        query = select(Instance)
        if brief:
            query = query.options(load_only(*_BRIEF_COLUMNS, raiseload=True))
        if all_tenants:
            if project := req.filter("project_id") or req.filter("tenant_id"):
                query = query.where(Instance.project_id == project)
        else:
            query = query.where(Instance.project_id == project_id)
        query = server_filters.apply_sql(query, req, version, admin)
        scope, query = query, server_filters.narrow_by_status(query, req)
        # Only admin-only keys asked for by a non-admin: the id order alone, as before.
        sort = [SortKey(k.column, k.direction) for k in req.sort] or [SortKey("uuid", "desc")]
        keep = server_filters.python_filter(req, version)
        found: list[Instance] = []
        marker, batch = req.marker, req.limit if keep is None or req.limit is None \
            else req.limit + 1
        while True:
            try:
                result = await page(self.session, query, sort_columns=SORT_COLUMNS, sort=sort,
                                    marker_id=marker, limit=batch, id_column=Instance.uuid,
                                    marker_query=scope)
            except MarkerNotFound as exc:
                raise NOVA.marker_not_found(exc.marker) from exc
            if keep is None:
                more = result.more and bool(result.rows)
                return ServerPage(result.rows, result.rows[-1].uuid if more else None)
            found.extend(keep(result.rows))
            if req.limit is not None and len(found) > req.limit:
                rows = found[:req.limit]
                return ServerPage(rows, rows[-1].uuid if rows else None)
            if not result.more or not result.rows:
                return ServerPage(found, None)
            marker = result.rows[-1].uuid
            batch = min(2 * (batch or 1), _MAX_BATCH)

    async def detail_facts(self, instances: list[Instance], *,
                           with_groups: bool) -> DetailFacts:
        uuids = [i.uuid for i in instances]
        return DetailFacts(
            faults=await self.instances.faults_of(uuids),
            host_up=await self.hosts.up_states({i.host for i in instances if i.host}),
            groups=await self.server_groups.groups_of(uuids) if with_groups else {})

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

    async def actions(self, instance_uuid: str, *, limit: int | None = None,
                      marker: str | None = None) -> Page:
        """A page of the server's actions, newest first; ``marker`` is the request id of
        the last action of the page before (a 400 if the server has no such action)."""
        return await page(
            self.session, select(InstanceAction).where(
                InstanceAction.instance_uuid == instance_uuid),
            sort_columns={"id": InstanceAction.id}, sort=[SortKey("id", "desc")],
            marker_id=marker, limit=limit, id_column=InstanceAction.request_id)

    async def events(self, action_id: int) -> list[InstanceActionEvent]:
        return list(await self.session.scalars(select(InstanceActionEvent).where(
            InstanceActionEvent.action_id == action_id).order_by(InstanceActionEvent.id)))


async def detailed_page(rt: ComputeRuntime, caller: Caller, req: ListRequest,
                        version: APIVersion, *, all_tenants: bool) -> ServerPage:
    """One page of the list with what its detailed view shows (``Servers.page``)."""
    async with rt.service(write=False) as svc:
        servers = Servers.of(svc)
        page = await servers.page(req, version, admin=caller.is_admin,
                                  project_id=caller.project_id, all_tenants=all_tenants)
        facts = await servers.detail_facts(page.instances,
                                           with_groups=version.at_least("2.71"))
    return dataclasses.replace(page, facts=facts)


async def show(rt: ComputeRuntime, caller: Caller, server_id: str,
               version: APIVersion) -> ServerPage:
    """The server (a page of one) with what its detailed view shows, if the caller may."""
    async with rt.service(write=False) as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:servers:show", target(instance))
        facts = await Servers.of(svc).detail_facts([instance],
                                                   with_groups=version.at_least("2.71"))
    return ServerPage([instance], None, facts)
