"""Subnets: IPv4 only; the gateway, allocation pools, nameservers and host routes checked
here (pools by ``ipam``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Select, delete, or_, select

from stratus.core.db import utcnow
from stratus.network import ipam
from stratus.network.caller import Caller
from stratus.network.common import apply_filters, new_id, touch
from stratus.network.errors import InvalidInput, SubnetInUse, SubnetNotFound
from stratus.network.models import IPAllocation, Network, Port, Subnet
from stratus.network.networks import Networks
from stratus.network.notify import Notifier
from stratus.network.objects import DHCP_DEVICE_OWNER
from stratus.network.quotas import Quotas
from stratus.network.txn import Txn


class Subnets:
    """The subnets of one transaction."""

    def __init__(self, txn: Txn, networks: Networks, quotas: Quotas,
                 notifier: Notifier) -> None:
        self.txn = txn
        self.session = txn.session
        self.networks = networks
        self.quotas = quotas
        self.notifier = notifier

    def _visible_subnets(self, caller: Caller) -> Select[Subnet]:
        query = select(Subnet)
        if not caller.is_admin:
            shared = select(Network.id).where(Network.shared.is_(True))
            query = query.where(or_(Subnet.project_id == caller.project_id,
                                    Subnet.network_id.in_(shared)))
        return query

    async def get_subnet(self, caller: Caller, subnet_id: str) -> Subnet:
        subnet = await self.session.scalar(
            self._visible_subnets(caller).where(Subnet.id == subnet_id))
        if subnet is None:
            raise SubnetNotFound(subnet_id)
        return subnet

    async def list_subnets(self, caller: Caller,
                           where: Mapping[str, list[Any]] | None = None) -> list[Subnet]:
        query = apply_filters(self._visible_subnets(caller), Subnet, where)
        return list(await self.session.scalars(query.order_by(Subnet.created_at, Subnet.id)))

    async def create_subnet(self, caller: Caller, attrs: dict[str, Any]) -> Subnet:
        network_id = attrs.get("network_id")
        if not network_id:
            raise InvalidInput("Invalid input for operation: network_id is required.")
        net = await self.networks.get_network(caller, str(network_id))
        project_id = attrs.get("project_id") or caller.project_id
        if not caller.is_admin and net.project_id != caller.project_id:
            caller.authorize("admin_only")
        caller.authorize("create_subnet", {"project_id": project_id})
        if attrs.get("ip_version", 4) != 4:
            raise InvalidInput("Invalid input for operation: only IPv4 subnets "
                               "(ip_version 4) are supported.")
        if not attrs.get("cidr"):
            raise InvalidInput("Invalid input for operation: a cidr must be given "
                               "(subnet pools are not supported).")
        cidr = ipam.parse_cidr(str(attrs["cidr"]))
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
        if "gateway_ip" in attrs:
            gateway = attrs["gateway_ip"]
            if gateway is not None:
                gateway = self._gateway_in(cidr, str(gateway))
        else:
            gateway = ipam.default_gateway(cidr)
        if attrs.get("allocation_pools"):
            pools = ipam.check_pools(cidr, attrs["allocation_pools"], gateway)
        else:
            pools = ipam.default_pools(cidr, gateway)
        now = utcnow()
        subnet = Subnet(
            id=new_id(), network_id=net.id, project_id=project_id,
            name=attrs.get("name") or "", description=attrs.get("description") or "",
            ip_version=4, cidr=str(cidr), gateway_ip=gateway,
            enable_dhcp=attrs.get("enable_dhcp", True),
            dns_nameservers=self._nameservers(attrs.get("dns_nameservers") or []),
            host_routes=self._routes(attrs.get("host_routes") or []),
            allocation_pools=pools, tags=[], revision_number=1, created_at=now,
            updated_at=now)
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
    def _nameservers(values: Iterable[Any]) -> list[str]:
        result: list[str] = []
        for value in values:
            address = str(ipam.parse_ip(str(value), "dns_nameservers"))
            if address in result:
                raise InvalidInput(f"Duplicate nameserver '{address}'.")
            result.append(address)
        return result

    @staticmethod
    def _routes(values: Iterable[Any]) -> list[dict[str, str]]:
        result = []
        for route in values:
            if not isinstance(route, dict) or set(route) != {"destination", "nexthop"}:
                raise InvalidInput("Invalid input for host_routes: each route is "
                                   "{'destination': cidr, 'nexthop': ip}.")
            try:
                destination = str(ipaddress.ip_network(str(route["destination"])))
            except ValueError as exc:
                raise InvalidInput(f"Invalid input for host_routes: '{route['destination']}'"
                                   " is not a valid CIDR.") from exc
            nexthop = str(ipam.parse_ip(str(route["nexthop"]), "host_routes"))
            result.append({"destination": destination, "nexthop": nexthop})
        return result

    async def update_subnet(self, caller: Caller, subnet_id: str,
                            attrs: dict[str, Any]) -> Subnet:
        subnet = await self.get_subnet(caller, subnet_id)
        caller.authorize("update_subnet", {"project_id": subnet.project_id})
        for fixed in ("cidr", "ip_version", "network_id"):
            if fixed in attrs:
                raise InvalidInput(f"Cannot update read-only attribute {fixed}")
        cidr = ipaddress.ip_network(subnet.cidr)
        for key in ("name", "description", "enable_dhcp"):
            if key in attrs:
                setattr(subnet, key, attrs[key])
        if "gateway_ip" in attrs:
            subnet.gateway_ip = (None if attrs["gateway_ip"] is None
                                 else self._gateway_in(cidr, str(attrs["gateway_ip"])))
        if "allocation_pools" in attrs:
            subnet.allocation_pools = ipam.check_pools(cidr, attrs["allocation_pools"] or [],
                                                       subnet.gateway_ip)
        elif "gateway_ip" in attrs:
            ipam.check_pools(cidr, subnet.allocation_pools, subnet.gateway_ip)
        if "dns_nameservers" in attrs:
            subnet.dns_nameservers = self._nameservers(attrs["dns_nameservers"] or [])
        if "host_routes" in attrs:
            subnet.host_routes = self._routes(attrs["host_routes"] or [])
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
