"""Compute hosts: their service records, whether they are up, and their hypervisors.

This is the one place that decides whether a host is up: a ``nova-compute`` service is
up when it is not forced down and its last heartbeat is at most ``service_down_time``
seconds old (``settings.compute.service_down_time``; ``DEFAULT_DOWN_TIME`` is that
setting's default, for callers built without settings). The scheduler, the conductor's
watchdog, ``/os-services``, ``/os-hypervisors``, the availability zones and a server's
``host_status`` all ask here.
"""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from sqlalchemy import ARRAY, JSON, Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from stratus.compute.models import (
    Allocation,
    ComputeServiceRecord,
    Instance,
    Inventory,
    ResourceProvider,
)
from stratus.compute.placement import (
    DISK_GB,
    MEMORY_MB,
    PROVIDER_AS_REPORTED,
    VCPU,
    InventorySpec,
    inventory_rows,
)
from stratus.core.config import ComputeSettings
from stratus.core.db import utcnow
from stratus.core.db.paging import SortKey, page
from stratus.core.exceptions import BadRequest, MarkerNotFound, NotFound

COMPUTE_BINARY = "nova-compute"
#: The zone of services that are not compute hosts (shown only in the zones' detail).
INTERNAL_ZONE = "internal"
DEFAULT_DOWN_TIME: float = ComputeSettings.model_fields["service_down_time"].default

__all__ = ["COMPUTE_BINARY", "DEFAULT_DOWN_TIME", "INTERNAL_ZONE", "ComputeServiceRecord",
           "Hosts", "Hypervisor", "is_up", "zone_of", "zone_states"]


def is_up(last_seen: dt.datetime | None, forced_down: bool, down_after: float,
          now: dt.datetime | None = None) -> bool:
    if forced_down or last_seen is None:
        return False
    return ((now or utcnow()) - last_seen).total_seconds() <= down_after


def zone_of(service: ComputeServiceRecord) -> str:
    return service.zone if service.binary == COMPUTE_BINARY else INTERNAL_ZONE


def zone_states(services: list[ComputeServiceRecord]) -> dict[str, bool]:
    """Zone name → available, over compute services only (the internal zone excluded).

    A zone is available when at least one enabled compute service is in it."""
    zones: dict[str, bool] = {}
    for s in services:
        if s.binary == COMPUTE_BINARY:
            zones[s.zone] = zones.get(s.zone, False) or not s.disabled
    return zones


@dataclass(frozen=True)
class Hypervisor:
    """A resource provider as ``/os-hypervisors`` shows it: capacity, use, its service."""

    provider: ResourceProvider
    #: 1-based position by name: the id before microversion 2.53.
    index: int
    service: ComputeServiceRecord | None
    up: bool
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int
    memory_mb_used: int
    local_gb_used: int
    running_vms: int


_SERVICES = cast(Table, ComputeServiceRecord.__table__)
#: A known compute host's heartbeat in one prebuilt statement (``seen``).
_SEEN_AT = bindparam("v_now", type_=_SERVICES.c.last_seen_up.type)
_SEEN = (update(_SERVICES)
         .where(_SERVICES.c.host == bindparam("w_host"),
                _SERVICES.c.binary == COMPUTE_BINARY)
         .values(last_seen_up=_SEEN_AT, updated_at=_SEEN_AT,
                 report_count=func.coalesce(_SERVICES.c.report_count, 0) + 1))


async def seen(connection: AsyncConnection, host: str) -> bool:
    """A compute host's report on its service row, if it has one, as one UPDATE (no ORM
    object): what ``Hosts.heartbeat`` does to a known host, the count incremented in SQL.
    False when the host has no row yet (its first report: ``Hosts.heartbeat`` makes it)."""
    done = await connection.execute(_SEEN, {"w_host": host, "v_now": utcnow()})
    return done.rowcount == 1


_SERVICE_SEEN = _SEEN.returning(_SERVICES.c.id).cte("seen_service")
#: PostgreSQL (``report_known_host``): ``seen`` and ``Placement.refresh_provider``'s reads in
#: one statement (a data-modifying CTE), read back as one row; ``_KNOWN_HOST_REPORT`` adds
#: ``Instances.on_host`` (the report that asks for the host's instances). Its one write is
#: the host's service row: the provider's row, which claims lock, is only read (a report that
#: wrote it waited for the claims on its host before its heartbeat counted).
_KNOWN_HOST_HEARTBEAT = select(
    select(func.count()).select_from(_SERVICE_SEEN).scalar_subquery().label("seen"),
    PROVIDER_AS_REPORTED.exists().label("as_reported"),
    select(func.json_agg(func.json_build_array(
        Inventory.resource_class, Inventory.total, Inventory.reserved,
        Inventory.allocation_ratio, Inventory.max_unit), type_=JSON))
    .where(Inventory.provider_uuid == bindparam("p_uuid")).scalar_subquery()
    .label("inventories"))
_KNOWN_HOST_REPORT = _KNOWN_HOST_HEARTBEAT.add_columns(
    select(func.array_agg(Instance.uuid, type_=ARRAY(Instance.uuid.type)))
    .where(Instance.host == bindparam("w_host"), Instance.deleted_at.is_(None))
    .scalar_subquery().label("instances"))


@dataclass(frozen=True)
class KnownHostReport:
    """What ``report_known_host`` did: whether the host's service row was there (and so
    written), whether its provider was there with the reported attributes, and the live
    instances on it when its inventories were those reported too (None: the report needs
    the rest of ``host_report``; empty when the report did not ask for them)."""

    seen: bool
    as_reported: bool
    instances: list[str] | None


async def report_known_host(connection: AsyncConnection, host: str, provider: str,
                            inventories: Mapping[str, InventorySpec], *,
                            hypervisor_type: str, cpu_arch: str,
                            with_instances: bool = True) -> KnownHostReport:
    """PostgreSQL: a host's report as one statement, sent alone (no BEGIN/COMMIT): its
    heartbeat (``seen``), its provider's attributes and inventories read and compared
    (``Placement.refresh_provider``), with ``with_instances`` its live instances read
    (``Instances.on_host``; otherwise none: ``instances`` is empty). Nearly every report
    of a known host is then all of it, where the four statements and the transaction
    around them cost six round trips."""
    now = utcnow()
    row = (await connection.execute(
        _KNOWN_HOST_REPORT if with_instances else _KNOWN_HOST_HEARTBEAT, {
            "w_host": host, "v_now": now, "p_uuid": provider,
            "v_hypervisor_type": hypervisor_type, "v_cpu_arch": cpu_arch})).one()
    current = {rc: (total, reserved, ratio, max_unit)
               for rc, total, reserved, ratio, max_unit in row.inventories or ()}
    unchanged = bool(row.seen) and bool(row.as_reported) \
        and current == inventory_rows(inventories)
    listed = list(row.instances or ()) if with_instances else []
    return KnownHostReport(seen=bool(row.seen), as_reported=bool(row.as_reported),
                           instances=listed if unchanged else None)


class Hosts:
    """Compute service records and hypervisors within one transaction."""

    def __init__(self, session: AsyncSession, down_after: float = DEFAULT_DOWN_TIME) -> None:
        self.session = session
        self.down_after = down_after

    def is_up(self, service: ComputeServiceRecord, now: dt.datetime | None = None) -> bool:
        return is_up(service.last_seen_up, service.forced_down, self.down_after, now)

    async def services(self, *, host: str | None = None,
                       binary: str | None = None) -> list[ComputeServiceRecord]:
        query = select(ComputeServiceRecord).order_by(ComputeServiceRecord.id)
        if host:
            query = query.where(ComputeServiceRecord.host == host)
        if binary:
            query = query.where(ComputeServiceRecord.binary == binary)
        return list(await self.session.scalars(query))

    async def services_by_host(self) -> list[ComputeServiceRecord]:
        """Every service, by host then binary (the availability zones' order)."""
        return list(await self.session.scalars(select(ComputeServiceRecord).order_by(
            ComputeServiceRecord.host, ComputeServiceRecord.binary)))

    async def compute_services(self, hosts: list[str] | None = None,
                               ) -> dict[str, ComputeServiceRecord]:
        """The compute services (of ``hosts``, or all), by host."""
        query = select(ComputeServiceRecord).where(
            ComputeServiceRecord.binary == COMPUTE_BINARY)
        if hosts is not None:
            query = query.where(ComputeServiceRecord.host.in_(hosts))
        return {s.host: s for s in await self.session.scalars(query)}

    async def up_states(self, hosts: set[str] | list[str]) -> dict[str, bool]:
        """Host → up, for those of ``hosts`` that have a compute service."""
        if not hosts:
            return {}
        now = utcnow()
        return {host: self.is_up(s, now)
                for host, s in (await self.compute_services(list(hosts))).items()}

    async def down_hosts(self) -> list[str]:
        now = utcnow()
        return [host for host, s in (await self.compute_services()).items()
                if not self.is_up(s, now)]

    async def update_service(self, service_uuid: str, *, status: str | None,
                             disabled_reason: str | None,
                             forced_down: bool | None) -> ComputeServiceRecord:
        """Enable or disable a service (with a reason), or force it down."""
        service = await self.session.scalar(select(ComputeServiceRecord).where(
            ComputeServiceRecord.uuid == service_uuid))
        if service is None:
            raise NotFound(f"Service {service_uuid} could not be found.")
        if status is not None:
            if status not in ("enabled", "disabled"):
                raise BadRequest("status must be 'enabled' or 'disabled'.")
            service.disabled = status == "disabled"
            service.disabled_reason = disabled_reason if service.disabled else None
        elif disabled_reason is not None:
            raise BadRequest("disabled_reason needs status 'disabled'.")
        if forced_down is not None:
            service.forced_down = forced_down
        await self.session.flush()
        return service

    async def heartbeat(self, host: str, zone: str) -> ComputeServiceRecord:
        """Record a compute host's report: its service row, created on the first one."""
        service = await self.session.scalar(select(ComputeServiceRecord).where(
            ComputeServiceRecord.host == host, ComputeServiceRecord.binary == COMPUTE_BINARY))
        now = utcnow()
        if service is None:
            service = ComputeServiceRecord(uuid=str(uuidlib.uuid4()), host=host,
                                           binary=COMPUTE_BINARY, topic=f"compute.{host}",
                                           zone=zone, report_count=0)
            self.session.add(service)
        service.last_seen_up = now
        service.updated_at = now
        service.report_count = (service.report_count or 0) + 1
        return service

    async def hypervisors(self, *, limit: int | None = None,
                          marker: str | None = None) -> list[Hypervisor]:
        """Resource providers by name, with their inventory, use and service; paged in SQL
        after the provider ``marker`` (its uuid)."""
        try:
            found = await page(self.session, select(ResourceProvider),
                               sort_columns={"name": ResourceProvider.name},
                               sort=[SortKey("name")], marker_id=marker, limit=limit,
                               id_column=ResourceProvider.uuid)
        except MarkerNotFound as exc:
            raise BadRequest(f"marker [{marker}] not found") from exc
        providers: list[ResourceProvider] = list(found.rows)
        if not providers:
            return []
        return await self._describe(providers, await self._position(providers[0]))

    async def hypervisor_totals(self) -> dict[str, int]:
        """Sums over every hypervisor, counted in SQL: ``count``, capacity (``vcpus``,
        ``memory_mb``, ``local_gb``), use (``*_used``) and ``running_vms``."""
        totals = {"count": int(await self.session.scalar(
            select(func.count()).select_from(ResourceProvider)) or 0)}
        capacity = dict((await self.session.execute(
            select(Inventory.resource_class, func.sum(Inventory.total))
            .group_by(Inventory.resource_class))).all())
        used = dict((await self.session.execute(
            select(Allocation.resource_class, func.sum(Allocation.used))
            .group_by(Allocation.resource_class))).all())
        for key, rc in (("vcpus", VCPU), ("memory_mb", MEMORY_MB), ("local_gb", DISK_GB)):
            totals[key] = int(capacity.get(rc) or 0)
            totals[f"{key}_used"] = int(used.get(rc) or 0)
        # A provider runs as many instances as the resource class with the most consumers.
        per_class = (select(Allocation.provider_uuid,
                            func.count(Allocation.consumer_uuid.distinct()).label("n"))
                     .group_by(Allocation.provider_uuid, Allocation.resource_class).subquery())
        per_provider = (select(func.max(per_class.c.n).label("n"))
                        .group_by(per_class.c.provider_uuid).subquery())
        totals["running_vms"] = int(await self.session.scalar(
            select(func.coalesce(func.sum(per_provider.c.n), 0))) or 0)
        return totals

    async def hypervisor(self, hypervisor_id: str) -> Hypervisor:
        """One hypervisor by provider uuid, or by its position (the id before 2.53)."""
        query = select(ResourceProvider).order_by(ResourceProvider.name, ResourceProvider.uuid)
        provider = await self.session.scalar(
            query.where(ResourceProvider.uuid == hypervisor_id))
        if provider is None and hypervisor_id.isdigit() and int(hypervisor_id) >= 1:
            provider = await self.session.scalar(query.offset(int(hypervisor_id) - 1).limit(1))
            if provider is not None:
                return (await self._describe([provider], int(hypervisor_id)))[0]
        if provider is None:
            raise NotFound(f"Hypervisor {hypervisor_id} could not be found.")
        return (await self._describe([provider], await self._position(provider)))[0]

    async def _position(self, provider: ResourceProvider) -> int:
        """The provider's 1-based position by name (the hypervisor id before 2.53)."""
        return 1 + int(await self.session.scalar(select(func.count()).select_from(
            ResourceProvider).where(ResourceProvider.name < provider.name)) or 0)

    async def _describe(self, providers: list[ResourceProvider],
                        first: int) -> list[Hypervisor]:
        """The providers (consecutive by name from position ``first``) as hypervisors."""
        uuids = [p.uuid for p in providers]
        inventories: dict[str, dict[str, int]] = {}
        for row in await self.session.scalars(
                select(Inventory).where(Inventory.provider_uuid.in_(uuids))):
            inventories.setdefault(row.provider_uuid, {})[row.resource_class] = row.total
        used: dict[str, dict[str, int]] = {}
        running: dict[str, int] = {}
        for provider, rc, amount, consumers in (await self.session.execute(
                select(Allocation.provider_uuid, Allocation.resource_class,
                       func.sum(Allocation.used),
                       func.count(Allocation.consumer_uuid.distinct()))
                .where(Allocation.provider_uuid.in_(uuids))
                .group_by(Allocation.provider_uuid, Allocation.resource_class))).all():
            used.setdefault(provider, {})[rc] = int(amount or 0)
            running[provider] = max(running.get(provider, 0), int(consumers))
        services = {s.host: s for s in await self.session.scalars(
            select(ComputeServiceRecord).where(
                ComputeServiceRecord.host.in_([p.name for p in providers])))}
        now = utcnow()
        result = []
        for index, p in enumerate(providers, start=first):
            total, use, service = inventories.get(p.uuid, {}), used.get(p.uuid, {}), \
                services.get(p.name)
            result.append(Hypervisor(
                provider=p, index=index, service=service,
                up=service is not None and self.is_up(service, now),
                vcpus=total.get(VCPU, 0), memory_mb=total.get(MEMORY_MB, 0),
                local_gb=total.get(DISK_GB, 0), vcpus_used=use.get(VCPU, 0),
                memory_mb_used=use.get(MEMORY_MB, 0), local_gb_used=use.get(DISK_GB, 0),
                running_vms=running.get(p.uuid, 0)))
        return result
