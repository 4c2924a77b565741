"""The ports the L3 service makes for itself: router legs (interfaces and gateways) and the
ports that hold floating IPs. They are made here, not through ``Ports.create_port``: no
quota, no security groups, no port security, whatever network the caller may see; and
deleted only through routers and floating IPs (the port API refuses them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from stratus.core.db import Txn, utcnow
from stratus.network.common import new_id
from stratus.network.errors import IpAddressAlreadyAllocated, IpAddressGenerationFailure
from stratus.network.ipam import IPAM
from stratus.network.l3_errors import ServicePortInUse
from stratus.network.models import IPAllocation, Network, Port, Subnet
from stratus.network.notify import Notifier
from stratus.network.objects import (
    FLOATINGIP_OWNER,
    ROUTER_GATEWAY_OWNER,
    ROUTER_INTERFACE_OWNER,
)
from stratus.network.part import Part
from stratus.network.ports import Ports

#: Every ``device_owner`` the L3 service owns: such ports go only with what they serve.
L3_DEVICE_OWNERS = (ROUTER_INTERFACE_OWNER, ROUTER_GATEWAY_OWNER, FLOATINGIP_OWNER)


def refuse_direct_delete(port: Port) -> None:
    """Router legs and floating-IP ports go only with their router interface, gateway or
    floating IP: the port API refuses them (409 ``ServicePortInUse``)."""
    if port.device_owner in L3_DEVICE_OWNERS:
        raise ServicePortInUse(port.id, f"has device owner {port.device_owner}")


#: An address to take: on this subnet, this one (or any free one when None).
Wanted = tuple[Subnet, str | None]


@dataclass
class L3Ports(Part):
    """Router legs and floating-IP ports within one transaction."""

    ipam: IPAM
    ports: Ports
    notifier: Notifier

    async def create(self, net: Network, *, project_id: str, device_owner: str,
                     device_id: str, host: str = "", wanted: Sequence[Wanted] | None = None,
                     gateway_of: Subnet | None = None) -> Port:
        """A port on ``net``: holding ``gateway_of``'s gateway address (a router
        interface), or the ``wanted`` addresses, or one free address of the first subnet
        that has one. Router legs are ACTIVE at once when the backend wires at once (else
        when their agent reports them up); floating-IP ports have no status (``N/A``)."""
        port_id = new_id()
        now = utcnow()
        status = ("N/A" if device_owner == FLOATINGIP_OWNER
                  else "ACTIVE" if self.notifier.backend.wires_at_once else "DOWN")
        await self.ports.insert_row({
            "id": port_id, "network_id": net.id, "project_id": project_id, "name": "",
            "description": "", "admin_state_up": True, "status": status,
            "device_id": device_id, "device_owner": device_owner, "binding_host_id": host,
            "binding_vnic_type": "normal", "binding_profile": {}, "dns_name": "",
            "port_security_enabled": False, "tags": [], "revision_number": 1,
            "created_at": now, "updated_at": now}, None)
        if gateway_of is not None:
            await self._take_gateway(gateway_of, port_id)
        elif wanted is not None:
            for position, (subnet, address) in enumerate(wanted):
                await self.ipam.allocate(subnet, port_id, position, address)
        else:
            await self._any_address(net, port_id)
        await self.session.flush()
        port = await self.ports.load(port_id)
        await self.notifier.port_updated(port)
        return port

    async def _take_gateway(self, subnet: Subnet, port_id: str) -> None:
        assert subnet.gateway_ip is not None
        result = await self.session.execute(self.txn.insert_ignore(IPAllocation).values(
            subnet_id=subnet.id, ip_address=subnet.gateway_ip, port_id=port_id,
            network_id=subnet.network_id, position=0))
        if Txn.rowcount(result) != 1:
            raise IpAddressAlreadyAllocated(subnet.gateway_ip, subnet.id)

    async def _any_address(self, net: Network, port_id: str) -> None:
        subnets = list(await self.session.scalars(select(Subnet).where(
            Subnet.network_id == net.id, Subnet.ip_version == 4).order_by(Subnet.created_at)))
        for subnet in subnets:
            try:
                await self.ipam.allocate(subnet, port_id)
                return
            except IpAddressGenerationFailure:
                continue
        raise IpAddressGenerationFailure(net.id)

    async def delete(self, port_id: str | None) -> None:
        """Delete the port (its addresses go with it); the backend is told after the
        commit. A port already gone is no error."""
        if port_id is None:
            return
        port = await self.session.get(Port, port_id)
        if port is not None:
            # Its l3-agent unplugs the leg (it hears of the router); no l2-agent plugged it.
            port.binding_host_id = ""
            await self.ports.remove(port)
