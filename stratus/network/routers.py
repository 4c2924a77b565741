"""Routers (Neutron's ``router``, ``ext-gw-mode`` and ``extraroute``): create, show, list,
update, delete; the external gateway; interfaces added and removed by subnet or by port;
extra routes. The router's l3-agent hears of each change after the commit (``l3_agents``).

Rules, as Neutron keeps them:

* the gateway is a port on an external network (``network:router_gateway``) holding an
  address of it; a network that is not external is a 400, one the caller cannot see a 404;
* an interface by subnet is a new port holding the subnet's gateway address
  (``network:router_interface``, ``device_id`` the router); by port, the caller's unused
  port becomes one. A subnet without a gateway, a second interface on a subnet, or a CIDR
  overlapping another interface's is a 400; a port in use a 409;
* a router with interfaces cannot be deleted (409 ``RouterInUse``); an interface or the
  gateway that a floating IP needs cannot be removed (409);
* an extra route's next hop must lie on one of the router's subnets, and not be the
  router's own address (400 ``InvalidRoutes``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import Select, exists, select
from sqlalchemy.orm import selectinload

from stratus.core.db import utcnow
from stratus.core.db.paging import Page
from stratus.core.policy import Caller
from stratus.network import filters as flt
from stratus.network import ipam
from stratus.network.common import UNSET, Unset, given, new_id, touch
from stratus.network.errors import NetworkNotFound
from stratus.network.l3_agents import L3Agents
from stratus.network.l3_errors import (
    BadRequest,
    InvalidRoutes,
    PortInUse,
    RouterExternalGatewayInUseByFloatingIp,
    RouterInterfaceInUseByFloatingIP,
    RouterInterfaceInUseByRoute,
    RouterInterfaceNotFound,
    RouterInterfaceNotFoundForSubnet,
    RouterInUse,
    RouterNotFound,
)
from stratus.network.l3_ports import L3Ports, Wanted
from stratus.network.models import (
    FloatingIP,
    IPAllocation,
    Network,
    Port,
    Router,
    RouterRoute,
    Subnet,
)
from stratus.network.networks import Networks
from stratus.network.objects import ROUTER_GATEWAY_OWNER, ROUTER_INTERFACE_OWNER, HostRoute
from stratus.network.part import Part
from stratus.network.ports import FixedIpRequest, Ports
from stratus.network.quotas import Quotas
from stratus.network.subnets import Subnets

#: How routers filter and sort (``filters``).
ATTRIBUTES = flt.Attributes(
    filters={
        "id": flt.text(Router.id), "name": flt.text(Router.name),
        "status": flt.text(Router.status), "admin_state_up": flt.boolean(Router.admin_state_up),
        "external_gateway_info": flt.nothing, "routes": flt.nothing,
        "availability_zone_hints": flt.json_list(Router.availability_zone_hints),
        "availability_zones": flt.nothing, **flt.standard(Router)},
    sort={"id": Router.id, "name": Router.name, "status": Router.status,
          "admin_state_up": Router.admin_state_up, **flt.standard_sort(Router)},
    default_sort=flt.BY_CREATION, id_column=Router.id, tags=Router.tags)


@dataclass(frozen=True)
class GatewayRequest:
    """``external_gateway_info``: the external network, SNAT (None: on, or as it was),
    and the addresses the gateway should hold (None: any one)."""

    network_id: str
    enable_snat: bool | None = None
    external_fixed_ips: tuple[FixedIpRequest, ...] | None = None


@dataclass(frozen=True)
class NewRouter:
    name: str = ""
    description: str = ""
    project_id: str | None = None
    admin_state_up: bool = True
    gateway: GatewayRequest | None = None
    availability_zone_hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouterUpdate:
    """Changes to a router (``UNSET``: not asked for; ``gateway=None`` clears it)."""

    COLUMNS: ClassVar[tuple[str, ...]] = ("name", "description", "admin_state_up")

    name: str | Unset = UNSET
    description: str | Unset = UNSET
    admin_state_up: bool | Unset = UNSET
    gateway: GatewayRequest | Unset | None = UNSET
    routes: tuple[HostRoute, ...] | Unset = UNSET


@dataclass(frozen=True)
class InterfaceRequest:
    """``add_router_interface`` / ``remove_router_interface``: a subnet or a port."""

    subnet_id: str | None = None
    port_id: str | None = None


@dataclass(frozen=True)
class InterfaceInfo:
    """What an interface change answers."""

    router_id: str
    project_id: str
    port_id: str
    network_id: str
    subnet_ids: tuple[str, ...]


@dataclass(frozen=True)
class RouterShown:
    """A router with what its view needs besides the row: the gateway port's network and
    addresses."""

    router: Router
    gateway_network_id: str | None
    gateway_ips: tuple[tuple[str, str], ...]  # (subnet_id, ip_address)


def _as_route(route: HostRoute) -> dict[str, str]:
    return {"destination": route.destination, "nexthop": route.nexthop}


@dataclass
class Routers(Part):
    """The routers of one transaction."""

    networks: Networks
    subnets: Subnets
    ports: Ports
    l3_ports: L3Ports
    agents: L3Agents
    quotas: Quotas

    # Reading -----------------------------------------------------------------------------

    def _visible(self, caller: Caller) -> Select[Router]:
        query = select(Router)
        if not caller.is_admin:
            query = query.where(Router.project_id == caller.project_id)
        return query

    async def get_router(self, caller: Caller, router_id: str) -> Router:
        return await self._one(self._visible(caller).where(Router.id == router_id),
                               RouterNotFound(router_id))

    async def list_routers(self, caller: Caller, query: flt.ListQuery) -> Page:
        return await self._list_page(caller, ATTRIBUTES, self._visible(caller), query)

    async def shown(self, routers: Sequence[Router]) -> list[RouterShown]:
        """The routers with their gateways' networks and addresses (one query)."""
        gw_ids = [r.gw_port_id for r in routers if r.gw_port_id]
        gateways: dict[str, Port] = {}
        if gw_ids:
            gateways = {p.id: p for p in await self.session.scalars(
                select(Port).where(Port.id.in_(gw_ids)).options(selectinload(Port.fixed_ips)))}
        result = []
        for router in routers:
            port = gateways.get(router.gw_port_id or "")
            result.append(RouterShown(
                router, port.network_id if port else None,
                tuple((a.subnet_id, a.ip_address) for a in port.fixed_ips) if port else ()))
        return result

    async def interface_ports(self, router_id: str) -> list[Port]:
        return list((await self.session.scalars(select(Port).where(
            Port.device_owner == ROUTER_INTERFACE_OWNER, Port.device_id == router_id).options(
            selectinload(Port.fixed_ips)).order_by(Port.created_at, Port.id))).unique())

    # Create, update, delete ---------------------------------------------------------------

    async def create_router(self, caller: Caller, new: NewRouter) -> Router:
        project_id = new.project_id or caller.require_project()
        if project_id != caller.project_id:
            caller.authorize("admin_only")
        target = {"project_id": project_id}
        caller.authorize("create_router", target)
        if new.gateway is not None:
            self._authorize_gateway(caller, "create", target, new.gateway)
        await self.quotas.check(project_id, "router")
        now = utcnow()
        router = Router(
            id=new_id(), project_id=project_id, name=new.name, description=new.description,
            admin_state_up=new.admin_state_up, status="ACTIVE", enable_snat=True,
            gw_port_id=None, l3_agent_host="",
            availability_zone_hints=list(new.availability_zone_hints), tags=[],
            revision_number=1, created_at=now, updated_at=now)
        router.routes = []
        self.session.add(router)
        await self.session.flush()
        if new.gateway is not None:
            await self._set_gateway(caller, router, new.gateway)
        return router

    @staticmethod
    def _authorize_gateway(caller: Caller, action: str, target: dict[str, Any],
                           gateway: GatewayRequest) -> None:
        if gateway.enable_snat is not None:
            caller.authorize(f"{action}_router:external_gateway_info:enable_snat", target)
        if gateway.external_fixed_ips is not None:
            caller.authorize(f"{action}_router:external_gateway_info:external_fixed_ips",
                             target)

    async def update_router(self, caller: Caller, router_id: str,
                            change: RouterUpdate) -> Router:
        router = await self.get_router(caller, router_id)
        target = {"project_id": router.project_id}
        caller.authorize("update_router", target)
        if isinstance(change.gateway, GatewayRequest):
            self._authorize_gateway(caller, "update", target, change.gateway)
        for column, value in given(change, *RouterUpdate.COLUMNS).items():
            setattr(router, column, value)
        if change.gateway is None:
            await self._clear_gateway(router)
        elif isinstance(change.gateway, GatewayRequest):
            await self._set_gateway(caller, router, change.gateway)
        if not isinstance(change.routes, Unset):
            await self._set_routes(router, change.routes)
        touch(router)
        await self.session.flush()
        self.agents.router_changed(router)
        return router

    async def delete_router(self, caller: Caller, router_id: str) -> None:
        router = await self.get_router(caller, router_id)
        caller.authorize("delete_router", {"project_id": router.project_id})
        if await self.interface_ports(router.id):
            raise RouterInUse(router.id)
        await self._clear_gateway(router)
        self.agents.router_deleted(router)
        await self.session.delete(router)
        await self.session.flush()

    # The gateway ---------------------------------------------------------------------------

    async def _external_network(self, caller: Caller, network_id: str) -> Network:
        net = await self.session.get(Network, network_id)
        if net is None or not (caller.is_admin or net.router_external or net.shared
                               or net.project_id == caller.project_id):
            raise NetworkNotFound(network_id)
        if not net.router_external:
            raise BadRequest("router", f"Network {network_id} is not an external network")
        return net

    async def _gateway_addresses(self, net: Network,
                                 wanted: Sequence[FixedIpRequest]) -> list[Wanted]:
        subnets = list(await self.session.scalars(select(Subnet).where(
            Subnet.network_id == net.id)))
        result: list[Wanted] = []
        for item in wanted:
            subnet = None
            if item.subnet_id is not None:
                subnet = next((s for s in subnets if s.id == item.subnet_id), None)
                if subnet is None:
                    raise BadRequest("router", f"Subnet {item.subnet_id} is not on the "
                                               f"external network {net.id}")
            elif item.ip_address is not None:
                ip = ipam.parse_ip(item.ip_address, "external_fixed_ips")
                subnet = next((s for s in subnets
                               if ip in ipaddress.ip_network(s.cidr)), None)
                if subnet is None:
                    raise ipam.InvalidIpForSubnet(item.ip_address)
            if subnet is None:
                raise BadRequest("router", "Each of external_fixed_ips names a subnet_id "
                                           "or an ip_address")
            result.append((subnet, item.ip_address))
        return result

    async def _set_gateway(self, caller: Caller, router: Router,
                           gateway: GatewayRequest) -> None:
        net = await self._external_network(caller, gateway.network_id)
        current = await self.session.get(Port, router.gw_port_id) if router.gw_port_id else None
        if gateway.enable_snat is not None:
            router.enable_snat = gateway.enable_snat
        elif current is None or current.network_id != net.id:
            router.enable_snat = True
        if current is not None and current.network_id == net.id \
                and gateway.external_fixed_ips is None:
            return  # the same network and no new addresses: the port stays
        if current is not None:
            await self._release_gateway(router, current)
        host = await self.agents.schedule(router)
        wanted = (await self._gateway_addresses(net, gateway.external_fixed_ips)
                  if gateway.external_fixed_ips else None)
        port = await self.l3_ports.create(
            net, project_id="", device_owner=ROUTER_GATEWAY_OWNER, device_id=router.id,
            host=host, wanted=wanted)
        router.gw_port_id = port.id
        touch(router)
        await self.session.flush()
        self.agents.router_changed(router)

    async def _clear_gateway(self, router: Router) -> None:
        if router.gw_port_id is None:
            return
        current = await self.session.get(Port, router.gw_port_id)
        if current is not None:
            await self._release_gateway(router, current)
        router.gw_port_id = None
        router.enable_snat = True
        await self.session.flush()

    async def _release_gateway(self, router: Router, port: Port) -> None:
        used = await self.session.scalar(select(FloatingIP.id).where(
            FloatingIP.router_id == router.id,
            FloatingIP.floating_network_id == port.network_id).limit(1))
        if used is not None:
            raise RouterExternalGatewayInUseByFloatingIp(router.id, port.network_id)
        router.gw_port_id = None
        await self.session.flush()
        await self.l3_ports.delete(port.id)
        self.agents.router_changed(router)

    # Interfaces ------------------------------------------------------------------------------

    async def add_router_interface(self, caller: Caller, router_id: str,
                                   request: InterfaceRequest) -> InterfaceInfo:
        router = await self.get_router(caller, router_id)
        caller.authorize("add_router_interface", {"project_id": router.project_id})
        self._one_of(request)
        await self.txn.lock("router-interfaces", router.id)  # the overlap check must not race
        if request.port_id is not None:
            port = await self._adopt_port(caller, router, request.port_id)
        else:
            assert request.subnet_id is not None
            port = await self._port_for_subnet(caller, router, request.subnet_id)
        touch(router)
        await self.session.flush()
        self.agents.router_changed(router)
        return InterfaceInfo(router.id, router.project_id, port.id, port.network_id,
                             tuple(a.subnet_id for a in port.fixed_ips))

    @staticmethod
    def _one_of(request: InterfaceRequest) -> None:
        if request.port_id is not None and request.subnet_id is not None:
            raise BadRequest("router", "Cannot specify both subnet-id and port-id")
        if request.port_id is None and request.subnet_id is None:
            raise BadRequest("router", "Either subnet_id or port_id must be specified")

    async def _check_new_subnets(self, router: Router, subnets: Sequence[Subnet]) -> None:
        """A subnet may join the router once, and not overlap one it already has."""
        held = await self._interface_subnets(router.id)
        for subnet in subnets:
            cidr = ipaddress.ip_network(subnet.cidr)
            for other in held:
                if other.id == subnet.id:
                    raise BadRequest("router", f"Router already has a port on subnet "
                                               f"{subnet.id}")
                if ipaddress.ip_network(other.cidr).overlaps(cidr):
                    raise BadRequest("router", f"Cidr {subnet.cidr} of subnet {subnet.id} "
                                               f"overlaps with cidr {other.cidr} of subnet "
                                               f"{other.id}")

    async def _interface_subnets(self, router_id: str) -> list[Subnet]:
        return list(await self.session.scalars(select(Subnet).join(
            IPAllocation, IPAllocation.subnet_id == Subnet.id).join(
            Port, Port.id == IPAllocation.port_id).where(
            Port.device_owner == ROUTER_INTERFACE_OWNER, Port.device_id == router_id)))

    async def _port_for_subnet(self, caller: Caller, router: Router, subnet_id: str) -> Port:
        subnet = await self.subnets.get_subnet(caller, subnet_id)
        if subnet.gateway_ip is None:
            raise BadRequest("router", "Subnet for router interface must have a gateway IP")
        await self._check_new_subnets(router, [subnet])
        net = await self.session.get(Network, subnet.network_id)
        assert net is not None
        host = await self.agents.schedule(router)
        return await self.l3_ports.create(
            net, project_id=router.project_id, device_owner=ROUTER_INTERFACE_OWNER,
            device_id=router.id, host=host, gateway_of=subnet)

    async def _adopt_port(self, caller: Caller, router: Router, port_id: str) -> Port:
        port = await self.ports.get_port(caller, port_id)
        if port.device_id or port.device_owner:
            raise PortInUse(port.network_id, port.id, port.device_id or port.device_owner)
        if not port.fixed_ips:
            raise BadRequest("router", "Router port must have at least one fixed IP")
        subnets = [s for s in await self.session.scalars(select(Subnet).where(
            Subnet.id.in_([a.subnet_id for a in port.fixed_ips])))]
        await self._check_new_subnets(router, subnets)
        host = await self.agents.schedule(router)
        port.device_id, port.device_owner = router.id, ROUTER_INTERFACE_OWNER
        port.binding_host_id = host
        port.status = "ACTIVE" if self.l3_ports.notifier.backend.wires_at_once else "DOWN"
        touch(port)
        await self.session.flush()
        port = await self.ports.load(port.id)
        await self.l3_ports.notifier.port_updated(port)
        return port

    async def remove_router_interface(self, caller: Caller, router_id: str,
                                      request: InterfaceRequest) -> InterfaceInfo:
        router = await self.get_router(caller, router_id)
        caller.authorize("remove_router_interface", {"project_id": router.project_id})
        if request.port_id is None and request.subnet_id is None:
            raise BadRequest("router", "Either subnet_id or port_id must be specified")
        interfaces = await self.interface_ports(router.id)
        if request.port_id is not None:
            port = next((p for p in interfaces if p.id == request.port_id), None)
            if port is None:
                raise RouterInterfaceNotFound(router.id, request.port_id)
            subnet_ids = [a.subnet_id for a in port.fixed_ips]
            if request.subnet_id is not None and request.subnet_id not in subnet_ids:
                raise RouterInterfaceNotFoundForSubnet(router.id, request.subnet_id)
        else:
            assert request.subnet_id is not None
            port = next((p for p in interfaces
                         if any(a.subnet_id == request.subnet_id for a in p.fixed_ips)), None)
            if port is None:
                raise RouterInterfaceNotFoundForSubnet(router.id, request.subnet_id)
            subnet_ids = [request.subnet_id]
        for subnet_id in subnet_ids:
            await self._check_unused(router, subnet_id, port)
        info = InterfaceInfo(router.id, router.project_id, port.id, port.network_id,
                             tuple(subnet_ids))
        if len(subnet_ids) < len(port.fixed_ips):  # by subnet, from a port of several
            keep = [(a.subnet_id, a.ip_address) for a in port.fixed_ips
                    if a.subnet_id not in subnet_ids]
            await self.l3_ports.ipam.release(port.id, keep)
            touch(port)
            await self.session.flush()
            await self.l3_ports.notifier.port_updated(await self.ports.load(port.id))
        else:
            await self.l3_ports.delete(port.id)
        touch(router)
        await self.session.flush()
        self.agents.router_changed(router)
        return info

    async def _check_unused(self, router: Router, subnet_id: str, port: Port) -> None:
        """An interface that a floating IP or an extra route needs stays."""
        subnet = await self.session.get(Subnet, subnet_id)
        assert subnet is not None
        needed = await self.session.scalar(select(exists().where(
            FloatingIP.router_id == router.id, FloatingIP.fixed_port_id.in_(
                select(IPAllocation.port_id).where(IPAllocation.subnet_id == subnet_id)))))
        if needed:
            raise RouterInterfaceInUseByFloatingIP(router.id, subnet_id)
        cidr = ipaddress.ip_network(subnet.cidr)
        for route in router.routes:
            if ipaddress.ip_address(route.nexthop) in cidr:
                raise RouterInterfaceInUseByRoute(router.id, subnet_id)

    # Extra routes --------------------------------------------------------------------------

    async def _set_routes(self, router: Router, routes: Sequence[HostRoute]) -> None:
        shown = [_as_route(r) for r in routes]
        connected: list[ipam.IPNetwork] = []
        own: set[str] = set()
        legs = await self.interface_ports(router.id)
        if router.gw_port_id:
            gw = await self.ports.load(router.gw_port_id)
            legs.append(gw)
        for leg in legs:
            for address in leg.fixed_ips:
                own.add(address.ip_address)
                subnet = await self.session.get(Subnet, address.subnet_id)
                if subnet is not None:
                    connected.append(ipaddress.ip_network(subnet.cidr))
        wanted: list[tuple[str, str]] = []
        for route in routes:
            try:
                destination = str(ipaddress.ip_network(route.destination))
            except ValueError as exc:
                raise InvalidRoutes(str(shown), f"'{route.destination}' is not a valid "
                                                "CIDR") from exc
            nexthop = ipam.parse_ip(route.nexthop, "routes")
            if not any(nexthop in net for net in connected):
                raise InvalidRoutes(str(shown), "the nexthop is not connected with router")
            if str(nexthop) in own:
                raise InvalidRoutes(str(shown), "the nexthop is used by router")
            pair = (destination, str(nexthop))
            if pair not in wanted:
                wanted.append(pair)
        router.routes = [RouterRoute(router_id=router.id, destination=d, nexthop=n,
                                     position=i) for i, (d, n) in enumerate(wanted)]

