"""Floating IPs: an address of an external network, held by a ``network:floatingip`` port,
and associated (or not) with a fixed IP of a port; the router that joins the two is
computed, never given.

Rules, as Neutron keeps them:

* the network must be external (400); an address taken or none left is a 409;
* association: the port's fixed IP (``fixed_ip_address``, needed when the port has several
  IPv4 addresses) must reach the external network through a router, one with its gateway
  there and an interface on the fixed IP's subnet (none: 404
  ``ExternalGatewayForFloatingIPNotFound``); a fixed IP takes one floating IP per external
  network (409 ``FloatingIPPortAlreadyAssociated``, kept by a unique key);
* deleting the port disassociates its floating IPs;
* the status is DOWN until the router's l3-agent reports it ACTIVE (at once, where the
  backend wires everything at once), and DOWN again when disassociated.

Each change reaches the router's l3-agent and, for a server's port, compute (a
``network-changed`` event, so the server's addresses show the floating IP).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from sqlalchemy import Select, case, select

from stratus.core.db import utcnow
from stratus.core.db.paging import Page
from stratus.core.policy import Caller
from stratus.network import filters as flt
from stratus.network import ipam
from stratus.network.common import UNSET, Unset, new_id, touch
from stratus.network.errors import NetworkNotFound
from stratus.network.l3_agents import L3Agents
from stratus.network.l3_errors import (
    BadRequest,
    ExternalGatewayForFloatingIPNotFound,
    FloatingIPNotFound,
    FloatingIPPortAlreadyAssociated,
)
from stratus.network.l3_ports import L3_DEVICE_OWNERS, L3Ports, Wanted
from stratus.network.models import FloatingIP, IPAllocation, Network, Port, Router, Subnet
from stratus.network.notify import Notifier
from stratus.network.objects import FLOATINGIP_OWNER, ROUTER_INTERFACE_OWNER
from stratus.network.part import Part
from stratus.network.ports import Ports
from stratus.network.quotas import Quotas

LOG = logging.getLogger(__name__)

#: What an l3-agent may report of a floating IP.
STATUSES = ("ACTIVE", "DOWN", "ERROR")

#: How floating IPs filter and sort (``filters``).
ATTRIBUTES = flt.Attributes(
    filters={
        "id": flt.text(FloatingIP.id),
        "floating_ip_address": flt.text(FloatingIP.floating_ip_address),
        "floating_network_id": flt.text(FloatingIP.floating_network_id),
        "router_id": flt.text(FloatingIP.router_id),
        "port_id": flt.text(FloatingIP.fixed_port_id),
        "fixed_ip_address": flt.text(FloatingIP.fixed_ip_address),
        "status": flt.text(FloatingIP.status), "port_details": flt.nothing,
        **flt.standard(FloatingIP)},
    sort={"id": FloatingIP.id, "floating_ip_address": FloatingIP.floating_ip_address,
          "floating_network_id": FloatingIP.floating_network_id,
          "router_id": FloatingIP.router_id, "port_id": FloatingIP.fixed_port_id,
          "fixed_ip_address": FloatingIP.fixed_ip_address, "status": FloatingIP.status,
          **flt.standard_sort(FloatingIP)},
    default_sort=flt.BY_CREATION, id_column=FloatingIP.id, tags=FloatingIP.tags)


@dataclass(frozen=True)
class NewFloatingIP:
    floating_network_id: str = ""
    project_id: str | None = None
    description: str = ""
    floating_ip_address: str | None = None
    subnet_id: str | None = None
    port_id: str | None = None
    fixed_ip_address: str | None = None


@dataclass(frozen=True)
class FloatingIPUpdate:
    """Changes to a floating IP (``UNSET``: not asked for; ``port_id=None`` disassociates)."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("description",)

    description: str | Unset = UNSET
    port_id: str | Unset | None = UNSET
    fixed_ip_address: str | Unset | None = UNSET


@dataclass
class FloatingIPs(Part):
    """The floating IPs of one transaction."""

    ports: Ports
    l3_ports: L3Ports
    agents: L3Agents
    quotas: Quotas
    notifier: Notifier

    # Reading -----------------------------------------------------------------------------

    def _visible(self, caller: Caller) -> Select[FloatingIP]:
        query = select(FloatingIP)
        if not caller.is_admin:
            query = query.where(FloatingIP.project_id == caller.project_id)
        return query

    async def get_floatingip(self, caller: Caller, floatingip_id: str) -> FloatingIP:
        return await self._one(self._visible(caller).where(FloatingIP.id == floatingip_id),
                               FloatingIPNotFound(floatingip_id))

    async def list_floatingips(self, caller: Caller, query: flt.ListQuery) -> Page:
        return await self._list_page(caller, ATTRIBUTES, self._visible(caller), query)

    async def associated_ports(self, fips: Sequence[FloatingIP]) -> dict[str, Port]:
        """The ports the floating IPs are associated with, by id (one query)."""
        ids = {f.fixed_port_id for f in fips if f.fixed_port_id}
        if not ids:
            return {}
        return {p.id: p for p in await self.session.scalars(select(Port).where(
            Port.id.in_(ids)))}

    # Create, update, delete ---------------------------------------------------------------

    async def create_floatingip(self, caller: Caller, new: NewFloatingIP) -> FloatingIP:
        if not new.floating_network_id:
            raise BadRequest("floatingip", "floating_network_id is required")
        project_id = new.project_id or caller.require_project()
        if project_id != caller.project_id:
            caller.authorize("admin_only")
        target = {"project_id": project_id}
        caller.authorize("create_floatingip", target)
        if new.floating_ip_address is not None:
            caller.authorize("create_floatingip:floating_ip_address", target)
        net = await self.session.get(Network, new.floating_network_id)
        if net is None:
            raise NetworkNotFound(new.floating_network_id)
        if not net.router_external:
            raise BadRequest("floatingip", f"Network {net.id} is not a valid external "
                                           "network")
        await self.quotas.check(project_id, "floatingip")
        fip_id = new_id()
        port = await self.l3_ports.create(
            net, project_id="", device_owner=FLOATINGIP_OWNER, device_id=fip_id,
            wanted=await self._wanted(net, new.subnet_id, new.floating_ip_address))
        now = utcnow()
        fip = FloatingIP(
            id=fip_id, project_id=project_id, description=new.description,
            floating_ip_address=port.fixed_ips[0].ip_address, floating_network_id=net.id,
            floating_port_id=port.id, fixed_port_id=None, fixed_ip_address=None,
            router_id=None, status="DOWN", tags=[], revision_number=1, created_at=now,
            updated_at=now)
        self.session.add(fip)
        await self.session.flush()
        if new.port_id is not None:
            await self._associate(caller, fip, new.port_id, new.fixed_ip_address)
        elif new.fixed_ip_address is not None:
            raise BadRequest("floatingip", "fixed_ip_address cannot be given without port_id")
        return fip

    async def _wanted(self, net: Network, subnet_id: str | None,
                      address: str | None) -> list[Wanted] | None:
        """The floating address asked for: on ``subnet_id``, ``address``, or both."""
        if subnet_id is None and address is None:
            return None
        subnets = list(await self.session.scalars(select(Subnet).where(
            Subnet.network_id == net.id)))
        if subnet_id is not None:
            subnet = next((s for s in subnets if s.id == subnet_id), None)
            if subnet is None:
                raise BadRequest("floatingip", f"Subnet {subnet_id} is not on the external "
                                               f"network {net.id}")
            return [(subnet, address)]
        assert address is not None
        ip = ipam.parse_ip(address, "floating_ip_address")
        for subnet in subnets:
            if ip in ipaddress.ip_network(subnet.cidr):
                return [(subnet, address)]
        raise ipam.InvalidIpForSubnet(address)

    async def update_floatingip(self, caller: Caller, floatingip_id: str,
                                change: FloatingIPUpdate) -> FloatingIP:
        fip = await self.get_floatingip(caller, floatingip_id)
        caller.authorize("update_floatingip", {"project_id": fip.project_id})
        if not isinstance(change.description, Unset):
            fip.description = change.description
        if change.port_id is None:
            await self._disassociate(fip)
        elif isinstance(change.port_id, str):
            fixed = change.fixed_ip_address if isinstance(change.fixed_ip_address, str) \
                else None
            await self._associate(caller, fip, change.port_id, fixed)
        elif change.fixed_ip_address is not UNSET:
            raise BadRequest("floatingip", "fixed_ip_address cannot be given without port_id")
        touch(fip)
        await self.session.flush()
        return fip

    async def delete_floatingip(self, caller: Caller, floatingip_id: str) -> None:
        fip = await self.get_floatingip(caller, floatingip_id)
        caller.authorize("delete_floatingip", {"project_id": fip.project_id})
        await self._disassociate(fip)
        port_id = fip.floating_port_id
        await self.session.delete(fip)
        await self.session.flush()
        await self.l3_ports.delete(port_id)

    # Association ---------------------------------------------------------------------------

    async def _associate(self, caller: Caller, fip: FloatingIP, port_id: str,
                         fixed_ip: str | None) -> None:
        port = await self.ports.get_port(caller, port_id)
        if port.device_owner in L3_DEVICE_OWNERS:
            raise BadRequest("floatingip", f"Port {port.id} has owner {port.device_owner} "
                                           "and therefore cannot be assigned a floating IP")
        if not caller.is_admin and port.project_id != fip.project_id:
            raise BadRequest("floatingip", f"Cannot create floating IP and bind it to Port "
                                           f"{port.id}, since that port is owned by a "
                                           "different tenant")
        address = self._fixed_address(port, fixed_ip)
        subnet_id = next(a.subnet_id for a in port.fixed_ips if a.ip_address == address)
        if fip.fixed_port_id == port.id and fip.fixed_ip_address == address:
            return  # already so
        holder = await self.session.scalar(select(FloatingIP).where(
            FloatingIP.floating_network_id == fip.floating_network_id,
            FloatingIP.fixed_port_id == port.id, FloatingIP.fixed_ip_address == address,
            FloatingIP.id != fip.id))
        if holder is not None:
            raise FloatingIPPortAlreadyAssociated(holder.floating_ip_address, holder.id,
                                                  port.id, address, fip.floating_network_id)
        router = await self._router_between(fip.floating_network_id, subnet_id)
        if router is None:
            raise ExternalGatewayForFloatingIPNotFound(fip.floating_network_id, subnet_id,
                                                       port.id)
        await self._disassociate(fip)
        fip.fixed_port_id, fip.fixed_ip_address = port.id, address
        fip.router_id = router.id
        fip.status = "ACTIVE" if self.notifier.backend.wires_at_once else "DOWN"
        await self.session.flush()
        self.agents.router_changed(router)
        self.notifier.server_event("network-changed", port)

    @staticmethod
    def _fixed_address(port: Port, fixed_ip: str | None) -> str:
        """The port's IPv4 address the floating IP goes to."""
        v4 = [a.ip_address for a in port.fixed_ips
              if ipaddress.ip_address(a.ip_address).version == 4]
        if fixed_ip is not None:
            address = str(ipam.parse_ip(fixed_ip, "fixed_ip_address"))
            if address not in v4:
                raise BadRequest("floatingip", f"Port {port.id} does not have fixed ip "
                                               f"{fixed_ip}")
            return address
        if not v4:
            raise BadRequest("floatingip", f"Cannot add floating IP to port {port.id} that "
                                           "has no fixed IPv4 addresses")
        if len(v4) > 1:
            raise BadRequest("floatingip", f"Port {port.id} has multiple fixed IPv4 "
                                           "addresses.  Must provide a specific IPv4 address "
                                           "when assigning a floating IP")
        return v4[0]

    async def _router_between(self, network_id: str, subnet_id: str) -> Router | None:
        """The router with its gateway on ``network_id`` and an interface on ``subnet_id``;
        of several, the one holding the subnet's gateway address, then the oldest."""
        interfaces = (select(Port.device_id, IPAllocation.ip_address)
                      .join(IPAllocation, IPAllocation.port_id == Port.id)
                      .where(Port.device_owner == ROUTER_INTERFACE_OWNER,
                             IPAllocation.subnet_id == subnet_id).subquery())
        gateway_ip = select(Subnet.gateway_ip).where(Subnet.id == subnet_id).scalar_subquery()
        gateways = select(Port.id).where(Port.network_id == network_id)
        router: Router | None = await self.session.scalar(
            select(Router).join(interfaces, interfaces.c.device_id == Router.id)
            .where(Router.gw_port_id.in_(gateways))
            .order_by(case((interfaces.c.ip_address == gateway_ip, 0), else_=1),
                      Router.created_at, Router.id).limit(1))
        return router

    async def _disassociate(self, fip: FloatingIP) -> None:
        if fip.fixed_port_id is None and fip.router_id is None:
            return
        if fip.router_id is not None:
            router = await self.session.get(Router, fip.router_id)
            if router is not None:
                self.agents.router_changed(router)
        if fip.fixed_port_id is not None:
            port = await self.session.get(Port, fip.fixed_port_id)
            if port is not None:
                self.notifier.server_event("network-changed", port)
        fip.fixed_port_id = fip.fixed_ip_address = fip.router_id = None
        fip.status = "DOWN"
        touch(fip)
        await self.session.flush()

    async def port_deleted(self, port: Port) -> None:
        """Before a port goes: its floating IPs are disassociated."""
        for fip in await self.session.scalars(select(FloatingIP).where(
                FloatingIP.fixed_port_id == port.id)):
            await self._disassociate(fip)

    # The l3-agent's reports -------------------------------------------------------------------

    async def set_statuses(self, router_id: str, statuses: Mapping[str, str]) -> None:
        """What the router's agent made of its floating IPs; a floating IP that moved to
        another router meanwhile keeps its status (that router's agent reports it)."""
        for fip_id, status in statuses.items():
            if status not in STATUSES:
                LOG.info("floating IP %s: status %r from router %s ignored", fip_id, status,
                         router_id)
                continue
            fip = await self.session.get(FloatingIP, fip_id)
            if fip is None:
                continue
            if fip.router_id != router_id and not (fip.router_id is None and status == "DOWN"):
                continue
            if fip.status != status:
                fip.status = status
                touch(fip)
        await self.session.flush()

