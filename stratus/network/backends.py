"""Network backends: what happens beyond the database when networks and ports change.

The service calls a ``NetworkBackend`` after each committed change. Two exist:

* ``LinuxBridgeBackend`` tells the agents over the bus: every dhcp-agent (fanout) gets full
  snapshots of networks and ports; the l2-agent of a port's host is told to plug or unplug
  it, and the port goes ACTIVE only when that agent reports the device up.
* ``NoopBackend`` (IPAM and API only, security groups stored but never enforced): nothing
  is told, and a port bound to a host is wired
  at once (ACTIVE, and the server gets ``network-vif-plugged``), so fake-driver clouds and
  scale tests run without kernel work.

``stratus.network.choice.backend_choice`` picks one from ``settings.network.backend`` (None =
linuxbridge when this process is root and dnsmasq is found, else noop) and says which on
start-up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from stratus.core.bus import Transport
from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.network.choice import backend_choice
from stratus.network.objects import DeviceDetails, FdbEntries, NetworkInfo, PortInfo
from stratus.network.rpcapi import DhcpAgentAPI, L2AgentAPI

LOG = logging.getLogger(__name__)



class NetworkBackend(Protocol):
    """The contract: every method is called after the change committed; failures are
    logged by the caller, never turned into an API error."""

    name: str
    #: ``binding:vif_type`` of a port bound to a host.
    bound_vif_type: str
    #: True: a port bound to a host is wired at once (no agent reports it up).
    wires_at_once: bool
    #: True: agents follow the state (snapshots, firewalls, forwarding entries); False: the
    #: backend ignores every notice, so the service need not read what they would carry.
    follows_state: bool

    async def network_updated(self, ctx: RequestContext, network: NetworkInfo) -> None: ...

    async def network_deleted(self, ctx: RequestContext, network_id: str) -> None: ...

    async def port_updated(self, ctx: RequestContext, port: PortInfo) -> None: ...

    async def port_deleted(self, ctx: RequestContext, network_id: str, port_id: str) -> None: ...

    async def port_bound(self, ctx: RequestContext, host: str,
                         details: DeviceDetails) -> None: ...

    async def port_unbound(self, ctx: RequestContext, host: str, port_id: str,
                           network_id: str) -> None: ...

    async def security_groups_updated(self, ctx: RequestContext, security_group_ids: list[str],
                                      port_ids: list[str]) -> None: ...

    async def security_group_members_changed(self, ctx: RequestContext,
                                             members: dict[str, list[str]]) -> None: ...

    async def fdb_add(self, ctx: RequestContext, entries: FdbEntries) -> None: ...

    async def fdb_remove(self, ctx: RequestContext, entries: FdbEntries) -> None: ...


class NoopBackend:
    name = "noop"
    bound_vif_type = "unbound"
    wires_at_once = True
    follows_state = False

    async def network_updated(self, ctx: RequestContext, network: NetworkInfo) -> None:
        return None

    async def network_deleted(self, ctx: RequestContext, network_id: str) -> None:
        return None

    async def port_updated(self, ctx: RequestContext, port: PortInfo) -> None:
        return None

    async def port_deleted(self, ctx: RequestContext, network_id: str, port_id: str) -> None:
        return None

    async def port_bound(self, ctx: RequestContext, host: str, details: DeviceDetails) -> None:
        return None

    async def port_unbound(self, ctx: RequestContext, host: str, port_id: str,
                           network_id: str) -> None:
        return None

    async def security_groups_updated(self, ctx: RequestContext, security_group_ids: list[str],
                                      port_ids: list[str]) -> None:
        """No firewall: with the noop backend security groups are stored, never enforced."""
        return None

    async def security_group_members_changed(self, ctx: RequestContext,
                                             members: dict[str, list[str]]) -> None:
        return None

    async def fdb_add(self, ctx: RequestContext, entries: FdbEntries) -> None:
        return None

    async def fdb_remove(self, ctx: RequestContext, entries: FdbEntries) -> None:
        return None


class LinuxBridgeBackend:
    name = "linuxbridge"
    bound_vif_type = "bridge"
    wires_at_once = False
    follows_state = True

    def __init__(self, transport: Transport) -> None:
        self.dhcp = DhcpAgentAPI(transport)
        self.l2 = L2AgentAPI(transport)
        self._members = _MemberNotices(self.l2)

    async def network_updated(self, ctx: RequestContext, network: NetworkInfo) -> None:
        await self.dhcp.network_updated(ctx, network)

    async def network_deleted(self, ctx: RequestContext, network_id: str) -> None:
        await self.dhcp.network_deleted(ctx, network_id)
        await self.l2.network_deleted(ctx, network_id)

    async def port_updated(self, ctx: RequestContext, port: PortInfo) -> None:
        await self.dhcp.port_updated(ctx, port)

    async def port_deleted(self, ctx: RequestContext, network_id: str, port_id: str) -> None:
        await self.dhcp.port_deleted(ctx, network_id, port_id)

    async def port_bound(self, ctx: RequestContext, host: str, details: DeviceDetails) -> None:
        await self.l2.port_bound(ctx, host, details)

    async def port_unbound(self, ctx: RequestContext, host: str, port_id: str,
                           network_id: str) -> None:
        await self.l2.port_unbound(ctx, host, port_id, network_id)

    async def security_groups_updated(self, ctx: RequestContext, security_group_ids: list[str],
                                      port_ids: list[str]) -> None:
        await self.l2.security_groups_updated(ctx, security_group_ids, port_ids)

    async def security_group_members_changed(self, ctx: RequestContext,
                                             members: dict[str, list[str]]) -> None:
        await self._members.add(ctx, members)

    async def fdb_add(self, ctx: RequestContext, entries: FdbEntries) -> None:
        await self.l2.fdb_add(ctx, entries)

    async def fdb_remove(self, ctx: RequestContext, entries: FdbEntries) -> None:
        await self.l2.fdb_remove(ctx, entries)


def backend_name(settings: Settings) -> str:
    """The configured backend, or the automatic choice (with the reason logged)."""
    choice = backend_choice(settings)
    LOG.info("network backend: %s (%s)", choice.name, choice.reason)
    return choice.name


def create_backend(name: str, transport: Transport | None) -> NetworkBackend:
    if name == "noop":
        LOG.info("network backend noop: security groups are stored, not enforced")
        return NoopBackend()
    if transport is None:
        raise ValueError("the linuxbridge backend needs the message bus")
    return LinuxBridgeBackend(transport)


class _MemberNotices:
    """Member changes to the l2-agents, gathered: those arriving while a notice is being
    sent go together as the next one, so a burst of port creates in a group makes a few
    notices (and a few questions from each agent), not one for each create."""

    def __init__(self, l2: L2AgentAPI) -> None:
        self.l2 = l2
        self._pending: dict[str, set[str]] = {}
        #: The notice gathering changes (not sent yet), and the one sent last.
        self._next: asyncio.Task[None] | None = None
        self._last: asyncio.Task[None] | None = None

    async def add(self, ctx: RequestContext, members: dict[str, list[str]]) -> None:
        """Returns once a notice with these changes went out (as the other notices of a
        commit do)."""
        for group_id, addresses in members.items():
            self._pending.setdefault(group_id, set()).update(addresses)
        if self._next is None:
            self._next = self._last = asyncio.create_task(self._send(ctx, self._last))
        # Shielded: a caller going away must not drop the changes of the others.
        await asyncio.shield(self._next)

    async def _send(self, ctx: RequestContext, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait([previous])  # changes gather meanwhile
        else:
            await asyncio.sleep(0)  # the commits finishing in this turn of the loop join
        batch, self._pending, self._next = self._pending, {}, None
        await self.l2.security_group_members_changed(
            ctx, {g: sorted(a) for g, a in sorted(batch.items())})
