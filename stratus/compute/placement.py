"""Resource providers, their inventories and the allocations held against them.

A claim is optimistic: read the provider's generation and usage, check capacity, write the
allocations, then bump the generation only if nobody else did meanwhile. A claim that lost
the race raises ``ClaimConflict`` and its transaction is rolled back, so several schedulers
claiming at once can never over-commit a provider.
"""

from __future__ import annotations

import functools
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ARRAY, Table, bindparam, delete, func, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from stratus.compute.errors import ClaimConflict, InsufficientResources
from stratus.compute.models import Allocation, Inventory, ResourceProvider
from stratus.core.db import Txn, statement_connection, utcnow

__all__ = ["DISK_GB", "MEMORY_MB", "RESOURCE_CLASSES", "VCPU", "ClaimConflict",
           "InsufficientResources", "InventorySpec", "Placement", "capacity_of",
           "provider_uuid"]

VCPU, MEMORY_MB, DISK_GB = "VCPU", "MEMORY_MB", "DISK_GB"

_PROVIDERS = cast(Table, ResourceProvider.__table__)
_INVENTORIES = cast(Table, Inventory.__table__)
_ALLOCATIONS = cast(Table, Allocation.__table__)

#: The claim's statements, built (and their SQL compiled) once: every boot claims.
_CLAIM_PROVIDER = (select(_PROVIDERS.c.name, _PROVIDERS.c.generation)
                   .where(_PROVIDERS.c.uuid == bindparam("p_uuid")).with_for_update())
#: Each inventory of the provider with what its consumers hold of it: one statement, after
#: the provider's lock (a new snapshot in PostgreSQL's read committed, so the claims that
#: held the lock before are counted; not in the locking statement, whose snapshot predates
#: the wait). The index on (provider, class, used) answers each sum.
_CLAIM_INVENTORY = (select(_INVENTORIES.c.resource_class, _INVENTORIES.c.total,
                           _INVENTORIES.c.reserved, _INVENTORIES.c.allocation_ratio,
                           _INVENTORIES.c.max_unit,
                           select(func.coalesce(func.sum(_ALLOCATIONS.c.used), 0))
                           .where(_ALLOCATIONS.c.provider_uuid == _INVENTORIES.c.provider_uuid,
                                  _ALLOCATIONS.c.resource_class
                                  == _INVENTORIES.c.resource_class)
                           .scalar_subquery().label("used"))
                    .where(_INVENTORIES.c.provider_uuid == bindparam("p_uuid")))
#: SQLite: ``_CLAIM_PROVIDER`` and ``_CLAIM_INVENTORY`` in one statement (one row per
#: inventory, one with NULL inventory columns for a provider with none, none for a provider
#: gone). SQLite's write transaction holds the file's lock from its first statement, so
#: nothing can come between the two reads there: there is no lock to take first.
_CLAIM_ON_SQLITE = (select(_PROVIDERS.c.name, _PROVIDERS.c.generation,
                           *_CLAIM_INVENTORY.selected_columns)
                    .select_from(_PROVIDERS.outerjoin(
                        _INVENTORIES, _INVENTORIES.c.provider_uuid == _PROVIDERS.c.uuid))
                    .where(_PROVIDERS.c.uuid == bindparam("p_uuid")))
_USAGE = (select(_ALLOCATIONS.c.resource_class, func.sum(_ALLOCATIONS.c.used))
          .where(_ALLOCATIONS.c.provider_uuid == bindparam("p_uuid"))
          .group_by(_ALLOCATIONS.c.resource_class))
_INSERT_ALLOCATIONS = _ALLOCATIONS.insert()
_BUMP_GENERATION = (update(_PROVIDERS)
                    .where(_PROVIDERS.c.uuid == bindparam("p_uuid"),
                           _PROVIDERS.c.generation == bindparam("p_generation"))
                    .values(generation=bindparam("p_next", type_=_PROVIDERS.c.generation.type)))
#: A known provider as its host reports it (``refresh_provider``): its row when its
#: attributes are those reported. A read, not a write of the row: every claim on the host
#: locks that row (``_CLAIM_PROVIDER``) until its transaction ends, and under a burst of boots
#: claims hold it one after another; a report that wrote it waited for them all, and with it
#: the host's heartbeat (a live host taken for down because it was busy). Public: the
#: conductor's statement for a known host builds on it (``hosts.report_known_host``).
PROVIDER_AS_REPORTED = (select(_PROVIDERS.c.uuid)
                        .where(_PROVIDERS.c.uuid == bindparam("p_uuid"),
                               _PROVIDERS.c.hypervisor_type == bindparam("v_hypervisor_type"),
                               _PROVIDERS.c.cpu_arch == bindparam("v_cpu_arch")))
_INVENTORY_OF = (select(_INVENTORIES.c.resource_class, _INVENTORIES.c.total,
                        _INVENTORIES.c.reserved, _INVENTORIES.c.allocation_ratio,
                        _INVENTORIES.c.max_unit)
                 .where(_INVENTORIES.c.provider_uuid == bindparam("p_uuid")))
RESOURCE_CLASSES = (VCPU, MEMORY_MB, DISK_GB)


def _allocate_and_bump() -> Any:
    """PostgreSQL: the allocations of consumer ``c_uuid`` on provider ``p_uuid`` (the
    arrays ``rcs`` and ``useds``, one entry each) inserted by a data-modifying CTE of
    ``_BUMP_GENERATION``: one statement, whose rowcount is the bump's (0: the provider
    changed, and the caller's rollback takes the allocations back with it). The arrays
    keep one shape of it for any number of classes (SQLAlchemy compiles a multi-row
    ``VALUES`` again for each execution: it does not cache them)."""
    rows = func.unnest(
        bindparam("rcs", type_=ARRAY(_ALLOCATIONS.c.resource_class.type)),
        bindparam("useds", type_=ARRAY(_ALLOCATIONS.c.used.type))).table_valued(
        "resource_class", "used").render_derived(with_types=False).alias("held")
    inserted = _ALLOCATIONS.insert().from_select(
        ["consumer_uuid", "provider_uuid", "resource_class", "used"],
        select(bindparam("c_uuid", type_=_ALLOCATIONS.c.consumer_uuid.type),
               bindparam("p_uuid", type_=_ALLOCATIONS.c.provider_uuid.type),
               rows.c.resource_class, rows.c.used)).returning(
        _ALLOCATIONS.c.resource_class).cte("allocated")
    return _BUMP_GENERATION.add_cte(inserted)


_ALLOCATE_AND_BUMP = _allocate_and_bump()


@functools.cache
def _insert_allocations(classes: int) -> Any:
    """The allocations of consumer ``c_uuid`` on provider ``p_uuid``, ``classes`` of them
    (``rc0``/``used0``, ...), in one ``INSERT ... SELECT ... UNION ALL SELECT ...``: a plain
    execution (an ``executemany`` runs in a greenlet of its own) whose shape SQLAlchemy
    caches, unlike a multi-row ``VALUES``. Built once per number of classes."""
    rows = [select(bindparam("c_uuid", type_=_ALLOCATIONS.c.consumer_uuid.type),
                   bindparam("p_uuid", type_=_ALLOCATIONS.c.provider_uuid.type),
                   bindparam(f"rc{i}", type_=_ALLOCATIONS.c.resource_class.type),
                   bindparam(f"used{i}", type_=_ALLOCATIONS.c.used.type))
            for i in range(classes)]
    return _ALLOCATIONS.insert().from_select(
        ["consumer_uuid", "provider_uuid", "resource_class", "used"],
        rows[0] if classes == 1 else union_all(*rows))


@dataclass(frozen=True)
class InventorySpec:
    total: int
    reserved: int = 0
    allocation_ratio: float = 1.0
    max_unit: int | None = None

    @property
    def capacity(self) -> float:
        return (self.total - self.reserved) * self.allocation_ratio


def inventory_rows(inventories: Mapping[str, InventorySpec]
                   ) -> dict[str, tuple[int, int, float, int]]:
    """Each inventory as its row holds it: (total, reserved, allocation ratio, max unit)."""
    return {rc: (spec.total, spec.reserved, spec.allocation_ratio,
                 spec.max_unit if spec.max_unit is not None else spec.total)
            for rc, spec in inventories.items()}


def provider_uuid(host: str) -> str:
    """A host's resource provider id: stable, so restarts and several conductors agree."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"stratus:compute-node:{host}"))


def capacity_of(row: Inventory) -> float:
    return (row.total - row.reserved) * row.allocation_ratio


class Placement:
    """Placement operations within the caller's transaction: a ``Txn`` (its session made
    only if an operation needs the ORM: a claim does not) or a session."""

    def __init__(self, within: Txn | AsyncSession) -> None:
        self._within = within

    @property
    def session(self) -> AsyncSession:
        within = self._within
        return within.session if isinstance(within, Txn) else within

    async def _connection(self) -> AsyncConnection:
        within = self._within
        if isinstance(within, Txn):
            return await within.connection()
        return await statement_connection(within)

    async def ensure_provider(self, uuid: str, name: str,
                              inventories: Mapping[str, InventorySpec], *,
                              hypervisor_type: str = "fake", cpu_arch: str = "x86_64",
                              aggregate_metadata: Mapping[str, str] | None = None) -> None:
        """Create or update a provider and replace its inventories (a host's report)."""
        provider = await self.session.get(ResourceProvider, uuid)
        if provider is None:
            provider = ResourceProvider(uuid=uuid, name=name, generation=0)
            self.session.add(provider)
        provider.hypervisor_type = hypervisor_type
        provider.cpu_arch = cpu_arch
        if aggregate_metadata is not None:  # else kept: the aggregates set it (aggregates.py)
            provider.aggregate_metadata = dict(aggregate_metadata)
        provider.updated_at = utcnow()
        await self.session.flush()
        existing = {row.resource_class: row for row in await self.session.scalars(
            select(Inventory).where(Inventory.provider_uuid == uuid))}
        for rc, spec in inventories.items():
            row = existing.pop(rc, None) or Inventory(provider_uuid=uuid, resource_class=rc)
            row.total, row.reserved = spec.total, spec.reserved
            row.allocation_ratio = spec.allocation_ratio
            row.max_unit = spec.max_unit if spec.max_unit is not None else spec.total
            self.session.add(row)
        for row in existing.values():
            await self.session.delete(row)
        await self.session.flush()

    async def refresh_provider(self, uuid: str, inventories: Mapping[str, InventorySpec], *,
                               hypervisor_type: str, cpu_arch: str) -> bool:
        """A known provider's report as two prebuilt reads (no ORM objects, no write): True
        when that was all of it, the provider existing with the reported attributes and
        ``inventories`` already (what nearly every periodic report finds). False when the
        provider is missing or an attribute or inventory differs; the caller then runs
        ``ensure_provider``, in the same transaction, which creates or corrects it. Nothing
        is written when nothing changed: claims lock the provider's row (see
        ``PROVIDER_AS_REPORTED``)."""
        connection = await self._connection()
        found = await connection.execute(PROVIDER_AS_REPORTED, {
            "p_uuid": uuid, "v_hypervisor_type": hypervisor_type, "v_cpu_arch": cpu_arch})
        if found.first() is None:
            return False
        current = {row.resource_class: (row.total, row.reserved, row.allocation_ratio,
                                        row.max_unit)
                   for row in await connection.execute(_INVENTORY_OF, {"p_uuid": uuid})}
        return current == inventory_rows(inventories)

    async def usage(self, provider_uuid: str) -> dict[str, int]:
        rows = await (await self._connection()).execute(
            _USAGE, {"p_uuid": provider_uuid})
        return {rc: int(used or 0) for rc, used in rows.all()}

    async def claim(self, consumer_uuid: str, provider_uuid: str,
                    resources: Mapping[str, int]) -> None:
        """Allocate ``resources`` on the provider for the consumer, atomically.

        Raises ``InsufficientResources`` when they do not fit and ``ClaimConflict`` when
        the provider changed concurrently (the caller retries in a new transaction).
        The provider's row is locked first (PostgreSQL; SQLite serialises writers anyway):
        claims on one provider queue behind each other instead of conflicting, which under
        hundreds of concurrent boots could fail one claim on every attempt.
        """
        # Plain statements on the tables, not ORM objects: every boot claims once, and
        # the unit of work cost more than the SQL (the same reads and guarded writes).
        connection = await self._connection()
        dialect = connection.dialect.name
        where = {"p_uuid": provider_uuid}
        if dialect == "sqlite":  # both reads in one statement (see _CLAIM_ON_SQLITE)
            rows = (await connection.execute(_CLAIM_ON_SQLITE, where)).all()
            provider = rows[0] if rows else None
            inventories = {row.resource_class: row for row in rows
                           if row.resource_class is not None}
        else:
            provider = (await connection.execute(_CLAIM_PROVIDER, where)).one_or_none()
            inventories = {}
        if provider is None:
            raise InsufficientResources(f"resource provider {provider_uuid} is gone")
        generation = provider.generation
        if dialect != "sqlite":  # after the provider's lock: see _CLAIM_INVENTORY
            inventories = {row.resource_class: row
                           for row in await connection.execute(_CLAIM_INVENTORY, where)}
        for rc, amount in resources.items():
            if amount <= 0:
                continue
            limits = inventories.get(rc)
            if limits is None:
                raise InsufficientResources(f"{provider.name} has no {rc} inventory")
            if amount > limits.max_unit:
                raise InsufficientResources(f"{provider.name}: {rc} {amount} is over the "
                                            f"largest unit {limits.max_unit}")
            capacity = (limits.total - limits.reserved) * limits.allocation_ratio
            if int(limits.used or 0) + amount > capacity:
                raise InsufficientResources(f"{provider.name}: not enough {rc}")
        held = [(rc, amount) for rc, amount in resources.items() if amount > 0]
        bump = {"p_uuid": provider_uuid, "p_generation": generation, "p_next": generation + 1}
        if held and dialect == "postgresql":
            # The allocations and the generation's bump in one statement (one round trip
            # of the claim's transaction fewer): every boot claims once.
            bump.update(c_uuid=consumer_uuid, rcs=[rc for rc, _ in held],
                        useds=[amount for _, amount in held])
            bumped = await connection.execute(_ALLOCATE_AND_BUMP, bump)
        else:
            if held and dialect == "sqlite":
                values: dict[str, Any] = {"c_uuid": consumer_uuid, "p_uuid": provider_uuid}
                for i, (rc, amount) in enumerate(held):
                    values[f"rc{i}"], values[f"used{i}"] = rc, amount
                await connection.execute(_insert_allocations(len(held)), values)
            elif held:
                await connection.execute(_INSERT_ALLOCATIONS, [
                    {"consumer_uuid": consumer_uuid, "provider_uuid": provider_uuid,
                     "resource_class": rc, "used": amount} for rc, amount in held])
            bumped = await connection.execute(_BUMP_GENERATION, bump)
        if bumped.rowcount != 1:
            raise ClaimConflict(f"{provider.name} changed while claiming")

    async def free(self, consumer_uuid: str) -> list[str]:
        """Drop every allocation of the consumer; returns the providers it held resources on."""
        providers = list(await self.session.scalars(
            select(Allocation.provider_uuid).where(Allocation.consumer_uuid == consumer_uuid)
            .distinct()))
        if providers:
            await self.session.execute(
                delete(Allocation).where(Allocation.consumer_uuid == consumer_uuid))
            await self.session.execute(
                update(ResourceProvider).where(ResourceProvider.uuid.in_(providers))
                .values(generation=ResourceProvider.generation + 1)
                .execution_options(synchronize_session=False))
        return providers

    async def move(self, from_consumer: str, to_consumer: str) -> list[str]:
        """Hand every allocation of ``from_consumer`` to ``to_consumer`` (a server's claim on
        its source becomes its migration's while it moves, and back on a revert); returns
        the providers concerned. ``to_consumer`` must hold nothing on them."""
        providers = list(await self.session.scalars(
            select(Allocation.provider_uuid).where(Allocation.consumer_uuid == from_consumer)
            .distinct()))
        if providers:
            await self.session.execute(
                update(Allocation).where(Allocation.consumer_uuid == from_consumer)
                .values(consumer_uuid=to_consumer)
                .execution_options(synchronize_session=False))
            await self.session.execute(
                update(ResourceProvider).where(ResourceProvider.uuid.in_(providers))
                .values(generation=ResourceProvider.generation + 1)
                .execution_options(synchronize_session=False))
        return providers

    async def allocations_of(self, consumer_uuid: str) -> dict[str, dict[str, int]]:
        rows = await self.session.scalars(
            select(Allocation).where(Allocation.consumer_uuid == consumer_uuid))
        result: dict[str, dict[str, int]] = {}
        for row in rows:
            result.setdefault(row.provider_uuid, {})[row.resource_class] = row.used
        return result
