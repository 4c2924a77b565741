"""Host aggregates of one transaction (``os-aggregates``, an operator's).

An aggregate is a uniquely named set of compute hosts (each must have a compute service)
with metadata; its availability zone is the metadata's ``availability_zone`` key, as in
Nova. Whenever hosts or metadata change, each host concerned gets the merged metadata of
all its aggregates on its resource provider (``aggregate_metadata``), which the scheduler's
``AggregateInstanceExtraSpecsFilter`` reads, and the availability zone of its aggregates as
its compute service's zone (``nova`` when none has one), which the zone listing and the
scheduler's zone filter read. A host is in one zone at a time: adding it to an aggregate of
another zone, or giving an aggregate a zone that one of its hosts has from another, is a
409. An aggregate with hosts is not deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.compute.hosts import COMPUTE_BINARY, INTERNAL_ZONE
from stratus.compute.models import Aggregate, ComputeServiceRecord, ResourceProvider
from stratus.compute.placement import provider_uuid
from stratus.core.db import utcnow
from stratus.core.exceptions import BadRequest, Conflict, NotFound

ZONE_KEY = "availability_zone"
#: A host's zone when none of its aggregates has one (Nova's default_availability_zone).
DEFAULT_ZONE = "nova"

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

    async def _zone_fits(self, zone: str | None, hosts: Iterable[str],
                         aggregate_id: int) -> None:
        """Refuse ``zone`` for ``hosts`` (of aggregate ``aggregate_id``) when one of them is
        in another zone through another aggregate."""
        if zone is None:
            return
        if zone == INTERNAL_ZONE:
            raise BadRequest(f"Invalid input: the availability zone {zone} is reserved.")
        wanted = set(hosts)
        for other in await self.list():
            theirs = (other.metadata_ or {}).get(ZONE_KEY)
            if other.id == aggregate_id or theirs in (None, zone):
                continue
            clash = wanted.intersection(other.hosts)
            if clash:
                raise Conflict(f"Cannot put host(s) {', '.join(sorted(clash))} in "
                               f"availability zone {zone}: already in availability zone "
                               f"{theirs} (aggregate {other.id}).")

    async def create(self, name: str, zone: str | None) -> Aggregate:
        await self._name_free(name)
        await self._zone_fits(zone, (), 0)
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
        await self._zone_fits((aggregate.metadata_ or {}).get(ZONE_KEY), [host], aggregate.id)
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
        if changes.get(ZONE_KEY) is not None:
            await self._zone_fits(changes[ZONE_KEY], aggregate.hosts, aggregate.id)
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
        """Each host's provider gets the merged metadata of the aggregates it is in, and
        its compute service their zone."""
        aggregates = await self.list()
        for host in set(hosts):
            merged: dict[str, str] = {}
            for aggregate in aggregates:
                if host in aggregate.hosts:
                    merged.update(aggregate.metadata_ or {})
            provider = await self.session.get(ResourceProvider, provider_uuid(host))
            if provider is not None:
                provider.aggregate_metadata = merged
            service = await self.session.scalar(select(ComputeServiceRecord).where(
                ComputeServiceRecord.host == host,
                ComputeServiceRecord.binary == COMPUTE_BINARY))
            if service is not None:
                service.zone = merged.get(ZONE_KEY) or DEFAULT_ZONE
        await self.session.flush()
