"""What the Placement API shows of the scheduler's resource providers, inventories and
allocations (``placement.py`` writes them): providers, their inventories and usages, and the
allocations of a consumer, of a provider or of a project.

A consumer is a server, or a migration holding the server's claim on its source while it
moves (``Placement.move``); either way its project and user are the server's.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Subquery, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.compute.models import (
    Aggregate,
    Allocation,
    Instance,
    Inventory,
    Migration,
    ResourceProvider,
)
from stratus.core.exceptions import NotFound

__all__ = ["MIN_UNIT", "STEP_SIZE", "ConsumerAllocations", "Inventory", "PlacementReads",
           "ResourceProvider"]

#: Placement's fields that Stratus has no use for, at the values that mean "no constraint".
MIN_UNIT, STEP_SIZE = 1, 1


@dataclass(frozen=True)
class ConsumerAllocations:
    #: provider uuid → (provider generation, resource class → amount)
    by_provider: dict[str, tuple[int, dict[str, int]]]
    project_id: str | None
    user_id: str | None


class PlacementReads:
    """Read-only views of placement's tables, in the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def providers(self, *, name: str | None = None,
                        uuid: str | None = None) -> list[ResourceProvider]:
        query = select(ResourceProvider).order_by(ResourceProvider.name)
        if name is not None:
            query = query.where(ResourceProvider.name == name)
        if uuid is not None:
            query = query.where(ResourceProvider.uuid == uuid)
        return list(await self.session.scalars(query))

    async def provider(self, uuid: str) -> ResourceProvider:
        provider = await self.session.get(ResourceProvider, uuid)
        if provider is None:
            raise NotFound(f"No resource provider with uuid {uuid} found.")
        return provider

    async def inventories(self, provider_uuid: str) -> dict[str, Inventory]:
        rows = await self.session.scalars(
            select(Inventory).where(Inventory.provider_uuid == provider_uuid)
            .order_by(Inventory.resource_class))
        return {row.resource_class: row for row in rows}

    async def usages(self, provider_uuid: str) -> dict[str, int]:
        """Every class the provider has inventory of (0 when unused), and any still in use."""
        used = dict.fromkeys(await self.inventories(provider_uuid), 0)
        rows = await self.session.execute(
            select(Allocation.resource_class, func.sum(Allocation.used))
            .where(Allocation.provider_uuid == provider_uuid)
            .group_by(Allocation.resource_class))
        used.update({rc: int(amount or 0) for rc, amount in rows.all()})
        return used

    async def provider_allocations(self, provider_uuid: str) -> dict[str, dict[str, int]]:
        """consumer uuid → resource class → amount, on this provider."""
        consumers: dict[str, dict[str, int]] = defaultdict(dict)
        for row in await self.session.scalars(
                select(Allocation).where(Allocation.provider_uuid == provider_uuid)):
            consumers[row.consumer_uuid][row.resource_class] = row.used
        return dict(consumers)

    async def aggregates(self, provider: ResourceProvider) -> list[str]:
        """The uuids of the host aggregates the provider's host is in (as Nova mirrors them)."""
        rows = await self.session.scalars(select(Aggregate).order_by(Aggregate.id))
        return [aggregate.uuid for aggregate in rows if provider.name in (aggregate.hosts or [])]

    async def consumer_allocations(self, consumer_uuid: str) -> ConsumerAllocations:
        rows = (await self.session.execute(
            select(Allocation, ResourceProvider.generation)
            .join(ResourceProvider, ResourceProvider.uuid == Allocation.provider_uuid)
            .where(Allocation.consumer_uuid == consumer_uuid))).all()
        by_provider: dict[str, tuple[int, dict[str, int]]] = {}
        for allocation, generation in rows:
            _, resources = by_provider.setdefault(allocation.provider_uuid, (generation, {}))
            resources[allocation.resource_class] = allocation.used
        owners = _owners()
        owner = (await self.session.execute(
            select(owners.c.project_id, owners.c.user_id)
            .where(owners.c.consumer_uuid == consumer_uuid))).first() if rows else None
        return ConsumerAllocations(by_provider, owner[0] if owner else None,
                                   owner[1] if owner else None)

    async def project_usages(self, project_id: str, user_id: str | None = None
                             ) -> dict[str, int]:
        """resource class → amount the project's (and the user's) consumers hold."""
        owners = _owners()
        query = (select(Allocation.resource_class, func.sum(Allocation.used))
                 .join(owners, owners.c.consumer_uuid == Allocation.consumer_uuid)
                 .where(owners.c.project_id == project_id)
                 .group_by(Allocation.resource_class))
        if user_id is not None:
            query = query.where(owners.c.user_id == user_id)
        return {rc: int(amount or 0) for rc, amount in (await self.session.execute(query)).all()}


def _owners() -> Subquery:
    """consumer uuid → project and user: servers, and migrations as their server's."""
    servers = select(Instance.uuid.label("consumer_uuid"), Instance.project_id,
                     Instance.user_id)
    migrations = (select(Migration.uuid.label("consumer_uuid"),
                         Instance.project_id.label("project_id"),
                         Instance.user_id.label("user_id"))
                  .join(Instance, Instance.uuid == Migration.instance_uuid))
    return union_all(servers, migrations).subquery("consumer_owner")
