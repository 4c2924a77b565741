"""IP address management: subnet defaults, and allocating each address at most once.

Contract: an address is held by at most one port, and the database enforces it (the primary
key (subnet_id, ip_address) of ``network_ip_allocations``), on SQLite and PostgreSQL, under
any concurrency. There is no row per free address: an allocation picks a candidate and
inserts it with ``ON CONFLICT DO NOTHING``; a candidate another transaction took (PostgreSQL
makes the insert wait for that transaction, then skips) is simply tried again with another.

Candidates: a few random ones first (cheap while the subnet is sparse), then, when those
collide, the first free address after a random point, found against the set of allocated
addresses (one indexed query; work proportional to what is allocated, never to the size of
the subnet). No free address left → ``IpAddressGenerationFailure`` (409).
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select

from stratus.core.db import Txn
from stratus.network.errors import (
    InvalidInput,
    InvalidIpForSubnet,
    IpAddressAlreadyAllocated,
    IpAddressGenerationFailure,
)
from stratus.network.models import IPAllocation, Subnet
from stratus.network.part import Part

#: Random candidates tried before looking at what is allocated.
RANDOM_TRIES = 3
#: Candidates tried in all before giving up (each a failed insert: contention, not exhaustion).
MAX_TRIES = 200

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Pool:
    start: int
    end: int  # inclusive

    @property
    def size(self) -> int:
        return self.end - self.start + 1


def parse_cidr(cidr: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        raise InvalidInput(f"Invalid input for cidr. Reason: '{cidr}' is not a valid IP "
                           "subnet.") from exc


def parse_ip(value: str, what: str = "ip_address") -> IPAddress:
    try:
        return ipaddress.ip_address(value)
    except ValueError as exc:
        raise InvalidInput(f"Invalid input for {what}. Reason: '{value}' is not a valid IP "
                           "address.") from exc


def usable_range(net: IPNetwork) -> tuple[int, int]:
    """First and last host address: IPv4 leaves out the network and broadcast addresses
    (except /31 and /32, which have no such addresses)."""
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.version == 4 and net.prefixlen < 31:
        return first + 1, last - 1
    if net.version == 6 and net.prefixlen < 127:
        return first + 1, last
    return first, last


def default_gateway(net: IPNetwork) -> str | None:
    first, last = usable_range(net)
    return str(ipaddress.ip_address(first)) if first <= last else None


def default_pools(net: IPNetwork, gateway: str | None) -> list[dict[str, str]]:
    """Every usable address but the gateway, as Neutron computes it: one or two ranges."""
    first, last = usable_range(net)
    gw = int(ipaddress.ip_address(gateway)) if gateway else None
    ranges: list[tuple[int, int]] = []
    if gw is not None and first <= gw <= last:
        if first <= gw - 1:
            ranges.append((first, gw - 1))
        if gw + 1 <= last:
            ranges.append((gw + 1, last))
    elif first <= last:
        ranges.append((first, last))
    return [{"start": str(ipaddress.ip_address(a)), "end": str(ipaddress.ip_address(b))}
            for a, b in ranges]


def check_pools(net: IPNetwork, pools: Sequence[dict[str, Any]],
                gateway: str | None) -> list[dict[str, str]]:
    """Validate client-given pools: inside the subnet, ordered, not overlapping, not
    holding the gateway. Returns them normalised."""
    first, last = usable_range(net)
    parsed: list[tuple[int, int]] = []
    for pool in pools:
        if not isinstance(pool, dict) or "start" not in pool or "end" not in pool:
            raise InvalidInput("Invalid input for allocation_pools: each pool needs 'start' "
                               "and 'end'.")
        start = parse_ip(str(pool["start"]), "allocation_pools")
        end = parse_ip(str(pool["end"]), "allocation_pools")
        if start.version != net.version or end.version != net.version:
            raise InvalidInput("Allocation pool IP version does not match the subnet's.")
        a, b = int(start), int(end)
        if a > b:
            raise InvalidInput(f"The allocation pool {start}-{end} is not valid: its start "
                               "is after its end.")
        if a < first or b > last:
            raise InvalidInput(f"The allocation pool {start}-{end} spans beyond the subnet "
                               f"cidr {net}.")
        parsed.append((a, b))
    parsed.sort()
    for (_, b1), (a2, b2) in itertools.pairwise(parsed):
        if a2 <= b1:
            raise InvalidInput(f"Found overlapping allocation pools: "
                               f"{ipaddress.ip_address(a2)}-{ipaddress.ip_address(b2)}.")
    if gateway is not None:
        gw = int(ipaddress.ip_address(gateway))
        for a, b in parsed:
            if a <= gw <= b:
                raise InvalidInput(f"Gateway ip {gateway} conflicts with allocation pool "
                                   f"{ipaddress.ip_address(a)}-{ipaddress.ip_address(b)}.")
    return [{"start": str(ipaddress.ip_address(a)), "end": str(ipaddress.ip_address(b))}
            for a, b in parsed]


def pools_of(subnet: Subnet) -> list[Pool]:
    return list(_parsed_pools(tuple((p["start"], p["end"]) for p in subnet.allocation_pools)))


@functools.lru_cache(maxsize=1024)
def _parsed_pools(bounds: tuple[tuple[str, str], ...]) -> tuple[Pool, ...]:
    """Pools from their text bounds, parsed once per set of bounds: every allocation on a
    subnet parsed the same few addresses again (~50 Python calls of a port create's
    ~3,700)."""
    return tuple(Pool(int(ipaddress.ip_address(start)), int(ipaddress.ip_address(end)))
                 for start, end in bounds)


def _nth(pools: Sequence[Pool], index: int) -> int:
    for pool in pools:
        if index < pool.size:
            return pool.start + index
        index -= pool.size
    raise IndexError(index)


def first_free(pools: Sequence[Pool], taken: set[int], start_index: int) -> int | None:
    """The first address of ``pools`` not in ``taken``, walking from ``start_index`` and
    wrapping; at most ``len(taken) + 1`` steps."""
    total = sum(p.size for p in pools)
    if total == 0:
        return None
    for step in range(min(total, len(taken) + 1)):
        candidate = _nth(pools, (start_index + step) % total)
        if candidate not in taken:
            return candidate
    return None


@dataclass
class IPAM(Part):
    """Allocates and frees addresses inside the caller's transaction."""

    #: The allocation rows this transaction inserted, in order (a port just created is
    #: shown from them instead of being read back).
    inserted: list[dict[str, Any]] = field(default_factory=list)

    async def _try(self, subnet: Subnet, address: str, port_id: str, position: int) -> bool:
        row = {"subnet_id": subnet.id, "ip_address": address, "port_id": port_id,
               "network_id": subnet.network_id, "position": position}
        connection = await self.txn.connection()
        result = await connection.execute(self.txn.insert_ignore(IPAllocation.__table__), row)
        if Txn.rowcount(result) != 1:
            return False
        self.inserted.append(row)
        return True

    async def allocated(self, subnet_id: str) -> set[int]:
        rows = await self.session.scalars(
            select(IPAllocation.ip_address).where(IPAllocation.subnet_id == subnet_id))
        return {int(ipaddress.ip_address(r)) for r in rows}

    async def allocate(self, subnet: Subnet, port_id: str, position: int = 0,
                       requested: str | None = None) -> str:
        """One address of ``subnet`` for ``port_id``: ``requested`` if given (409 when
        taken), else any free one in the allocation pools."""
        if requested is not None:
            address = self.check_address(subnet, requested)
            if not await self._try(subnet, address, port_id, position):
                raise IpAddressAlreadyAllocated(address, subnet.id)
            return address
        pools = pools_of(subnet)
        total = sum(p.size for p in pools)
        if total == 0:
            raise IpAddressGenerationFailure(subnet.network_id)
        tried: set[int] = set()
        for attempt in range(MAX_TRIES):
            if attempt < RANDOM_TRIES:
                candidate: int | None = _nth(pools, random.randrange(total))
            else:
                taken = await self.allocated(subnet.id) | tried
                candidate = first_free(pools, taken, random.randrange(total))
                if candidate is None:
                    raise IpAddressGenerationFailure(subnet.network_id)
            assert candidate is not None
            if candidate in tried:
                continue
            tried.add(candidate)
            address = str(ipaddress.ip_address(candidate))
            if await self._try(subnet, address, port_id, position):
                return address
        raise IpAddressGenerationFailure(subnet.network_id)

    @staticmethod
    def check_address(subnet: Subnet, requested: str) -> str:
        """A requested address must lie in the subnet and not be its network, broadcast or
        gateway address (it may lie outside the allocation pools, as in Neutron)."""
        ip = parse_ip(requested)
        net = ipaddress.ip_network(subnet.cidr)
        first, last = usable_range(net)
        if ip.version != net.version or not first <= int(ip) <= last:
            raise InvalidIpForSubnet(requested)
        if subnet.gateway_ip and str(ip) == subnet.gateway_ip:
            raise IpAddressAlreadyAllocated(str(ip), subnet.id)
        return str(ip)

    async def release(self, port_id: str,
                      keep: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        """Free the port's addresses but those in ``keep`` ((subnet_id, ip) pairs); returns
        what was freed."""
        kept = set(keep)
        rows = (await self.session.execute(
            select(IPAllocation.subnet_id, IPAllocation.ip_address)
            .where(IPAllocation.port_id == port_id))).all()
        freed = [(s, ip) for s, ip in rows if (s, ip) not in kept]
        for subnet_id, ip in freed:
            await self.session.execute(delete(IPAllocation).where(
                IPAllocation.subnet_id == subnet_id, IPAllocation.ip_address == ip))
        return freed
