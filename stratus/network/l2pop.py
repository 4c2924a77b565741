"""The VXLAN forwarding entries the server hands the l2-agents (as Neutron's l2population
does; the design here is our own).

A vxlan network's frames cross hosts inside VXLAN, and the kernel's VXLAN device sends a
frame to the tunnel endpoint its forwarding database (FDB) names for the destination MAC;
broadcast and unknown unicast go to every endpoint listed under the all-zero MAC
(``FLOOD_MAC``). The server knows both halves: each host's tunnel IP (its l2-agent's
reports) and each port's host (the binding). A *member* of a network is one of its ports
that is bound and ACTIVE (a server port its agent reported up, a DHCP port); each tunnel
endpoint with members on a network holds a flood entry toward every other such endpoint
and an entry per MAC behind it. Hosts without an l2-agent record (none, or deleted by an
admin) have no endpoint: nothing points at them.

Changes travel as differences, worked out in the transaction that makes them and sent after
its commit: ``fdb_add`` and ``fdb_remove`` to every agent (each applies the networks whose
VXLAN device it has, never an entry toward its own tunnel IP). An agent asks for its
host's whole set (``get_fdb_entries``) when it starts and when it has made a network's
VXLAN device (once its port there is ACTIVE, so that it counts): a device made after a
notice about its network missed it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import select

from stratus.core.context import RequestContext
from stratus.network.backends import NetworkBackend
from stratus.network.models import Agent, Network, Port
from stratus.network.objects import (
    FLOOD_MAC,
    L2_AGENT_TYPE,
    FdbEntries,
    FdbNetwork,
    PortInfo,
)
from stratus.network.part import Part


@dataclass(frozen=True)
class Member:
    """A port that makes its host's endpoint take part in a vxlan network."""

    network_id: str
    segmentation_id: int
    host: str
    mac: str


# The computation (no I/O) -------------------------------------------------------------------


def entries(members: Iterable[Member], endpoints: Mapping[str, str]) -> FdbEntries:
    """Every network's endpoints (``endpoints``: host → tunnel IP) with the MACs of their
    members, and the flood MAC for each endpoint with any."""
    networks: dict[str, FdbNetwork] = {}
    for member in members:
        tunnel_ip = endpoints.get(member.host)
        if not tunnel_ip:
            continue
        network = networks.setdefault(member.network_id,
                                      FdbNetwork(segmentation_id=member.segmentation_id))
        macs = network.endpoints.setdefault(tunnel_ip, [FLOOD_MAC])
        if member.mac not in macs:
            macs.append(member.mac)
    for network in networks.values():
        for macs in network.endpoints.values():
            macs.sort()
    return FdbEntries(networks=networks)


def _pairs(table: FdbEntries) -> dict[str, tuple[int, set[tuple[str, str]]]]:
    return {net_id: (net.segmentation_id,
                     {(ip, mac) for ip, macs in net.endpoints.items() for mac in macs})
            for net_id, net in table.networks.items()}


def _table(pairs: dict[str, tuple[int, set[tuple[str, str]]]]) -> FdbEntries:
    networks = {}
    for net_id, (vni, found) in pairs.items():
        if not found:
            continue
        endpoints: dict[str, list[str]] = {}
        for ip, mac in sorted(found):
            endpoints.setdefault(ip, []).append(mac)
        networks[net_id] = FdbNetwork(segmentation_id=vni, endpoints=endpoints)
    return FdbEntries(networks=networks)


def diff(before: FdbEntries, after: FdbEntries) -> tuple[FdbEntries, FdbEntries]:
    """(added, removed): the entries ``after`` has that ``before`` had not, and the other
    way round."""
    old, new = _pairs(before), _pairs(after)
    added, removed = {}, {}
    for net_id in old.keys() | new.keys():
        vni = (new.get(net_id) or old[net_id])[0]
        was = old.get(net_id, (vni, set()))[1]
        now = new.get(net_id, (vni, set()))[1]
        added[net_id] = (vni, now - was)
        removed[net_id] = (vni, was - now)
    return _table(added), _table(removed)


def for_endpoint(table: FdbEntries, tunnel_ip: str,
                 network_ids: Iterable[str] | None = None) -> FdbEntries:
    """What endpoint ``tunnel_ip`` is to hold: the networks it takes part in (of
    ``network_ids`` when given), every other endpoint's entries."""
    wanted = None if network_ids is None else set(network_ids)
    networks = {}
    for net_id, net in table.networks.items():
        if tunnel_ip not in net.endpoints or (wanted is not None and net_id not in wanted):
            continue
        networks[net_id] = FdbNetwork(segmentation_id=net.segmentation_id, endpoints={
            ip: macs for ip, macs in net.endpoints.items() if ip != tunnel_ip})
    return FdbEntries(networks=networks)


def may_be_member(port: Port | PortInfo, status: str | None = None,
                  host: str | None = None) -> bool:
    """Whether the port is a member on a vxlan network: bound to a host and ACTIVE (what
    ``member_of`` asks of the port itself, before its network is needed)."""
    status = port.status if status is None else status
    host = port.binding_host_id if host is None else host
    return bool(host) and status == "ACTIVE"


def member_of(port: Port | PortInfo, network: Network | None, status: str | None = None,
              host: str | None = None, mac: str | None = None) -> Member | None:
    """The port as a member (its current state unless ``status``/``host``/``mac`` say
    what it was), or None when it is not one."""
    status = port.status if status is None else status
    host = port.binding_host_id if host is None else host
    if (not may_be_member(port, status=status, host=host) or network is None
            or network.network_type != "vxlan" or network.segmentation_id is None):
        return None
    return Member(network.id, network.segmentation_id, host,
                  (port.mac_address if mac is None else mac).lower())


def _context() -> RequestContext:
    return RequestContext.for_service("network-api")


# Within a transaction -----------------------------------------------------------------------


@dataclass
class L2Population(Part):
    """The entries of one transaction's changes, sent to the agents after its commit."""

    backend: NetworkBackend

    @property
    def active(self) -> bool:
        """Only agents need entries: with the noop backend nothing is read or sent."""
        return self.backend.follows_state

    async def endpoints(self) -> dict[str, str]:
        """host → tunnel IP, from the l2-agents' reports."""
        rows = await self.session.execute(select(Agent.host, Agent.configurations).where(
            Agent.agent_type == L2_AGENT_TYPE))
        found = {}
        for host, configurations in rows:
            tunnel_ip = (configurations or {}).get("tunnel_ip")
            if tunnel_ip:
                found[host] = str(tunnel_ip)
        return found

    async def members(self, *, network_ids: Iterable[str] | None = None,
                      host: str | None = None) -> dict[str, Member]:
        """port id → member, of the given networks or of every network ``host`` is on."""
        query = select(Port.id, Port.network_id, Network.segmentation_id,
                       Port.binding_host_id, Port.mac_address).join(
            Network, Network.id == Port.network_id).where(
            Network.network_type == "vxlan", Network.segmentation_id.is_not(None),
            Port.binding_host_id != "", Port.status == "ACTIVE")
        if network_ids is not None:
            query = query.where(Port.network_id.in_(list(network_ids)))
        if host is not None:
            on_host = select(Port.network_id).where(Port.binding_host_id == host)
            query = query.where(Port.network_id.in_(on_host))
        rows = await self.session.execute(query)
        return {port_id: Member(net_id, vni, bound, mac.lower())
                for port_id, net_id, vni, bound, mac in rows if vni is not None}

    async def network(self, network_id: str) -> Network | None:
        return await self.session.get(Network, network_id)

    async def port_changed(self, port_id: str, network_id: str, before: Member | None,
                           after: Member | None) -> None:
        """A port stopped or started being a member (or moved): the differences to every
        agent."""
        if not self.active or before == after:
            return
        endpoints = await self.endpoints()
        others = [m for p, m in (await self.members(network_ids=[network_id])).items()
                  if p != port_id]
        old = entries([*others, *([before] if before else [])], endpoints)
        new = entries([*others, *([after] if after else [])], endpoints)
        self._send(old, new)

    async def endpoint_changed(self, host: str, old_ip: str | None,
                               new_ip: str | None) -> None:
        """``host``'s agent appeared, went or changed its tunnel IP: its entries go from
        (or come to) every other endpoint of its networks."""
        if not self.active or old_ip == new_ip:
            return
        endpoints = await self.endpoints()
        members = (await self.members(host=host)).values()
        old, new = dict(endpoints), dict(endpoints)
        for table, ip in ((old, old_ip), (new, new_ip)):
            table.pop(host, None)
            if ip:
                table[host] = ip
        self._send(entries(members, old), entries(members, new))

    async def for_host(self, host: str) -> FdbEntries:
        """The whole set ``host``'s endpoint holds (an agent starting)."""
        endpoints = await self.endpoints()
        tunnel_ip = endpoints.get(host)
        if tunnel_ip is None:
            return FdbEntries()
        members = (await self.members(host=host)).values()
        mine = {m.network_id for m in members if m.host == host}
        return for_endpoint(entries(members, endpoints), tunnel_ip, mine)

    def _send(self, old: FdbEntries, new: FdbEntries) -> None:
        added, removed = diff(old, new)
        backend, ctx = self.backend, _context()
        # Removals first: a MAC that moved leaves its old endpoint before it is added anew.
        if removed.networks:
            self.txn.after_commit(lambda: backend.fdb_remove(ctx, removed))
        if added.networks:
            self.txn.after_commit(lambda: backend.fdb_add(ctx, added))
