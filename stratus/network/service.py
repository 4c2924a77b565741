"""The network service's domain layer: networks, subnets, ports, security groups, quotas,
agents. Nothing here knows HTTP.

``NetworkRuntime`` lives as long as the process; ``NetworkService`` works inside one
transaction. Changes that agents or compute must hear of are queued on the service and run
by the runtime after the transaction committed (``after_commit``), so nobody is told of a
change that then rolled back.

Concurrency: on PostgreSQL writers take transaction-scoped advisory locks where a count or a
lookup-then-create must not race (quotas, DHCP ports); on SQLite, whose database belongs to
this one process, write transactions are serialised by one asyncio lock (SQLite has a
single writer anyway, and a deferred transaction that reads before it writes would
otherwise fail with "database is locked").
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import joinedload

from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.core.db import Database, utcnow
from stratus.core.policy import Enforcer
from stratus.network import ipam
from stratus.network.agent_registry import AgentOps
from stratus.network.backends import NetworkBackend, NoopBackend
from stratus.network.base import (
    AfterCommit,
    Caller,
    network_target,
    new_id,
    random_mac,
    rowcount,
)
from stratus.network.events import DiscardEvents, EventSink, ServerEvent
from stratus.network.exceptions import (
    InvalidInput,
    IpAddressGenerationFailure,
    MacAddressGenerationFailure,
    MacAddressInUse,
    NetworkInUse,
    NetworkNotFound,
    PortNotFound,
    SecurityGroupNotFound,
    SubnetInUse,
    SubnetNotFound,
)
from stratus.network.migrations import HEAD
from stratus.network.models import (
    IPAllocation,
    Network,
    Port,
    PortSecurityGroup,
    SecurityGroup,
    Subnet,
)
from stratus.network.objects import (
    COMPUTE_DEVICE_OWNER_PREFIX,
    DHCP_DEVICE_OWNER,
    AllocationPool,
    DeviceDetails,
    FixedIP,
    HostRoute,
    NetworkInfo,
    PortInfo,
    SubnetInfo,
)
from stratus.network.policy import RULES
from stratus.network.security_groups import SecurityGroupOps

LOG = logging.getLogger(__name__)

SCRIPT_LOCATION = "stratus.network:migrations"
VERSION_TABLE = "alembic_version_network"

MAC_TRIES = 16
#: Network types an admin may give (``provider:network_type``): what the l2-agent wires.
NETWORK_TYPES = ("flat", "vxlan")

#: One query for a port with its addresses and groups (instead of one per relationship).
_PORT_JOINED = (joinedload(Port.fixed_ips), joinedload(Port.security_groups))


# The runtime ------------------------------------------------------------------------------


class NetworkRuntime:
    """What network-api keeps for the life of the process."""

    def __init__(self, settings: Settings, db: Database | None = None,
                 backend: NetworkBackend | None = None, events: EventSink | None = None) -> None:
        self.settings = settings
        self.options = settings.network
        self.db = db or Database(settings.database_url_for("network",
                                                           settings.network.database_url))
        self.enforcer = Enforcer(RULES, settings.policy_file)
        self.backend: NetworkBackend = backend or NoopBackend()
        self.events: EventSink = events or DiscardEvents()
        self._write_lock = asyncio.Lock() if self.db.backend == "sqlite" else None

    async def start(self) -> None:
        await self.db.upgrade(SCRIPT_LOCATION, VERSION_TABLE, known_head=HEAD)

    async def stop(self) -> None:
        await self.db.dispose()

    def caller(self, context: RequestContext) -> Caller:
        return Caller(context, self.enforcer)

    @asynccontextmanager
    async def service(self, *, write: bool = True) -> AsyncIterator[NetworkService]:
        """One transaction: committed on success, rolled back on error; then what the
        service queued for after the commit runs (its failures are logged)."""
        pending: list[AfterCommit] = []
        if write and self._write_lock is not None:
            async with self._write_lock, self.db.session() as session:
                yield NetworkService(self, session, pending)
        else:
            async with self.db.session() as session:
                yield NetworkService(self, session, pending)
        for action in pending:
            try:
                await action()
            except Exception:
                LOG.exception("notifying a network change failed")

    async def system_context(self) -> RequestContext:
        return RequestContext(roles=["admin"], project_id=None)


# The service ------------------------------------------------------------------------------


class NetworkService(SecurityGroupOps, AgentOps):
    """The network service's operations within one database transaction: networks,
    subnets, ports and the agents' snapshots here; security groups (``security_groups``),
    agents (``agent_registry``) and quotas (``base``) in their own modules."""

    # Networks -----------------------------------------------------------------------------

    def _visible_networks(self, caller: Caller) -> Any:
        query = select(Network)
        if not caller.is_admin:
            query = query.where(or_(Network.project_id == caller.project_id,
                                    Network.shared.is_(True)))
        return query

    async def get_network(self, caller: Caller, network_id: str) -> Network:
        net = (await self.session.scalars(
            self._visible_networks(caller).where(Network.id == network_id).options(
                joinedload(Network.subnets)))).unique().one_or_none()
        if net is None:
            raise NetworkNotFound(network_id)
        return net

    async def list_networks(self, caller: Caller,
                            where: Mapping[str, list[Any]] | None = None) -> list[Network]:
        query = self._apply(self._visible_networks(caller), Network, where)
        return list(await self.session.scalars(query.order_by(Network.created_at,
                                                              Network.id)))

    async def create_network(self, caller: Caller, attrs: dict[str, Any]) -> Network:
        project_id = attrs.get("project_id") or caller.project_id
        target = {"project_id": project_id}
        caller.authorize("create_network", target)
        if attrs.get("shared"):
            caller.authorize("create_network:shared", target)
        if attrs.get("router:external"):
            caller.authorize("create_network:router:external", target)
        provider = {k: v for k, v in attrs.items() if k.startswith("provider:")}
        if provider:
            caller.authorize("create_network:provider", target)
        await self.check_quota(project_id, "network")
        network_type = provider.get("provider:network_type") or "flat"
        if network_type not in NETWORK_TYPES:
            raise InvalidInput(f"Invalid input for operation: network_type value "
                               f"'{network_type}' not supported.")
        segmentation_id = provider.get("provider:segmentation_id")
        if network_type == "vxlan" and segmentation_id is None:
            segmentation_id = await self._free_vni()
        mtu = attrs.get("mtu") or self.options.default_mtu
        now = utcnow()
        net = Network(
            id=new_id(), project_id=project_id, name=attrs.get("name") or "",
            description=attrs.get("description") or "",
            admin_state_up=attrs.get("admin_state_up", True),
            shared=bool(attrs.get("shared", False)),
            router_external=bool(attrs.get("router:external", False)),
            port_security_enabled=attrs.get("port_security_enabled", True), mtu=mtu,
            network_type=network_type,
            physical_network=provider.get("provider:physical_network"),
            segmentation_id=segmentation_id,
            availability_zone_hints=list(attrs.get("availability_zone_hints") or []),
            tags=[], status="ACTIVE" if attrs.get("admin_state_up", True) else "DOWN",
            revision_number=1, created_at=now, updated_at=now)
        net.subnets = []
        self.session.add(net)
        await self.session.flush()
        self._notify_network(net.id)
        return net

    async def _free_vni(self) -> int:
        """The lowest free VNI; the lock keeps two concurrent creates from taking the same."""
        await self._lock("vxlan-vni")
        used = set(await self.session.scalars(select(Network.segmentation_id).where(
            Network.network_type == "vxlan")))
        for vni in range(self.options.vxlan_vni_min, self.options.vxlan_vni_max + 1):
            if vni not in used:
                return vni
        raise InvalidInput("No VXLAN segmentation id is free.")

    async def update_network(self, caller: Caller, network_id: str,
                             attrs: dict[str, Any]) -> Network:
        net = await self.get_network(caller, network_id)
        target = network_target(net)
        caller.authorize("update_network", target)
        if "shared" in attrs and attrs["shared"] != net.shared:
            caller.authorize("update_network:shared", target)
        if "router:external" in attrs:
            caller.authorize("update_network:router:external", target)
        if any(k.startswith("provider:") for k in attrs):
            caller.authorize("update_network:provider", target)
            raise InvalidInput("Invalid input for operation: Plugin does not support "
                               "updating provider attributes.")
        for key, column in (("name", "name"), ("description", "description"),
                            ("admin_state_up", "admin_state_up"), ("shared", "shared"),
                            ("router:external", "router_external"), ("mtu", "mtu"),
                            ("port_security_enabled", "port_security_enabled")):
            if key in attrs:
                setattr(net, column, attrs[key])
        if "admin_state_up" in attrs:
            net.status = "ACTIVE" if net.admin_state_up else "DOWN"
        self._touch(net)
        await self.session.flush()
        self._notify_network(net.id)
        return net

    async def delete_network(self, caller: Caller, network_id: str) -> None:
        net = await self.get_network(caller, network_id)
        caller.authorize("delete_network", network_target(net))
        busy = await self.session.scalar(select(Port.id).where(
            Port.network_id == net.id, Port.device_owner != DHCP_DEVICE_OWNER).limit(1))
        if busy is not None:
            raise NetworkInUse(net.id)
        for port in await self.session.scalars(select(Port).where(Port.network_id == net.id)):
            await self._delete_port(port)  # DHCP ports: their agents are told
        await self.session.delete(net)
        await self.session.flush()
        backend, ctx = self.runtime.backend, await self.runtime.system_context()
        self.after_commit(lambda: backend.network_deleted(ctx, network_id))

    # Subnets ------------------------------------------------------------------------------

    def _visible_subnets(self, caller: Caller) -> Any:
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
        query = self._apply(self._visible_subnets(caller), Subnet, where)
        return list(await self.session.scalars(query.order_by(Subnet.created_at, Subnet.id)))

    async def create_subnet(self, caller: Caller, attrs: dict[str, Any]) -> Subnet:
        network_id = attrs.get("network_id")
        if not network_id:
            raise InvalidInput("Invalid input for operation: network_id is required.")
        net = await self.get_network(caller, str(network_id))
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
        await self.check_quota(project_id, "subnet")
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
        self._touch(net)
        await self.session.flush()
        self._notify_network(net.id)
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
        self._touch(subnet)
        await self.session.flush()
        self._notify_network(subnet.network_id)
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
        self._notify_network(network_id)

    # Ports --------------------------------------------------------------------------------

    def _visible_ports(self, caller: Caller) -> Any:
        query = select(Port)
        if not caller.is_admin:
            owned = select(Network.id).where(Network.project_id == caller.project_id)
            query = query.where(or_(Port.project_id == caller.project_id,
                                    Port.network_id.in_(owned)))
        return query

    async def get_port(self, caller: Caller, port_id: str) -> Port:
        port = (await self.session.scalars(self._visible_ports(caller).where(
            Port.id == port_id).options(*_PORT_JOINED))).unique().one_or_none()
        if port is None:
            raise PortNotFound(port_id)
        return port

    async def list_ports(self, caller: Caller,
                         where: Mapping[str, list[Any]] | None = None) -> list[Port]:
        query = self._apply(self._visible_ports(caller), Port, where)
        return list(await self.session.scalars(query.order_by(Port.created_at, Port.id)))

    async def create_port(self, caller: Caller, attrs: dict[str, Any]) -> Port:
        network_id = attrs.get("network_id")
        if not network_id:
            raise InvalidInput("Invalid input for operation: network_id is required.")
        net = await self.get_network(caller, str(network_id))
        project_id = attrs.get("project_id") or caller.project_id
        if project_id != caller.project_id:
            caller.authorize("admin_only")
        target = {**network_target(net), "project_id": project_id,
                  "network_owner": net.project_id}
        caller.authorize("create_port", target)
        if "mac_address" in attrs:
            caller.authorize("create_port:mac_address", target)
        if any("ip_address" in f for f in attrs.get("fixed_ips") or [] if isinstance(f, dict)) \
                and not net.shared:
            caller.authorize("create_port:fixed_ips:ip_address", target)
        if any(k.startswith("binding:") for k in attrs):
            caller.authorize("create_port:binding", target)
        vnic = attrs.get("binding:vnic_type", "normal")
        if vnic != "normal":
            raise InvalidInput(f"Invalid input for binding:vnic_type: '{vnic}' is not "
                               "supported (only 'normal').")
        device_owner = attrs.get("device_owner") or ""
        if device_owner != DHCP_DEVICE_OWNER:
            await self.check_quota(project_id, "port")
        port_security = attrs.get("port_security_enabled", net.port_security_enabled)
        groups = attrs.get("security_groups")
        if groups is None:
            groups = ([] if device_owner.startswith("network:") or not port_security
                      else [await self.default_security_group(project_id)])
        else:
            groups = await self._check_groups(caller, project_id, groups)
            if groups and not port_security:
                raise InvalidInput("Port has security group associated. Cannot disable port "
                                   "security or ip address until security group is removed")
        port_id = new_id()
        now = utcnow()
        row = {
            "id": port_id, "network_id": net.id, "project_id": project_id,
            "name": attrs.get("name") or "", "description": attrs.get("description") or "",
            "admin_state_up": attrs.get("admin_state_up", True), "status": "DOWN",
            "device_id": attrs.get("device_id") or "", "device_owner": device_owner,
            "binding_host_id": attrs.get("binding:host_id") or "",
            "binding_vnic_type": "normal",
            "binding_profile": attrs.get("binding:profile") or {},
            "dns_name": attrs.get("dns_name") or "",
            "port_security_enabled": port_security, "tags": [],
            "revision_number": 1, "created_at": now, "updated_at": now,
        }
        await self._insert_port(row, attrs.get("mac_address"))
        for group_id in groups:
            self.session.add(PortSecurityGroup(port_id=port_id, security_group_id=group_id))
        await self._allocate(net, port_id, attrs.get("fixed_ips"))
        await self.session.flush()
        port = await self._load_port(port_id)
        await self._after_port_change(port, None)
        return port

    async def _insert_port(self, row: dict[str, Any], mac: str | None) -> None:
        """Insert the port with its MAC; a generated MAC that another port of the network
        holds (the unique key says so) is drawn again."""
        if mac is not None:
            mac = self._mac(mac)
            result = await self.session.execute(self._insert(Port.__table__).values(
                **row, mac_address=mac))
            if rowcount(result) != 1:
                raise MacAddressInUse(mac, row["network_id"])
            return
        for _ in range(MAC_TRIES):
            result = await self.session.execute(self._insert(Port.__table__).values(
                **row, mac_address=random_mac()))
            if rowcount(result) == 1:
                return
        raise MacAddressGenerationFailure(row["network_id"])

    @staticmethod
    def _mac(value: Any) -> str:
        parts = str(value).lower().replace("-", ":").split(":")
        if len(parts) != 6 or not all(len(p) == 2 for p in parts):
            raise InvalidInput(f"Invalid input for mac_address: '{value}' is not a valid MAC "
                               "address.")
        try:
            first = int(parts[0], 16)
            for part in parts[1:]:
                int(part, 16)
        except ValueError as exc:
            raise InvalidInput(f"Invalid input for mac_address: '{value}' is not a valid MAC "
                               "address.") from exc
        if first & 1 or all(p == "00" for p in parts):
            raise InvalidInput(f"Invalid input for mac_address: '{value}' is not a valid "
                               "unicast MAC address.")
        return ":".join(parts)

    async def _load_port(self, port_id: str) -> Port:
        """The port as the database now has it, addresses and groups in the same query."""
        port = (await self.session.scalars(
            select(Port).where(Port.id == port_id).options(*_PORT_JOINED)
            .execution_options(populate_existing=True))).unique().one_or_none()
        assert port is not None
        return port

    async def _subnets_of(self, network_id: str) -> list[Subnet]:
        return list(await self.session.scalars(select(Subnet).where(
            Subnet.network_id == network_id).order_by(Subnet.created_at)))

    async def _allocate(self, net: Network, port_id: str, fixed_ips: Any,
                        position: int = 0) -> None:
        """Addresses for a new port: as ``fixed_ips`` asks, or one from the first IPv4
        subnet of the network that has a free one."""
        subnets = list(net.subnets)  # loaded with the network, in creation order
        if fixed_ips is None:
            for subnet in subnets:
                try:
                    await self.ipam.allocate(subnet, port_id, position)
                    return
                except IpAddressGenerationFailure:
                    continue
            if subnets:
                raise IpAddressGenerationFailure(net.id)
            return
        for index, wanted in enumerate(self._fixed_ips(fixed_ips)):
            subnet = self._subnet_for(subnets, net.id, wanted)
            await self.ipam.allocate(subnet, port_id, position + index,
                                     wanted.get("ip_address"))

    @staticmethod
    def _fixed_ips(value: Any) -> list[dict[str, str]]:
        if not isinstance(value, list):
            raise InvalidInput("Invalid input for fixed_ips: it must be a list.")
        result = []
        for item in value:
            if not isinstance(item, dict) or not item or set(item) - {"subnet_id",
                                                                      "ip_address"}:
                raise InvalidInput("Invalid input for fixed_ips: each entry has a subnet_id "
                                   "and/or an ip_address.")
            result.append({k: str(v) for k, v in item.items()})
        return result

    @staticmethod
    def _subnet_for(subnets: list[Subnet], network_id: str,
                    wanted: Mapping[str, str]) -> Subnet:
        if "subnet_id" in wanted:
            for subnet in subnets:
                if subnet.id == wanted["subnet_id"]:
                    return subnet
            raise InvalidInput(f"Invalid input for operation: Failed to create port on "
                               f"network {network_id}, because fixed_ips included invalid "
                               f"subnet {wanted['subnet_id']}.")
        ip = ipam.parse_ip(wanted["ip_address"])
        for subnet in subnets:
            if ip in ipaddress.ip_network(subnet.cidr):
                return subnet
        raise ipam.InvalidIpForSubnet(wanted["ip_address"])

    async def _check_groups(self, caller: Caller, project_id: str,
                            groups: Any) -> list[str]:
        if not isinstance(groups, list):
            raise InvalidInput("Invalid input for security_groups: it must be a list of ids.")
        result = []
        for group_id in dict.fromkeys(str(g) for g in groups):
            group = await self.session.get(SecurityGroup, group_id)
            if group is None or (not caller.is_admin and group.project_id != project_id):
                raise SecurityGroupNotFound(group_id)
            result.append(group_id)
        return result

    async def update_port(self, caller: Caller, port_id: str, attrs: dict[str, Any]) -> Port:
        port = await self.get_port(caller, port_id)
        net = await self.session.get(Network, port.network_id)
        assert net is not None
        target = {**network_target(net), "project_id": port.project_id,
                  "network_owner": net.project_id}
        caller.authorize("update_port", target)
        if any(k.startswith("binding:") for k in attrs):
            caller.authorize("update_port:binding", target)
        if "mac_address" in attrs:
            caller.authorize("update_port:mac_address", target)
        for fixed in ("network_id", "project_id", "tenant_id"):
            if fixed in attrs and attrs[fixed] != getattr(port, "project_id" if fixed in (
                    "project_id", "tenant_id") else fixed):
                raise InvalidInput(f"Cannot update read-only attribute {fixed}")
        if attrs.get("binding:vnic_type", "normal") != "normal":
            raise InvalidInput("Invalid input for binding:vnic_type: only 'normal' is "
                               "supported.")
        old_host = port.binding_host_id
        old_info = await self.port_info(port)
        for key, column in (("name", "name"), ("description", "description"),
                            ("admin_state_up", "admin_state_up"), ("device_id", "device_id"),
                            ("device_owner", "device_owner"), ("dns_name", "dns_name"),
                            ("binding:host_id", "binding_host_id"),
                            ("binding:profile", "binding_profile")):
            if key in attrs:
                value = attrs[key]
                setattr(port, column, ({} if column == "binding_profile" else "")
                        if value is None else value)
        if "mac_address" in attrs:
            port.mac_address = self._mac(attrs["mac_address"])
            clash = await self.session.scalar(select(Port.id).where(
                Port.network_id == port.network_id, Port.mac_address == port.mac_address,
                Port.id != port.id))
            if clash is not None:
                raise MacAddressInUse(port.mac_address, port.network_id)
        if "port_security_enabled" in attrs:
            port.port_security_enabled = bool(attrs["port_security_enabled"])
        if "security_groups" in attrs:
            groups = await self._check_groups(caller, port.project_id,
                                              attrs["security_groups"] or [])
            await self.session.execute(delete(PortSecurityGroup).where(
                PortSecurityGroup.port_id == port.id))
            for group_id in groups:
                self.session.add(PortSecurityGroup(port_id=port.id, security_group_id=group_id))
        elif "port_security_enabled" in attrs and not port.port_security_enabled \
                and port.security_groups:
            raise InvalidInput("Port has security group associated. Cannot disable port "
                               "security or ip address until security group is removed")
        if "fixed_ips" in attrs:
            await self._readdress(net, port, attrs["fixed_ips"])
        if port.binding_host_id != old_host:
            port.status = "DOWN"
        self._touch(port)
        await self.session.flush()
        port = await self._load_port(port.id)
        await self._after_port_change(port, old_info)
        return port

    async def _readdress(self, net: Network, port: Port, fixed_ips: Any) -> None:
        """New ``fixed_ips``: addresses kept stay, the others are freed, new ones taken."""
        wanted = self._fixed_ips(fixed_ips or [])
        subnets = await self._subnets_of(net.id)
        current = {(a.subnet_id, a.ip_address) for a in port.fixed_ips}
        keep: set[tuple[str, str]] = set()
        new: list[dict[str, str]] = []
        for item in wanted:
            subnet = self._subnet_for(subnets, net.id, item)
            if "ip_address" in item:
                address = str(ipam.parse_ip(item["ip_address"]))
                if (subnet.id, address) in current:
                    keep.add((subnet.id, address))
                    continue
            elif any(s == subnet.id for s, _ in current - keep):
                keep.add(next(p for p in sorted(current - keep) if p[0] == subnet.id))
                continue
            new.append({**item, "subnet_id": subnet.id})
        await self.ipam.release(port.id, keep)
        position = len(keep)
        for item in new:
            subnet = next(s for s in subnets if s.id == item["subnet_id"])
            await self.ipam.allocate(subnet, port.id, position, item.get("ip_address"))
            position += 1

    async def delete_port(self, caller: Caller, port_id: str) -> None:
        port = await self.get_port(caller, port_id)
        net = await self.session.get(Network, port.network_id)
        assert net is not None
        caller.authorize("delete_port", {**network_target(net), "project_id": port.project_id})
        await self._delete_port(port)

    async def _delete_port(self, port: Port) -> None:
        host, network_id, port_id = port.binding_host_id, port.network_id, port.id
        await self.session.delete(port)  # its addresses and group links go with it
        await self.session.flush()
        backend, ctx = self.runtime.backend, await self.runtime.system_context()
        self.after_commit(lambda: backend.port_deleted(ctx, network_id, port_id))
        if host and not backend.wires_at_once:
            self.after_commit(lambda: backend.port_unbound(ctx, host, port_id, network_id))

    async def _after_port_change(self, port: Port, old: PortInfo | None) -> None:
        """Tell the backend (after commit) what changed; bind or unbind on hosts. With a
        backend that wires at once, a newly bound server port goes ACTIVE here."""
        backend, ctx = self.runtime.backend, await self.runtime.system_context()
        old_host = old.binding_host_id if old else ""
        bound = bool(port.binding_host_id) and port.device_owner.startswith(
            COMPUTE_DEVICE_OWNER_PREFIX)
        newly_bound = bound and port.binding_host_id != old_host
        if newly_bound and backend.wires_at_once:
            port.status = "ACTIVE"
            await self.session.flush()
            self._server_event("network-vif-plugged", port)
        info = await self.port_info(port)
        self.after_commit(lambda: backend.port_updated(ctx, info))
        if old_host and old_host != port.binding_host_id and not backend.wires_at_once:
            self.after_commit(lambda: backend.port_unbound(ctx, old_host, port.id,
                                                           port.network_id))
        if newly_bound and not backend.wires_at_once:
            details = await self.device_details(port)
            host = port.binding_host_id
            self.after_commit(lambda: backend.port_bound(ctx, host, details))

    def _server_event(self, name: str, port: Port) -> None:
        if port.device_id and port.device_owner.startswith(COMPUTE_DEVICE_OWNER_PREFIX):
            event = ServerEvent(name=name, server_uuid=port.device_id, tag=port.id)
            events = self.runtime.events

            async def send() -> None:
                events.send(event)

            self.after_commit(send)

    def _notify_network(self, network_id: str) -> None:
        """After commit, send the network's full snapshot to the backend (read then, so
        the snapshot includes everything this transaction did)."""
        runtime = self.runtime
        if isinstance(runtime.backend, NoopBackend):
            return

        async def notify() -> None:
            async with runtime.service(write=False) as svc:
                info = await svc.network_info_by_id(network_id)
            if info is not None:
                await runtime.backend.network_updated(await runtime.system_context(), info)

        self.after_commit(notify)

    # Port status from agents --------------------------------------------------------------

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
            port.status = status
            self._touch(port)
            await self.session.flush()
            self._server_event("network-vif-plugged" if up else "network-vif-unplugged", port)
            info = await self.port_info(port)
            backend, ctx = self.runtime.backend, await self.runtime.system_context()
            self.after_commit(lambda: backend.port_updated(ctx, info))
        elif up:
            # A repeated report (an agent resync) still answers a host that waits.
            self._server_event("network-vif-plugged", port)
        return port

    # Snapshots for agents -----------------------------------------------------------------

    @staticmethod
    def subnet_info(subnet: Subnet) -> SubnetInfo:
        return SubnetInfo(
            id=subnet.id, network_id=subnet.network_id, name=subnet.name, cidr=subnet.cidr,
            ip_version=subnet.ip_version, gateway_ip=subnet.gateway_ip,
            enable_dhcp=subnet.enable_dhcp, dns_nameservers=list(subnet.dns_nameservers),
            host_routes=[HostRoute(**r) for r in subnet.host_routes],
            allocation_pools=[AllocationPool(**p) for p in subnet.allocation_pools])

    async def port_info(self, port: Port) -> PortInfo:
        return PortInfo(
            id=port.id, network_id=port.network_id, project_id=port.project_id,
            mac_address=port.mac_address,
            fixed_ips=[FixedIP(subnet_id=a.subnet_id, ip_address=a.ip_address)
                       for a in port.fixed_ips],
            device_id=port.device_id, device_owner=port.device_owner,
            admin_state_up=port.admin_state_up, binding_host_id=port.binding_host_id,
            hostname=port.dns_name or (
                f"host-{port.fixed_ips[0].ip_address.replace('.', '-')}"
                if port.fixed_ips else ""),
            status=port.status)

    async def network_info(self, net: Network, with_ports: bool = True) -> NetworkInfo:
        subnets = await self._subnets_of(net.id)
        ports: list[PortInfo] = []
        if with_ports:
            for port in await self.session.scalars(select(Port).where(
                    Port.network_id == net.id).order_by(Port.created_at)):
                ports.append(await self.port_info(port))
        return NetworkInfo(
            id=net.id, project_id=net.project_id, name=net.name,
            admin_state_up=net.admin_state_up, mtu=net.mtu, network_type=net.network_type,
            segmentation_id=net.segmentation_id, physical_network=net.physical_network,
            subnets=[self.subnet_info(s) for s in subnets], ports=ports)

    async def network_info_by_id(self, network_id: str,
                                 with_ports: bool = True) -> NetworkInfo | None:
        net = await self.session.get(Network, network_id)
        return None if net is None else await self.network_info(net, with_ports)

    async def active_networks(self) -> list[NetworkInfo]:
        dhcp = select(Subnet.network_id).where(Subnet.enable_dhcp.is_(True))
        nets = await self.session.scalars(select(Network).where(
            Network.admin_state_up.is_(True), Network.id.in_(dhcp)).order_by(
            Network.created_at))
        return [await self.network_info(n) for n in nets]

    async def device_details(self, port: Port) -> DeviceDetails:
        info = await self.network_info_by_id(port.network_id, with_ports=False)
        assert info is not None
        return DeviceDetails(port=await self.port_info(port), network=info)

    async def bound_ports(self, host: str) -> list[DeviceDetails]:
        """Every server port bound to ``host``, with its network's segment (DHCP ports are
        the dhcp-agent's own business)."""
        ports = (await self.session.scalars(select(Port).where(
            Port.binding_host_id == host, Port.device_owner != DHCP_DEVICE_OWNER).order_by(
            Port.created_at, Port.id))).all()
        networks: dict[str, NetworkInfo] = {}
        result = []
        for port in ports:
            if port.network_id not in networks:
                info = await self.network_info_by_id(port.network_id, with_ports=False)
                assert info is not None
                networks[port.network_id] = info
            result.append(DeviceDetails(port=await self.port_info(port),
                                        network=networks[port.network_id]))
        return result

    async def ensure_dhcp_port(self, network_id: str, host: str) -> PortInfo:
        """The DHCP port of ``host`` on the network, with an address on every DHCP-enabled
        subnet; created (or completed) under a lock, so two calls make one port."""
        net = await self.session.get(Network, network_id)
        if net is None:
            raise NetworkNotFound(network_id)
        await self._lock("dhcp-port", network_id, host)
        port = await self.session.scalar(select(Port).where(
            Port.network_id == network_id, Port.device_owner == DHCP_DEVICE_OWNER,
            Port.binding_host_id == host))
        created = port is None
        if port is None:
            port_id = new_id()
            now = utcnow()
            await self._insert_port({
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
        for subnet in await self._subnets_of(network_id):
            if subnet.enable_dhcp and subnet.id not in held:
                await self.ipam.allocate(subnet, port_id, position)
                position += 1
                added = True
        await self.session.flush()
        port = await self._load_port(port_id)
        if created or added:
            info = await self.port_info(port)
            backend, ctx = self.runtime.backend, await self.runtime.system_context()
            self.after_commit(lambda: backend.port_updated(ctx, info))
        return await self.port_info(port)

    async def release_dhcp_port(self, network_id: str, host: str) -> None:
        port = await self.session.scalar(select(Port).where(
            Port.network_id == network_id, Port.device_owner == DHCP_DEVICE_OWNER,
            Port.binding_host_id == host))
        if port is not None:
            await self._delete_port(port)

    # Bootstrap ----------------------------------------------------------------------------

    async def ensure_default_network(self, project_id: str, name: str, cidr: str) -> Network:
        """The project's network ``name`` with one subnet on ``cidr``: made once."""
        existing = await self.session.scalar(select(Network).where(
            Network.project_id == project_id, Network.name == name))
        if existing is not None:
            return existing
        caller = Caller(RequestContext(roles=["admin"], project_id=project_id),
                        self.runtime.enforcer)
        net = await self.create_network(caller, {"name": name})
        await self.create_subnet(caller, {"network_id": net.id, "cidr": cidr,
                                          "name": f"{name}-subnet"})
        return net
