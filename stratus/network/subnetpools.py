"""Subnet pools (``subnet_allocation``): prefixes a subnet's CIDR is allocated from.

A pool holds IPv4 prefixes (kept collapsed) and the prefix lengths its subnets may have
(``min_prefixlen`` ≤ ``default_prefixlen`` ≤ ``max_prefixlen``). A subnet created with
``subnetpool_id`` (or ``use_default_subnetpool``) gets the CIDR it asks for, checked to lie
in the pool and overlap no other subnet of the pool, or else the first free block of its
``prefixlen`` (the pool's default when none is given). Allocations from one pool take the
pool's lock, so two subnets never get the same block. A pool's prefixes can grow, never
shrink; a pool with subnets cannot be deleted. Seen by its project and, when ``shared``, by
everyone; ``shared`` and ``is_default`` are an admin's to set (one default pool).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Select, or_, select

from stratus.core.db.paging import Page
from stratus.core.policy import Caller
from stratus.network import filters as flt
from stratus.network import ipam
from stratus.network.common import UNSET, Unset, given, new_id, touch
from stratus.network.errors import (
    InvalidInput,
    SubnetAllocationError,
    SubnetPoolInUse,
    SubnetPoolNotFound,
)
from stratus.network.models import Subnet, SubnetPool
from stratus.network.part import Part

#: Neutron's default bounds of an IPv4 pool's prefix lengths.
IPV4_MIN_PREFIXLEN = 8
IPV4_MAX_PREFIXLEN = 32

ATTRIBUTES = flt.Attributes(
    filters={
        "id": flt.text(SubnetPool.id), "name": flt.text(SubnetPool.name),
        "ip_version": flt.integer(SubnetPool.ip_version),
        "min_prefixlen": flt.integer(SubnetPool.min_prefixlen),
        "max_prefixlen": flt.integer(SubnetPool.max_prefixlen),
        "default_prefixlen": flt.integer(SubnetPool.default_prefixlen),
        "shared": flt.boolean(SubnetPool.shared), "is_default": flt.boolean(SubnetPool.is_default),
        "default_quota": flt.integer(SubnetPool.default_quota),
        "prefixes": flt.json_list(SubnetPool.prefixes),
        "address_scope_id": flt.constant(None), **flt.standard(SubnetPool)},
    sort={"id": SubnetPool.id, "name": SubnetPool.name, "ip_version": SubnetPool.ip_version,
          "shared": SubnetPool.shared, "is_default": SubnetPool.is_default,
          **flt.standard_sort(SubnetPool)},
    default_sort=flt.BY_CREATION, id_column=SubnetPool.id, tags=SubnetPool.tags)


@dataclass(frozen=True)
class NewSubnetPool:
    name: str = ""
    description: str = ""
    project_id: str | None = None
    prefixes: tuple[str, ...] = ()
    min_prefixlen: int | None = None
    max_prefixlen: int | None = None
    default_prefixlen: int | None = None
    shared: bool = False
    is_default: bool = False
    default_quota: int | None = None


@dataclass(frozen=True)
class SubnetPoolUpdate:
    name: str | Unset = UNSET
    description: str | Unset = UNSET
    prefixes: tuple[str, ...] | Unset = UNSET
    min_prefixlen: int | Unset = UNSET
    max_prefixlen: int | Unset = UNSET
    default_prefixlen: int | Unset = UNSET
    is_default: bool | Unset = UNSET
    default_quota: int | Unset | None = UNSET


def _prefixes(values: Iterable[str]) -> list[ipaddress.IPv4Network]:
    """The prefixes, checked (IPv4 CIDRs) and collapsed (overlaps merged)."""
    nets = []
    for value in values:
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise InvalidInput(f"Invalid input for prefixes. Reason: '{value}' is not a "
                               "valid IP subnet.") from exc
        if not isinstance(net, ipaddress.IPv4Network):
            raise InvalidInput("Invalid input for operation: only IPv4 subnet pools are "
                               "supported.")
        nets.append(net)
    if not nets:
        raise InvalidInput("Invalid input for operation: a subnet pool needs prefixes.")
    return sorted(ipaddress.collapse_addresses(nets))


def _check_bounds(minimum: int, default: int, maximum: int) -> None:
    if not (0 <= minimum <= default <= maximum <= IPV4_MAX_PREFIXLEN):
        raise InvalidInput(f"Illegal prefix bounds: min_prefixlen={minimum}, "
                           f"default_prefixlen={default}, max_prefixlen={maximum} (they must "
                           f"be in that order, within 0 and {IPV4_MAX_PREFIXLEN}).")


def first_free(prefixes: Sequence[ipaddress.IPv4Network], prefixlen: int,
               used: Sequence[ipaddress.IPv4Network]) -> ipaddress.IPv4Network | None:
    """The first block of ``prefixlen`` in ``prefixes`` that overlaps nothing ``used``;
    work proportional to what is used, never to the size of the prefixes."""
    size = 1 << (IPV4_MAX_PREFIXLEN - prefixlen)
    for prefix in prefixes:
        if prefix.prefixlen > prefixlen:
            continue
        address, last = int(prefix.network_address), int(prefix.broadcast_address)
        while address + size - 1 <= last:
            candidate = ipaddress.IPv4Network((address, prefixlen))
            clash = next((u for u in used if u.overlaps(candidate)), None)
            if clash is None:
                return candidate
            after = int(clash.broadcast_address) + 1
            address = -(-after // size) * size  # the next block boundary after the clash
    return None


@dataclass
class SubnetPools(Part):
    """The subnet pools of one transaction."""

    def _visible(self, caller: Caller) -> Select[SubnetPool]:
        query = select(SubnetPool)
        if not caller.is_admin:
            query = query.where(or_(SubnetPool.project_id == caller.project_id,
                                    SubnetPool.shared.is_(True)))
        return query

    async def get_subnetpool(self, caller: Caller, pool_id: str) -> SubnetPool:
        return await self._one(self._visible(caller).where(SubnetPool.id == pool_id),
                               SubnetPoolNotFound(pool_id))

    async def list_subnetpools(self, caller: Caller, query: flt.ListQuery) -> Page:
        return await self._list_page(caller, ATTRIBUTES, self._visible(caller), query)

    async def default_pool(self, caller: Caller) -> SubnetPool:
        """The default pool (``use_default_subnetpool``)."""
        pool = (await self.session.scalars(self._visible(caller).where(
            SubnetPool.is_default.is_(True)))).first()
        if pool is None:
            raise InvalidInput("Invalid input for operation: there is no default subnet "
                               "pool.")
        return pool

    async def create_subnetpool(self, caller: Caller, new: NewSubnetPool) -> SubnetPool:
        project_id = new.project_id or caller.require_project()
        target = {"project_id": project_id}
        caller.authorize("create_subnetpool", target)
        if new.shared:
            caller.authorize("create_subnetpool:shared", target)
        if new.is_default:
            caller.authorize("create_subnetpool:is_default", target)
            await self._no_other_default(None)
        prefixes = _prefixes(new.prefixes)
        minimum = IPV4_MIN_PREFIXLEN if new.min_prefixlen is None else new.min_prefixlen
        maximum = IPV4_MAX_PREFIXLEN if new.max_prefixlen is None else new.max_prefixlen
        default = minimum if new.default_prefixlen is None else new.default_prefixlen
        _check_bounds(minimum, default, maximum)
        pool = SubnetPool(
            id=new_id(), project_id=project_id, name=new.name, description=new.description,
            ip_version=4, prefixes=[str(p) for p in prefixes], min_prefixlen=minimum,
            max_prefixlen=maximum, default_prefixlen=default, shared=new.shared,
            is_default=new.is_default, default_quota=new.default_quota, tags=[],
            revision_number=0)
        self.session.add(pool)
        await self.session.flush()
        return pool

    async def _no_other_default(self, pool_id: str | None) -> None:
        other = await self.session.scalar(select(SubnetPool.id).where(
            SubnetPool.is_default.is_(True), SubnetPool.id != (pool_id or "")).limit(1))
        if other is not None:
            raise InvalidInput(f"Invalid input for operation: subnet pool {other} is already "
                               "the default.")

    async def update_subnetpool(self, caller: Caller, pool_id: str,
                                change: SubnetPoolUpdate) -> SubnetPool:
        pool = await self.get_subnetpool(caller, pool_id)
        target = {"project_id": pool.project_id}
        caller.authorize("update_subnetpool", target)
        if change.is_default is not UNSET and change.is_default != pool.is_default:
            caller.authorize("update_subnetpool:is_default", target)
            if change.is_default:
                await self._no_other_default(pool.id)
        if change.prefixes is not UNSET:
            prefixes = _prefixes(change.prefixes)
            if any(not any(old.subnet_of(new) for new in prefixes)
                   for old in _prefixes(pool.prefixes)):
                raise InvalidInput("Invalid input for operation: a subnet pool's prefixes "
                                   "can grow but not shrink: the new prefixes must hold the "
                                   "old ones.")
            pool.prefixes = [str(p) for p in prefixes]
        bounds = {"min_prefixlen": pool.min_prefixlen,
                  "default_prefixlen": pool.default_prefixlen,
                  "max_prefixlen": pool.max_prefixlen,
                  **given(change, "min_prefixlen", "default_prefixlen", "max_prefixlen")}
        _check_bounds(bounds["min_prefixlen"], bounds["default_prefixlen"],
                      bounds["max_prefixlen"])
        for column, value in {**bounds, **given(change, "name", "description", "is_default",
                                                "default_quota")}.items():
            setattr(pool, column, value)
        touch(pool)
        await self.session.flush()
        return pool

    async def delete_subnetpool(self, caller: Caller, pool_id: str) -> None:
        pool = await self.get_subnetpool(caller, pool_id)
        caller.authorize("delete_subnetpool", {"project_id": pool.project_id})
        if await self.session.scalar(select(Subnet.id).where(
                Subnet.subnetpool_id == pool.id).limit(1)) is not None:
            raise SubnetPoolInUse(pool.id)
        await self.session.delete(pool)
        await self.session.flush()

    async def allocate(self, pool: SubnetPool, cidr: str | None,
                       prefixlen: int | None) -> ipaddress.IPv4Network:
        """The CIDR of a new subnet from ``pool``: ``cidr`` if it is free in the pool, else
        the first free block of ``prefixlen`` (the pool's default length if None)."""
        await self.txn.lock("network-subnetpool", pool.id)
        prefixes = _prefixes(pool.prefixes)
        used = [ipaddress.IPv4Network(c) for c in await self.session.scalars(
            select(Subnet.cidr).where(Subnet.subnetpool_id == pool.id))]
        wanted: ipaddress.IPv4Network | None = None
        if cidr:
            parsed = ipam.parse_cidr(cidr)
            if not isinstance(parsed, ipaddress.IPv4Network):
                raise InvalidInput("Invalid input for operation: only IPv4 subnets are "
                                   "supported.")
            wanted, length = parsed, parsed.prefixlen
        else:
            length = pool.default_prefixlen if prefixlen is None else prefixlen
        if not pool.min_prefixlen <= length <= pool.max_prefixlen:
            raise InvalidInput(f"Invalid input for operation: prefixlen {length} is outside "
                               f"the subnet pool's bounds ({pool.min_prefixlen} to "
                               f"{pool.max_prefixlen}).")
        if wanted is not None:
            if not any(wanted.subnet_of(p) for p in prefixes):
                raise SubnetAllocationError(f"cidr {wanted} is not in subnet pool {pool.id}")
            if any(wanted.overlaps(u) for u in used):
                raise SubnetAllocationError(f"cidr {wanted} overlaps another subnet of "
                                            f"subnet pool {pool.id}")
            return wanted
        block = first_free(prefixes, length, used)
        if block is None:
            raise SubnetAllocationError(f"no free /{length} is left in subnet pool {pool.id}")
        return block
