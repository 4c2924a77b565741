"""Host aggregates of one transaction (``os-aggregates``, an operator's).

An aggregate is a uniquely named set of compute hosts (each must have a compute service)
with metadata; its availability zone is the metadata's ``availability_zone`` key, as in
Nova. Whenever hosts or metadata change, each host concerned gets the merged metadata of
all its aggregates on its resource provider (``aggregate_metadata``), which the scheduler's
``AggregateInstanceExtraSpecsFilter`` reads. An aggregate with hosts is not deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.compute.hosts import COMPUTE_BINARY
from stratus.compute.models import Aggregate, ComputeServiceRecord, ResourceProvider
from stratus.compute.placement import provider_uuid
from stratus.core.db import utcnow
from stratus.core.exceptions import BadRequest, Conflict, NotFound

ZONE_KEY = "availability_zone"

__all__ = ["Aggregate", "Aggregates"]


class Aggregates:
    """Host aggregates within one transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(self) -> list[Aggregate]:
        return list(await self.session.scalars(select(Aggregate).order_by(Aggregate.id)))

    async def get(self, aggregate_id: str) -> Aggregate:
        """By the id of the path (Nova's integer id)."""
        try:
            number = int(aggregate_id)
        except ValueError:
            raise BadRequest(f"Invalid aggregate id {aggregate_id!r}: it is an integer.") \
                from None
        aggregate = await self.session.get(Aggregate, number)
        if aggregate is None:
            raise NotFound(f"Aggregate {aggregate_id} could not be found.")
        return aggregate

    async def _name_free(self, name: str, aggregate_id: int | None = None) -> None:
        taken = await self.session.scalar(select(Aggregate.id).where(
            Aggregate.name == name, Aggregate.id != (aggregate_id or 0)))
        if taken is not None:
            raise Conflict(f"Aggregate {name} already exists.")

    async def create(self, name: str, zone: str | None) -> Aggregate:
        await self._name_free(name)
        aggregate = Aggregate(uuid=str(uuid.uuid4()), name=name, hosts=[],
                              metadata_={ZONE_KEY: zone} if zone else {})
        self.session.add(aggregate)
        await self.session.flush()
        return aggregate

    async def update(self, aggregate_id: str, *, name: str | None,
                     zone: str | None, zone_given: bool) -> Aggregate:
        aggregate = await self.get(aggregate_id)
        if name is not None:
            await self._name_free(name, aggregate.id)
            aggregate.name = name
        if zone_given:
            await self.set_metadata(aggregate_id, {ZONE_KEY: zone})
        aggregate.updated_at = utcnow()
        await self.session.flush()
        return aggregate

    async def delete(self, aggregate_id: str) -> None:
        aggregate = await self.get(aggregate_id)
        if aggregate.hosts:
            raise BadRequest(f"Cannot perform action 'delete' on aggregate {aggregate.id}. "
                             "Reason: Host aggregate is not empty.")
        await self.session.delete(aggregate)
        await self.session.flush()

    async def add_host(self, aggregate_id: str, host: str) -> Aggregate:
        aggregate = await self.get(aggregate_id)
        if await self.session.scalar(select(ComputeServiceRecord.id).where(
                ComputeServiceRecord.host == host,
                ComputeServiceRecord.binary == COMPUTE_BINARY)) is None:
            raise NotFound(f"Compute host {host} could not be found.")
        if host in aggregate.hosts:
            raise Conflict(f"Aggregate {aggregate.id} already has host {host}.")
        aggregate.hosts = [*aggregate.hosts, host]
        return await self._changed(aggregate, [host])

    async def remove_host(self, aggregate_id: str, host: str) -> Aggregate:
        aggregate = await self.get(aggregate_id)
        if host not in aggregate.hosts:
            raise NotFound(f"Cannot remove host {host} in aggregate {aggregate.id}: it is "
                           "not a member.")
        aggregate.hosts = [h for h in aggregate.hosts if h != host]
        return await self._changed(aggregate, [host])

    async def set_metadata(self, aggregate_id: str,
                           changes: Mapping[str, str | None]) -> Aggregate:
        """Merge ``changes`` into the metadata; a None value removes its key."""
        aggregate = await self.get(aggregate_id)
        metadata = dict(aggregate.metadata_ or {})
        for key, value in changes.items():
            if value is None:
                metadata.pop(key, None)
            else:
                metadata[key] = value
        aggregate.metadata_ = metadata
        return await self._changed(aggregate, aggregate.hosts)

    async def _changed(self, aggregate: Aggregate, hosts: Iterable[str]) -> Aggregate:
        aggregate.updated_at = utcnow()
        await self.session.flush()
        await self._spread(hosts)
        return aggregate

    async def _spread(self, hosts: Iterable[str]) -> None:
        """Each host's provider gets the merged metadata of the aggregates it is in."""
        aggregates = await self.list()
        for host in set(hosts):
            provider = await self.session.get(ResourceProvider, provider_uuid(host))
            if provider is None:
                continue
            merged: dict[str, str] = {}
            for aggregate in aggregates:
                if host in aggregate.hosts:
                    merged.update(aggregate.metadata_ or {})
            provider.aggregate_metadata = merged
        await self.session.flush()
