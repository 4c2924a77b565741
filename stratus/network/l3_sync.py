"""What the l3-agents fetch and report over the bus (``manager``): their routers as
``RouterInfo`` snapshots, and the floating IPs they made."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from stratus.network.floating_ips import FloatingIPs
from stratus.network.l3_agents import L3Agents
from stratus.network.models import FloatingIP, Network, Port, Router
from stratus.network.objects import (
    ROUTER_INTERFACE_OWNER,
    FixedIP,
    FloatingIPInfo,
    HostRoute,
    NetworkInfo,
    RouterInfo,
    RouterPort,
)
from stratus.network.part import Part
from stratus.network.snapshots import Snapshots


@dataclass
class L3Sync(Part):
    """The l3-agents' side of one transaction."""

    agents: L3Agents
    floating_ips: FloatingIPs
    snapshots: Snapshots

    async def get_routers(self, host: str, router_ids: Sequence[str] | None) -> list[RouterInfo]:
        """The routers scheduled to ``host`` (of ``router_ids``, if given), after taking
        those that need an agent and have none."""
        for router in await self.agents.unscheduled_needing_agent(router_ids):
            await self.agents.bind(router, host, notify=False)
        query = select(Router).where(Router.l3_agent_host == host)
        if router_ids is not None:
            query = query.where(Router.id.in_(list(router_ids)))
        routers = list(await self.session.scalars(query.order_by(Router.created_at, Router.id)))
        networks: dict[str, NetworkInfo] = {}
        return [await self._router_info(router, networks) for router in routers]

    async def _router_info(self, router: Router,
                           networks: dict[str, NetworkInfo]) -> RouterInfo:
        legs = list((await self.session.scalars(select(Port).where(
            Port.device_owner == ROUTER_INTERFACE_OWNER, Port.device_id == router.id).options(
            selectinload(Port.fixed_ips)).order_by(Port.created_at, Port.id))).unique())
        gateway = None
        if router.gw_port_id is not None:
            port = await self.session.get(Port, router.gw_port_id)
            if port is not None:
                gateway = await self._leg(port, networks)
        fips = await self.session.scalars(select(FloatingIP).where(
            FloatingIP.router_id == router.id, FloatingIP.fixed_port_id.is_not(None)).order_by(
            FloatingIP.created_at, FloatingIP.id))
        return RouterInfo(
            id=router.id, project_id=router.project_id, name=router.name,
            admin_state_up=router.admin_state_up, enable_snat=router.enable_snat,
            gateway=gateway, interfaces=[await self._leg(p, networks) for p in legs],
            routes=[HostRoute(destination=r.destination, nexthop=r.nexthop)
                    for r in router.routes],
            floating_ips=[FloatingIPInfo(
                id=f.id, floating_ip_address=f.floating_ip_address,
                fixed_ip_address=f.fixed_ip_address or "", port_id=f.fixed_port_id or "")
                for f in fips])

    async def _leg(self, port: Port, networks: dict[str, NetworkInfo]) -> RouterPort:
        if port.network_id not in networks:
            net = await self.session.get(Network, port.network_id)
            assert net is not None
            networks[port.network_id] = await self.snapshots.network_info(net,
                                                                          with_ports=False)
        return RouterPort(id=port.id, mac_address=port.mac_address,
                          fixed_ips=[FixedIP(subnet_id=a.subnet_id, ip_address=a.ip_address)
                                     for a in port.fixed_ips],
                          network=networks[port.network_id])

    async def update_floatingip_statuses(self, router_id: str,
                                         statuses: Mapping[str, str]) -> None:
        await self.floating_ips.set_statuses(router_id, statuses)
