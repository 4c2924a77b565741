"""What the agents fetch and report over the bus (``manager``): snapshots of networks
and bound ports, each host's DHCP port, and ports going up or down."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select

from stratus.core.db import utcnow
from stratus.network.common import new_id, touch
from stratus.network.errors import NetworkNotFound
from stratus.network.ipam import IPAM
from stratus.network.models import Network, Port
from stratus.network.notify import Notifier
from stratus.network.objects import (
    DHCP_DEVICE_OWNER,
    DeviceDetails,
    NetworkInfo,
    PortInfo,
    SecurityGroupsSnapshot,
)
from stratus.network.part import Part
from stratus.network.ports import Ports
from stratus.network.snapshots import Snapshots

LOG = logging.getLogger(__name__)


@dataclass
class AgentSync(Part):
    """The agents' side of one transaction."""

    ipam: IPAM
    ports: Ports
    snapshots: Snapshots
    notifier: Notifier

    async def active_networks(self) -> list[NetworkInfo]:
        return await self.snapshots.active_networks()

    async def network(self, network_id: str) -> NetworkInfo | None:
        return await self.snapshots.network_info_by_id(network_id)

    async def device_details(self, port_id: str) -> DeviceDetails | None:
        port = await self.session.get(Port, port_id)
        return None if port is None else await self.snapshots.device_details(port)

    async def group_members_among(self, touched: dict[str, list[str]]) -> dict[str, list[str]]:
        return await self.snapshots.members_among(touched)

    async def security_groups(self, group_ids: list[str]) -> SecurityGroupsSnapshot:
        return await self.snapshots.security_groups(group_ids)

    async def bound_ports(self, host: str) -> list[DeviceDetails]:
        return await self.snapshots.bound_ports(host)

    async def set_port_status(self, port_id: str, host: str, up: bool) -> Port | None:
        port = await self.session.get(Port, port_id)
        if port is None:
            return None
        if port.binding_host_id and host and port.binding_host_id != host:
            LOG.info("port %s reported %s by %s but bound to %s; ignored", port_id,
                     "up" if up else "down", host, port.binding_host_id)
            return port
        status = "ACTIVE" if up else "DOWN"
        if port.status != status:
            was = await self.snapshots.port_info(port)
            port.status = status
            touch(port)
            await self.session.flush()
            await self.notifier.fdb_port_changed(port, before=was)
            self.notifier.server_event("network-vif-plugged" if up
                                       else "network-vif-unplugged", port)
            await self.notifier.port_updated(port)
        elif up:
            # A repeated report (an agent resync) still answers a host that waits.
            self.notifier.server_event("network-vif-plugged", port)
        return port

    async def ensure_dhcp_port(self, network_id: str, host: str) -> PortInfo:
        """The DHCP port of ``host`` on the network, with an address on every DHCP-enabled
        subnet; created (or completed) under a lock, so two calls make one port."""
        net = await self.session.get(Network, network_id)
        if net is None:
            raise NetworkNotFound(network_id)
        await self.txn.lock("dhcp-port", network_id, host)
        port = await self._dhcp_port(network_id, host)
        created = port is None
        if port is None:
            port_id = new_id()
            now = utcnow()
            await self.ports.insert_row({
                "id": port_id, "network_id": network_id, "project_id": net.project_id,
                "name": "", "description": "", "admin_state_up": True, "status": "ACTIVE",
                "device_id": f"dhcp-{host}-{network_id}"[:255],
                "device_owner": DHCP_DEVICE_OWNER, "binding_host_id": host,
                "binding_vnic_type": "normal", "binding_profile": {}, "dns_name": "",
                "port_security_enabled": False, "tags": [], "revision_number": 1,
                "created_at": now, "updated_at": now}, None)
        else:
            port_id = port.id
        held = {a.subnet_id for a in port.fixed_ips} if port is not None else set()
        position = len(held)
        added = False
        for subnet in await self.snapshots.subnets_of(network_id):
            if subnet.enable_dhcp and subnet.id not in held:
                await self.ipam.allocate(subnet, port_id, position)
                position += 1
                added = True
        await self.session.flush()
        port = await self.ports.load(port_id)
        if created:
            await self.notifier.fdb_port_changed(port, before=None)
            await self.notifier.dhcp_port_bound(port)
        if created or added:
            await self.notifier.port_updated(port)
        return await self.snapshots.port_info(port)

    async def release_dhcp_port(self, network_id: str, host: str) -> None:
        port = await self._dhcp_port(network_id, host)
        if port is not None:
            await self.ports.remove(port)

    async def _dhcp_port(self, network_id: str, host: str) -> Port | None:
        port: Port | None = await self.session.scalar(select(Port).where(
            Port.network_id == network_id, Port.device_owner == DHCP_DEVICE_OWNER,
            Port.binding_host_id == host))
        return port
