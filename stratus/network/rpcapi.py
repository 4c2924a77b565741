"""Typed bus clients of the network service's units: the server and its agents.

Each class is the only way other code talks to that unit; the matching manager serves the
same method names:

* ``NetworkServerAPI`` → network-api's agent RPC (``stratus/network/manager.py``), used by
  the dhcp-agent and l2-agent;
* ``DhcpAgentAPI`` → every dhcp-agent (fanout: each agent keeps the networks it serves);
* ``L2AgentAPI`` → the l2-agent of one host (``l2_agent.<host>``), or all of them by fanout;
* ``L3AgentAPI`` → the l3-agent of one host (``l3_agent.<host>``).
"""

from __future__ import annotations

from stratus.core.bus import RPCAPI
from stratus.core.context import RequestContext
from stratus.network.objects import (
    AgentState,
    DeviceDetails,
    FdbEntries,
    NetworkInfo,
    PortInfo,
    RouterInfo,
    SecurityGroupsSnapshot,
)

NETWORK_TOPIC = "network"
DHCP_AGENT_TOPIC = "dhcp_agent"
L2_AGENT_TOPIC = "l2_agent"
L3_AGENT_TOPIC = "l3_agent"


class NetworkServerAPI(RPCAPI):
    TOPIC = NETWORK_TOPIC

    async def report_state(self, ctx: RequestContext, state: AgentState) -> None:
        """An agent's heartbeat (cast; the server records it with the time received)."""
        await self.client.cast(ctx, "report_state", state=state)

    async def get_active_networks(self, ctx: RequestContext, host: str) -> list[NetworkInfo]:
        """Every admin-up network with a DHCP-enabled subnet, with its ports: what a
        dhcp-agent on ``host`` serves (its full resync on start and periodically)."""
        return self.result(list[NetworkInfo], await self.client.call(
            ctx, "get_active_networks", host=host))

    async def get_network(self, ctx: RequestContext, network_id: str) -> NetworkInfo | None:
        """One network with its subnets and ports; None when it no longer exists."""
        return self.result(NetworkInfo | None, await self.client.call(  # type: ignore[arg-type]
            ctx, "get_network", network_id=network_id))

    async def ensure_dhcp_port(self, ctx: RequestContext, network_id: str,
                               host: str) -> PortInfo:
        """The DHCP port of ``host``'s agent on the network, created on first use with one
        address on each DHCP-enabled subnet (``device_owner`` ``network:dhcp``)."""
        return self.result(PortInfo, await self.client.call(
            ctx, "ensure_dhcp_port", network_id=network_id, host=host))

    async def release_dhcp_port(self, ctx: RequestContext, network_id: str,
                                host: str) -> None:
        await self.client.call(ctx, "release_dhcp_port", network_id=network_id, host=host)

    async def get_device_details(self, ctx: RequestContext, port_id: str,
                                 host: str) -> DeviceDetails | None:
        """The port and its network's segment, for the l2-agent of ``host``; None when the
        port is gone."""
        return self.result(DeviceDetails | None, await self.client.call(  # type: ignore[arg-type]
            ctx, "get_device_details", port_id=port_id, host=host))

    async def get_security_groups(self, ctx: RequestContext,
                                  group_ids: list[str]) -> SecurityGroupsSnapshot:
        """The groups (rules as written) and the members of every group their rules name as
        remote group: what the l2-agent fetches again, once for all its ports that use
        them, when only groups changed."""
        return self.result(SecurityGroupsSnapshot, await self.client.call(
            ctx, "get_security_groups", group_ids=group_ids))

    async def get_group_members(self, ctx: RequestContext,
                                members: dict[str, list[str]]) -> dict[str, list[str]]:
        """Of each group's addresses (or CIDRs) given, those that are its members now
        (group id → addresses): what the l2-agent asks when a change touched only these
        members (``security_group_members_changed``), instead of every member again."""
        return self.result(dict[str, list[str]], await self.client.call(
            ctx, "get_group_members", members=members))

    async def get_bound_ports(self, ctx: RequestContext, host: str) -> list[DeviceDetails]:
        """Every port bound to ``host`` (``binding_host_id``), with its network's segment:
        what the l2-agent of ``host`` plugs again when it starts."""
        return self.result(list[DeviceDetails], await self.client.call(
            ctx, "get_bound_ports", host=host))

    async def get_fdb_entries(self, ctx: RequestContext, host: str) -> FdbEntries:
        """The VXLAN forwarding entries ``host``'s tunnel endpoint holds: for each vxlan
        network with a member there, every other endpoint with its MACs and flood entry
        (``stratus.network.l2pop``)."""
        return self.result(FdbEntries, await self.client.call(
            ctx, "get_fdb_entries", host=host))

    async def update_device_up(self, ctx: RequestContext, port_id: str, host: str) -> None:
        """The port's tap is wired on ``host``: the port goes ACTIVE and compute-api gets a
        ``network-vif-plugged`` external event for its server."""
        await self.client.call(ctx, "update_device_up", port_id=port_id, host=host)

    async def update_device_down(self, ctx: RequestContext, port_id: str, host: str) -> None:
        """The port's tap is gone from ``host``: the port goes DOWN
        (``network-vif-unplugged``)."""
        await self.client.call(ctx, "update_device_down", port_id=port_id, host=host)

    # Routers (the l3-agent) ---------------------------------------------------------------

    async def get_routers(self, ctx: RequestContext, host: str,
                          router_ids: list[str] | None = None) -> list[RouterInfo]:
        """The routers scheduled to the l3-agent of ``host`` (only ``router_ids`` when
        given), each with its legs, extra routes and floating IPs."""
        return self.result(list[RouterInfo], await self.client.call(
            ctx, "get_routers", host=host, router_ids=router_ids))

    async def update_floatingip_statuses(self, ctx: RequestContext, router_id: str,
                                         statuses: dict[str, str]) -> None:
        """Floating IP id → ``ACTIVE`` / ``DOWN`` / ``ERROR`` as the router's agent made it."""
        await self.client.call(ctx, "update_floatingip_statuses", router_id=router_id,
                               statuses=statuses)


class DhcpAgentAPI(RPCAPI):
    TOPIC = DHCP_AGENT_TOPIC

    async def network_updated(self, ctx: RequestContext, network: NetworkInfo) -> None:
        """A network or one of its subnets was created or changed (full snapshot)."""
        await self.client.fanout(ctx, "network_updated", network=network)

    async def network_deleted(self, ctx: RequestContext, network_id: str) -> None:
        await self.client.fanout(ctx, "network_deleted", network_id=network_id)

    async def port_updated(self, ctx: RequestContext, port: PortInfo) -> None:
        """A port was created or changed: its host entry is (re)written."""
        await self.client.fanout(ctx, "port_updated", port=port)

    async def port_deleted(self, ctx: RequestContext, network_id: str, port_id: str) -> None:
        """A port was deleted: its host entry goes."""
        await self.client.fanout(ctx, "port_deleted", network_id=network_id, port_id=port_id)


class L2AgentAPI(RPCAPI):
    TOPIC = L2_AGENT_TOPIC

    async def port_bound(self, ctx: RequestContext, host: str, details: DeviceDetails) -> None:
        """Plug the port on ``host``: its tap (``tap_name``) into the network's bridge
        (``bridge_name``), creating either as needed; then ``update_device_up``."""
        await self.client.prepare(server=host).cast(ctx, "port_bound", details=details)

    async def port_unbound(self, ctx: RequestContext, host: str, port_id: str,
                           network_id: str) -> None:
        """Unplug the port from ``host``: remove its tap; the bridge goes with its last tap."""
        await self.client.prepare(server=host).cast(ctx, "port_unbound", port_id=port_id,
                                                    network_id=network_id)

    async def network_deleted(self, ctx: RequestContext, network_id: str) -> None:
        """Every host drops the network's bridge (and VXLAN device)."""
        await self.client.fanout(ctx, "network_deleted", network_id=network_id)

    async def security_groups_updated(self, ctx: RequestContext,
                                      security_group_ids: list[str],
                                      port_ids: list[str]) -> None:
        """Rules of these groups changed, or these ports' security did (their
        groups, addresses, address pairs, port security): every agent fetches again the
        ports it filters that the change touches (a port in the groups, or whose rules name
        one of them as remote group, or one of ``port_ids``) and applies their firewall."""
        await self.client.fanout(ctx, "security_groups_updated",
                                 security_group_ids=security_group_ids,
                                 port_ids=port_ids)

    async def security_group_members_changed(self, ctx: RequestContext,
                                             members: dict[str, list[str]]) -> None:
        """These addresses (or CIDRs) joined or left these groups (group id → addresses)
        and nothing else changed: every agent asks which of them are members now
        (``get_group_members``) for the groups its ports' rules name as remote group, and
        adds or deletes those elements of their sets."""
        await self.client.fanout(ctx, "security_group_members_changed", members=members)

    async def fdb_add(self, ctx: RequestContext, entries: FdbEntries) -> None:
        """Every agent adds these VXLAN forwarding entries, on the networks whose VXLAN
        device it has (never one toward its own tunnel IP)."""
        await self.client.fanout(ctx, "fdb_add", entries=entries)

    async def fdb_remove(self, ctx: RequestContext, entries: FdbEntries) -> None:
        """Every agent removes these VXLAN forwarding entries."""
        await self.client.fanout(ctx, "fdb_remove", entries=entries)


class L3AgentAPI(RPCAPI):
    TOPIC = L3_AGENT_TOPIC

    async def routers_updated(self, ctx: RequestContext, host: str,
                              router_ids: list[str]) -> None:
        """The routers changed (legs, gateway, routes, floating IPs): the agent of ``host``
        fetches them (``get_routers``) and makes its namespaces match."""
        await self.client.prepare(server=host).cast(ctx, "routers_updated",
                                                    router_ids=router_ids)

    async def router_deleted(self, ctx: RequestContext, host: str, router_id: str) -> None:
        """The router is gone (or no longer on ``host``): its namespace goes."""
        await self.client.prepare(server=host).cast(ctx, "router_deleted",
                                                    router_id=router_id)
