"""Subnets: IPv4 only; the gateway, allocation pools, nameservers and host routes checked
here (pools by ``ipam``); a CIDR given, or allocated from a subnet pool (``subnetpools``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, or_, select

from stratus.core.db import utcnow
from stratus.core.db.paging import Page
from stratus.core.policy import Caller
from stratus.network import filters as flt
from stratus.network import ipam
from stratus.network.common import UNSET, Unset, given, new_id, touch
from stratus.network.errors import InvalidInput, SubnetInUse, SubnetNotFound
from stratus.network.models import IPAllocation, Network, Port, Subnet
from stratus.network.networks import Networks
from stratus.network.notify import Notifier
from stratus.network.objects import DHCP_DEVICE_OWNER, HostRoute
from stratus.network.part import Part
from stratus.network.quotas import Quotas
from stratus.network.subnetpools import SubnetPools

#: How subnets filter and sort (``filters``).
ATTRIBUTES = flt.Attributes(
    filters={
        "id": flt.text(Subnet.id), "name": flt.text(Subnet.name),
        "network_id": flt.text(Subnet.network_id), "ip_version": flt.integer(Subnet.ip_version),
        "cidr": flt.text(Subnet.cidr), "gateway_ip": flt.text(Subnet.gateway_ip),
        "allocation_pools": flt.nothing, "host_routes": flt.nothing,
        "dns_nameservers": flt.json_list(Subnet.dns_nameservers),
        "enable_dhcp": flt.boolean(Subnet.enable_dhcp), "ipv6_ra_mode": flt.constant(None),
        "ipv6_address_mode": flt.constant(None),
        "subnetpool_id": flt.text(Subnet.subnetpool_id),
        "service_types": flt.nothing, "segment_id": flt.constant(None),
        "dns_publish_fixed_ip": flt.constant(False), **flt.standard(Subnet)},
    sort={"id": Subnet.id, "name": Subnet.name, "network_id": Subnet.network_id,
          "ip_version": Subnet.ip_version, "cidr": Subnet.cidr,
          "gateway_ip": Subnet.gateway_ip, "enable_dhcp": Subnet.enable_dhcp,
          **flt.standard_sort(Subnet)},
    default_sort=flt.BY_CREATION, id_column=Subnet.id, tags=Subnet.tags)


@dataclass(frozen=True)
class NewSubnet:
    """A subnet to create. ``gateway_ip``: ``UNSET`` takes the first host address, ``None``
    means no gateway."""

    network_id: str = ""
    cidr: str = ""
    ip_version: int = 4
    name: str = ""
    description: str = ""
    project_id: str | None = None
    gateway_ip: str | Unset | None = UNSET
    allocation_pools: tuple[dict[str, Any], ...] = ()
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[HostRoute, ...] = ()
    enable_dhcp: bool = True
    #: The subnet pool to take the CIDR from (``cidr``, or a free block of ``prefixlen``).
    subnetpool_id: str | None = None
    prefixlen: int | None = None
    use_default_subnetpool: bool = False


@dataclass(frozen=True)
class SubnetUpdate:
    """Changes to a subnet (``UNSET``: not asked for; ``gateway_ip=None`` removes it)."""

    name: str | Unset = UNSET
    description: str | Unset = UNSET
    enable_dhcp: bool | Unset = UNSET
    gateway_ip: str | Unset | None = UNSET
    allocation_pools: tuple[dict[str, Any], ...] | Unset = UNSET
    dns_nameservers: tuple[str, ...] | Unset = UNSET
    host_routes: tuple[HostRoute, ...] | Unset = UNSET


@dataclass
class Subnets(Part):
    """The subnets of one transaction."""

    networks: Networks
    quotas: Quotas
    notifier: Notifier
    subnetpools: SubnetPools

    def _visible_subnets(self, caller: Caller) -> Select[Subnet]:
        query = select(Subnet)
        if not caller.is_admin:
            shared = select(Network.id).where(  # (external networks are everyone's to see)
                or_(Network.shared.is_(True), Network.router_external.is_(True)))
            query = query.where(or_(Subnet.project_id == caller.project_id,
                                    Subnet.network_id.in_(shared)))
        return query

    async def get_subnet(self, caller: Caller, subnet_id: str) -> Subnet:
        return await self._one(self._visible_subnets(caller).where(Subnet.id == subnet_id),
                               SubnetNotFound(subnet_id))

    async def list_subnets(self, caller: Caller, query: flt.ListQuery) -> Page:
        return await self._list_page(caller, ATTRIBUTES, self._visible_subnets(caller), query)

    async def create_subnet(self, caller: Caller, new: NewSubnet) -> Subnet:
        if not new.network_id:
            raise InvalidInput("Invalid input for operation: network_id is required.")
        net = await self.networks.get_network(caller, new.network_id)
        project_id = new.project_id or caller.require_project()
        if not caller.is_admin and net.project_id != caller.project_id:
            caller.authorize("admin_only")
        caller.authorize("create_subnet", {"project_id": project_id})
        if new.ip_version != 4:
            raise InvalidInput("Invalid input for operation: only IPv4 subnets "
                               "(ip_version 4) are supported.")
        pool = None
        if new.subnetpool_id:
            pool = await self.subnetpools.get_subnetpool(caller, new.subnetpool_id)
        elif new.use_default_subnetpool:
            pool = await self.subnetpools.default_pool(caller)
        if pool is not None:
            cidr: ipam.IPNetwork = await self.subnetpools.allocate(pool, new.cidr or None,
                                                                    new.prefixlen)
        elif not new.cidr:
            raise InvalidInput("Invalid input for operation: a cidr or a subnetpool_id "
                               "must be given.")
        elif new.prefixlen is not None:
            raise InvalidInput("Invalid input for operation: prefixlen is for subnets "
                               "allocated from a subnet pool.")
        else:
            cidr = ipam.parse_cidr(new.cidr)
        if cidr.version != 4:
            raise InvalidInput("Invalid input for operation: only IPv4 subnets are "
                               "supported.")
        if cidr.prefixlen > 30:
            raise InvalidInput(f"Invalid input for operation: {cidr} is too small "
                               "(the smallest subnet is a /30).")
        await self.quotas.check(project_id, "subnet")
        for other in await self.session.scalars(
                select(Subnet).where(Subnet.network_id == net.id)):
            if ipaddress.ip_network(other.cidr).overlaps(cidr):
                raise InvalidInput(f"Invalid input for operation: Requested subnet with cidr: "
                                   f"{cidr} for network: {net.id} overlaps with another "
                                   "subnet.")
        if new.gateway_ip is UNSET:
            gateway = ipam.default_gateway(cidr)
        else:
            gateway = None if new.gateway_ip is None else self._gateway_in(cidr, new.gateway_ip)
        if new.allocation_pools:
            pools = ipam.check_pools(cidr, new.allocation_pools, gateway)
        else:
            pools = ipam.default_pools(cidr, gateway)
        now = utcnow()
        subnet = Subnet(
            id=new_id(), network_id=net.id, project_id=project_id,
            name=new.name, description=new.description,
            ip_version=4, cidr=str(cidr), gateway_ip=gateway, enable_dhcp=new.enable_dhcp,
            dns_nameservers=self._nameservers(new.dns_nameservers),
            host_routes=self._routes(new.host_routes),
            allocation_pools=pools, tags=[], revision_number=1, created_at=now,
            updated_at=now, subnetpool_id=pool.id if pool is not None else None)
        net.subnets.append(subnet)
        touch(net)
        await self.session.flush()
        self.notifier.network_changed(net.id)
        return subnet

    @staticmethod
    def _gateway_in(cidr: ipam.IPNetwork, gateway: str) -> str:
        ip = ipam.parse_ip(gateway, "gateway_ip")
        if ip not in cidr or ip in (cidr.network_address, cidr.broadcast_address):
            raise InvalidInput(f"Invalid input for operation: Gateway IP {gateway} is not a "
                               f"host address of {cidr}.")
        return str(ip)

    @staticmethod
    def _nameservers(values: Iterable[str]) -> list[str]:
        result: list[str] = []
        for value in values:
            address = str(ipam.parse_ip(value, "dns_nameservers"))
            if address in result:
                raise InvalidInput(f"Duplicate nameserver '{address}'.")
            result.append(address)
        return result

    @staticmethod
    def _routes(values: Iterable[HostRoute]) -> list[dict[str, str]]:
        result = []
        for route in values:
            try:
                destination = str(ipaddress.ip_network(route.destination))
            except ValueError as exc:
                raise InvalidInput(f"Invalid input for host_routes: '{route.destination}'"
                                   " is not a valid CIDR.") from exc
            nexthop = str(ipam.parse_ip(route.nexthop, "host_routes"))
            result.append({"destination": destination, "nexthop": nexthop})
        return result

    async def update_subnet(self, caller: Caller, subnet_id: str,
                            change: SubnetUpdate) -> Subnet:
        subnet = await self.get_subnet(caller, subnet_id)
        caller.authorize("update_subnet", {"project_id": subnet.project_id})
        cidr = ipaddress.ip_network(subnet.cidr)
        for column, value in given(change, "name", "description", "enable_dhcp").items():
            setattr(subnet, column, value)
        if change.gateway_ip is not UNSET:
            subnet.gateway_ip = (None if change.gateway_ip is None
                                 else self._gateway_in(cidr, change.gateway_ip))
        if change.allocation_pools is not UNSET:
            subnet.allocation_pools = ipam.check_pools(cidr, change.allocation_pools,
                                                       subnet.gateway_ip)
        elif change.gateway_ip is not UNSET:
            ipam.check_pools(cidr, subnet.allocation_pools, subnet.gateway_ip)
        if change.dns_nameservers is not UNSET:
            subnet.dns_nameservers = self._nameservers(change.dns_nameservers)
        if change.host_routes is not UNSET:
            subnet.host_routes = self._routes(change.host_routes)
        touch(subnet)
        await self.session.flush()
        self.notifier.network_changed(subnet.network_id)
        return subnet

    async def delete_subnet(self, caller: Caller, subnet_id: str) -> None:
        subnet = await self.get_subnet(caller, subnet_id)
        caller.authorize("delete_subnet", {"project_id": subnet.project_id})
        busy = await self.session.scalar(
            select(IPAllocation.port_id).join(Port, Port.id == IPAllocation.port_id).where(
                IPAllocation.subnet_id == subnet.id,
                Port.device_owner != DHCP_DEVICE_OWNER).limit(1))
        if busy is not None:
            raise SubnetInUse(subnet.id)
        await self.session.execute(delete(IPAllocation).where(
            IPAllocation.subnet_id == subnet.id))
        network_id = subnet.network_id
        await self.session.delete(subnet)
        await self.session.flush()
        self.notifier.network_changed(network_id)
