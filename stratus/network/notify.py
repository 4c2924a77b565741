"""What the rest of the cloud hears of network changes: the backend (agents) and compute
(server external events). Everything is queued on the transaction and sent after its
commit (``Txn.after_commit``), so nobody is told of a change that then rolled back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from stratus.core.context import RequestContext, current_request_id
from stratus.core.db import Txn
from stratus.network.backends import NetworkBackend
from stratus.network.events import EventSink, ServerEvent
from stratus.network.l2pop import L2Population, may_be_member, member_of
from stratus.network.models import Network, Port
from stratus.network.objects import COMPUTE_DEVICE_OWNER_PREFIX, NetworkInfo, PortInfo
from stratus.network.snapshots import Snapshots

#: Reads a network's snapshot in a fresh transaction (after the commit).
ReadNetwork = Callable[[str], Awaitable[NetworkInfo | None]]


def system_context() -> RequestContext:
    """The context backend calls carry: the service itself, under the id of the API request
    that made the change (so the agents' lines follow it, and a request's notices cost no
    fresh uuid each), or a new id outside a request."""
    return RequestContext.for_service("network-api", request_id=current_request_id())


@dataclass
class Notifier:
    """The change notices of one transaction."""

    txn: Txn
    snapshots: Snapshots
    backend: NetworkBackend
    events: EventSink
    l2pop: L2Population
    read_network: ReadNetwork

    def network_changed(self, network_id: str) -> None:
        """After commit, send the network's full snapshot to the backend (read then, so
        the snapshot includes everything this transaction did)."""
        if not self.backend.follows_state:
            return
        backend, read_network = self.backend, self.read_network

        async def notify() -> None:
            info = await read_network(network_id)
            if info is not None:
                await backend.network_updated(system_context(), info)

        self.txn.after_commit(notify)

    def network_deleted(self, network_id: str) -> None:
        backend, ctx = self.backend, system_context()
        self.txn.after_commit(lambda: backend.network_deleted(ctx, network_id))

    def server_event(self, name: str, port: Port) -> None:
        if port.device_id and port.device_owner.startswith(COMPUTE_DEVICE_OWNER_PREFIX):
            event = ServerEvent(name=name, server_uuid=port.device_id, tag=port.id)
            events = self.events

            async def send() -> None:
                events.send(event)

            self.txn.after_commit(send)

    async def port_updated(self, port: Port, info: PortInfo | None = None) -> None:
        """After commit, the port as it is now (``info``: its snapshot, when the caller has
        just taken it) goes to the backend (the dhcp-agents); a backend that follows no
        state is not handed one (a snapshot is ~50 Python calls of a port create)."""
        backend = self.backend
        if not backend.follows_state:
            return
        if info is None:
            info = await self.snapshots.port_info(port)
        ctx = system_context()
        self.txn.after_commit(lambda: backend.port_updated(ctx, info))

    async def port_deleted(self, port: Port) -> None:
        """Call before the row is deleted: its host and network are read here."""
        await self.fdb_port_changed(port, before=port, after=False)
        host, network_id, port_id = port.binding_host_id, port.network_id, port.id
        backend, ctx = self.backend, system_context()
        if backend.follows_state:
            self.members_changed(_members_of(await self.snapshots.port_info(port)))
        self.txn.after_commit(lambda: backend.port_deleted(ctx, network_id, port_id))
        if host and not backend.wires_at_once:
            self.txn.after_commit(lambda: backend.port_unbound(ctx, host, port_id, network_id))

    async def port_changed(self, port: Port, old: PortInfo | None) -> None:
        """Tell the backend (after commit) what changed; bind or unbind on hosts. With a
        backend that wires at once, a newly bound server port goes ACTIVE here."""
        backend = self.backend
        # The port's snapshot, taken once for its groups' members and the backend's notice
        # (the port does not change between them unless it goes ACTIVE below).
        info = await self._port_security_changed(port, old)
        await self.fdb_port_changed(port, before=old)
        old_host = old.binding_host_id if old else ""
        bound = bool(port.binding_host_id) and port.device_owner.startswith(
            COMPUTE_DEVICE_OWNER_PREFIX)
        newly_bound = bound and port.binding_host_id != old_host
        if newly_bound and backend.wires_at_once:
            port.status = "ACTIVE"
            await self.txn.session.flush()
            self.server_event("network-vif-plugged", port)
            info = None  # its status changed: taken again
        await self.port_updated(port, info)
        if old_host and old_host != port.binding_host_id and not backend.wires_at_once:
            ctx = system_context()
            self.txn.after_commit(lambda: backend.port_unbound(ctx, old_host, port.id,
                                                               port.network_id))
        if newly_bound and not backend.wires_at_once:
            details = await self.snapshots.device_details(port)
            host, bound_ctx = port.binding_host_id, system_context()
            self.txn.after_commit(lambda: backend.port_bound(bound_ctx, host, details))

    async def dhcp_port_bound(self, port: Port) -> None:
        """A DHCP port on a vxlan network: its host's l2-agent makes the network's VXLAN
        device there (the dhcp-agent makes only the bridge), so a host that serves DHCP
        without any server port of the network is reached too."""
        if self.backend.wires_at_once:
            return
        network = await self.txn.session.get(Network, port.network_id)
        if network is None or network.network_type != "vxlan":
            return
        details = await self.snapshots.device_details(port)
        backend, ctx, host = self.backend, system_context(), port.binding_host_id
        self.txn.after_commit(lambda: backend.port_bound(ctx, host, details))

    async def fdb_port_changed(self, port: Port, *, before: Port | PortInfo | None,
                               after: bool = True) -> None:
        """Tell the l2-agents (after commit) what this port's change does to the VXLAN
        forwarding entries: ``before`` is the port as it was (None: it was not there),
        ``after`` False when it is going."""
        if not self.l2pop.active:
            return
        if not ((before is not None and may_be_member(before))
                or (after and may_be_member(port))):
            # Neither was nor is a member (a port just created, unbound): no entry
            # changes, and the network need not be read (two statements with its subnets).
            return
        network = await self.txn.session.get(Network, port.network_id)
        old = None if before is None else member_of(before, network)
        new = member_of(port, network) if after else None
        await self.l2pop.port_changed(port.id, port.network_id, old, new)

    # Security groups (the l2-agents' firewalls) ---------------------------------------------

    def security_groups_changed(self, group_ids: list[str],
                                port_ids: list[str] | None = None) -> None:
        """After commit, tell every l2-agent that these groups' rules (or these ports'
        security) changed; members alone go by ``members_changed``."""
        if not self.backend.follows_state or not (group_ids or port_ids):
            return
        backend, ctx = self.backend, system_context()
        groups, ports = sorted(set(group_ids)), list(port_ids or [])
        self.txn.after_commit(lambda: backend.security_groups_updated(ctx, groups, ports))

    def members_changed(self, members: dict[str, set[str]]) -> None:
        """After commit, tell every l2-agent that these addresses (or CIDRs) joined or left
        these groups, and nothing else about them changed (each agent asks which are
        members now). The notices of transactions committed close together go as one."""
        if not self.backend.follows_state:
            return
        changed = {g: sorted(a) for g, a in sorted(members.items()) if a}
        if changed:
            backend, ctx = self.backend, system_context()
            self.txn.after_commit(lambda: backend.security_group_members_changed(ctx, changed))

    async def _port_security_changed(self, port: Port,
                                     old: PortInfo | None) -> PortInfo | None:
        """A port's groups, addresses, address pairs or port security changed: its groups'
        members did (their old and new addresses), and its own firewall must follow (a
        port just created has no firewall yet: its binding brings it). The port's snapshot
        it took (None with the noop backend, which takes none)."""
        if not self.backend.follows_state:
            return None
        new = await self.snapshots.port_info(port)
        if old is not None and _security_view(old) == _security_view(new):
            return new
        touched = _members_of(new)
        if old is not None:
            for group_id, addresses in _members_of(old).items():
                touched.setdefault(group_id, set()).update(addresses)
            self.security_groups_changed([], [port.id])
        self.members_changed(touched)
        return new


def _members_of(port: PortInfo) -> dict[str, set[str]]:
    """What the port makes of its groups' members: its fixed IPs and address pairs (with
    port security off too, as in Neutron), in each of its groups."""
    addresses = {a.ip_address for a in port.fixed_ips}
    addresses.update(p.ip_address for p in port.allowed_address_pairs)
    return {g: set(addresses) for g in port.security_group_ids}


def _security_view(port: PortInfo) -> tuple[object, ...]:
    return (port.mac_address, port.fixed_ips, port.port_security_enabled,
            port.security_group_ids, port.allowed_address_pairs)
