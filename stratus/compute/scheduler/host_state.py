"""The scheduler's view of each compute host, kept in memory between decisions.

Loading every host from the database for each decision would not scale to thousands of
hosts, so the view is loaded once and refreshed periodically; the claim against the
database (``Placement.claim``) stays the authority, and a host whose claim fails is
reloaded before it is tried again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.compute.hosts import Hosts
from stratus.compute.models import Allocation, Inventory, ResourceProvider
from stratus.compute.placement import RESOURCE_CLASSES, capacity_of
from stratus.core.db import utcnow

__all__ = ["HostState", "load_host_states"]


@dataclass
class HostState:
    provider_uuid: str
    host: str
    zone: str = "nova"
    enabled: bool = True
    up: bool = True
    hypervisor_type: str = "fake"
    cpu_arch: str = "x86_64"
    aggregate_metadata: dict[str, str] = field(default_factory=dict)
    #: Schedulable amount per resource class: (total - reserved) * allocation ratio.
    capacity: dict[str, float] = field(default_factory=dict)
    max_unit: dict[str, int] = field(default_factory=dict)
    used: dict[str, int] = field(default_factory=dict)
    #: capacity - used, kept up to date: filters and weighers read it for every host.
    available: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.available = {rc: cap - self.used.get(rc, 0) for rc, cap in self.capacity.items()}

    def free(self, resource_class: str) -> float:
        return self.available.get(resource_class, 0.0)

    def fits(self, resources: dict[str, int]) -> bool:
        available, max_unit = self.available, self.max_unit
        for rc, amount in resources.items():
            if amount > 0 and (amount > max_unit.get(rc, 0) or amount > available.get(rc, 0.0)):
                return False
        return True

    def consume(self, resources: dict[str, int]) -> None:
        for rc, amount in resources.items():
            self.used[rc] = self.used.get(rc, 0) + amount
            self.available[rc] = self.available.get(rc, 0.0) - amount


async def load_host_states(session: AsyncSession, *, down_after: float,
                           hosts: list[str] | None = None) -> list[HostState]:
    """Every compute host with a resource provider (or just ``hosts``)."""
    query = select(ResourceProvider)
    if hosts is not None:
        query = query.where(ResourceProvider.name.in_(hosts))
    providers = list(await session.scalars(query))
    if not providers:
        return []
    uuids = [p.uuid for p in providers]
    inventories: dict[str, list[Inventory]] = {}
    for row in await session.scalars(select(Inventory).where(Inventory.provider_uuid.in_(uuids))):
        inventories.setdefault(row.provider_uuid, []).append(row)
    used: dict[str, dict[str, int]] = {}
    for provider_uuid, rc, total in (await session.execute(
            select(Allocation.provider_uuid, Allocation.resource_class, func.sum(Allocation.used))
            .where(Allocation.provider_uuid.in_(uuids))
            .group_by(Allocation.provider_uuid, Allocation.resource_class))).all():
        used.setdefault(provider_uuid, {})[rc] = int(total or 0)
    liveness = Hosts(session, down_after)
    services = await liveness.compute_services()
    now = utcnow()
    states = []
    for provider in providers:
        service = services.get(provider.name)
        rows = inventories.get(provider.uuid, [])
        states.append(HostState(
            provider_uuid=provider.uuid,
            host=provider.name,
            zone=service.zone if service else "nova",
            enabled=service is not None and not service.disabled,
            up=service is not None and liveness.is_up(service, now),
            hypervisor_type=provider.hypervisor_type,
            cpu_arch=provider.cpu_arch,
            aggregate_metadata=dict(provider.aggregate_metadata or {}),
            capacity={r.resource_class: capacity_of(r) for r in rows
                      if r.resource_class in RESOURCE_CLASSES},
            max_unit={r.resource_class: r.max_unit for r in rows},
            used=used.get(provider.uuid, {}),
        ))
    return states
