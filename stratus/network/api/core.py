"""``/v2.0/networks``, ``/v2.0/subnets``, ``/v2.0/ports``: list, show, create (single or
bulk), update, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from stratus.network.api import listing, views
from stratus.network.api.deps import (
    CallerDep,
    Service,
    WriteService,
    collection_url,
    single_or_bulk,
    update_body,
)
from stratus.network.caller import Caller
from stratus.network.service import NetworkService

router = APIRouter(prefix="/v2.0")

_STD = {"name": "str", "description": "str", "project_id": "str", "tenant_id": "str"}

NETWORK_CREATE = {**_STD, "admin_state_up": "bool", "shared": "bool", "mtu": "int",
                  "router:external": "bool", "port_security_enabled": "bool",
                  "availability_zone_hints": "list", "provider:network_type": "str",
                  "provider:physical_network": "str?", "provider:segmentation_id": "int?",
                  "dns_domain": "str", "qos_policy_id": "str?", "is_default": "bool"}
NETWORK_UPDATE = {k: v for k, v in NETWORK_CREATE.items()
                  if k not in ("project_id", "tenant_id", "availability_zone_hints")}
SUBNET_CREATE = {**_STD, "network_id": "str", "cidr": "str", "ip_version": "int",
                 "gateway_ip": "str?", "allocation_pools": "list", "dns_nameservers": "list",
                 "host_routes": "list", "enable_dhcp": "bool", "subnetpool_id": "str?",
                 "ipv6_ra_mode": "str?", "ipv6_address_mode": "str?", "prefixlen": "int",
                 "segment_id": "str?", "service_types": "list", "use_default_subnetpool": "bool"}
SUBNET_UPDATE = {k: v for k, v in SUBNET_CREATE.items()
                 if k in ("name", "description", "gateway_ip", "allocation_pools",
                          "dns_nameservers", "host_routes", "enable_dhcp", "service_types")}
PORT_CREATE = {**_STD, "network_id": "str", "admin_state_up": "bool", "mac_address": "str",
               "fixed_ips": "list", "device_id": "str", "device_owner": "str",
               "security_groups": "list?", "port_security_enabled": "bool",
               "dns_name": "str", "binding:host_id": "str?", "binding:vnic_type": "str",
               "binding:profile": "dict?", "allowed_address_pairs": "list",
               "extra_dhcp_opts": "list", "qos_policy_id": "str?"}
PORT_UPDATE = {k: v for k, v in PORT_CREATE.items()
               if k not in ("network_id", "project_id", "tenant_id")}

NETWORK_COLUMNS = {"id": "id", "name": "name", "project_id": "project_id",
                   "tenant_id": "project_id"}
SUBNET_COLUMNS = {"id": "id", "name": "name", "network_id": "network_id",
                  "project_id": "project_id", "tenant_id": "project_id", "cidr": "cidr"}
PORT_COLUMNS = {"id": "id", "name": "name", "network_id": "network_id",
                "device_id": "device_id", "device_owner": "device_owner",
                "mac_address": "mac_address", "project_id": "project_id",
                "tenant_id": "project_id", "binding:host_id": "binding_host_id"}


def _unsupported(attrs: dict[str, Any], names: dict[str, Any]) -> dict[str, Any]:
    """Attributes accepted for compatibility but with no effect unless given their
    default (``None``/empty): anything else is refused rather than silently ignored."""
    from stratus.network.errors import InvalidInput

    for name, default in names.items():
        if name in attrs:
            value = attrs.pop(name)
            if value not in (default, None, [], ""):
                raise InvalidInput(f"Invalid input: '{name}' is not supported by this cloud.")
    return attrs


def _created(key: str, items: list[dict[str, Any]], bulk: bool) -> JSONResponse:
    if bulk:
        return JSONResponse({f"{key}s": items}, status_code=201)
    return JSONResponse({key: items[0]}, status_code=201)


# Networks ---------------------------------------------------------------------------------


def _network_view(svc: NetworkService, caller: Caller, net: Any) -> dict[str, Any]:
    return views.network(net, caller)


@router.get("/networks")
async def list_networks(request: Request, svc: Service, caller: CallerDep) -> JSONResponse:
    query = listing.parse(request.query_params)
    nets = await svc.networks.list_networks(caller, query.pushdown(NETWORK_COLUMNS))
    items = [_network_view(svc, caller, n) for n in nets]
    return JSONResponse(listing.apply(items, query, collection="networks",
                                      url=collection_url(request)))


@router.get("/networks/{network_id}")
async def show_network(network_id: str, request: Request, svc: Service,
                       caller: CallerDep) -> JSONResponse:
    net = await svc.networks.get_network(caller, network_id)
    fields = listing.parse(request.query_params).fields
    return JSONResponse({"network": listing.cut(_network_view(svc, caller, net), fields)})


@router.post("/networks")
async def create_networks(request: Request, svc: WriteService, caller: CallerDep) -> JSONResponse:
    items, bulk = await single_or_bulk(request, "network", "networks", NETWORK_CREATE)
    created = []
    for attrs in items:
        attrs = _unsupported(attrs, {"dns_domain": "", "qos_policy_id": None,
                                     "is_default": False})
        net = await svc.networks.create_network(caller, attrs)
        created.append(_network_view(svc, caller, net))
    return _created("network", created, bulk)


@router.put("/networks/{network_id}")
async def update_network(network_id: str, request: Request, svc: WriteService,
                         caller: CallerDep) -> JSONResponse:
    attrs = _unsupported(await update_body(request, "network", NETWORK_UPDATE),
                         {"dns_domain": "", "qos_policy_id": None, "is_default": False})
    net = await svc.networks.update_network(caller, network_id, attrs)
    return JSONResponse({"network": _network_view(svc, caller, net)})


@router.delete("/networks/{network_id}", status_code=204)
async def delete_network(network_id: str, svc: WriteService, caller: CallerDep) -> Response:
    await svc.networks.delete_network(caller, network_id)
    return Response(status_code=204)


# Subnets ----------------------------------------------------------------------------------


@router.get("/subnets")
async def list_subnets(request: Request, svc: Service, caller: CallerDep) -> JSONResponse:
    query = listing.parse(request.query_params)
    subnets = await svc.subnets.list_subnets(caller, query.pushdown(SUBNET_COLUMNS))
    return JSONResponse(listing.apply([views.subnet(s) for s in subnets], query,
                                      collection="subnets", url=collection_url(request)))


@router.get("/subnets/{subnet_id}")
async def show_subnet(subnet_id: str, request: Request, svc: Service,
                      caller: CallerDep) -> JSONResponse:
    subnet = await svc.subnets.get_subnet(caller, subnet_id)
    fields = listing.parse(request.query_params).fields
    return JSONResponse({"subnet": listing.cut(views.subnet(subnet), fields)})


_SUBNET_UNSUPPORTED: dict[str, Any] = {
    "subnetpool_id": None, "ipv6_ra_mode": None, "ipv6_address_mode": None,
                       "prefixlen": None, "segment_id": None, "service_types": [],
                       "use_default_subnetpool": False}


@router.post("/subnets")
async def create_subnets(request: Request, svc: WriteService, caller: CallerDep) -> JSONResponse:
    items, bulk = await single_or_bulk(request, "subnet", "subnets", SUBNET_CREATE)
    created = []
    for attrs in items:
        attrs = _unsupported(attrs, _SUBNET_UNSUPPORTED)
        created.append(views.subnet(await svc.subnets.create_subnet(caller, attrs)))
    return _created("subnet", created, bulk)


@router.put("/subnets/{subnet_id}")
async def update_subnet(subnet_id: str, request: Request, svc: WriteService,
                        caller: CallerDep) -> JSONResponse:
    attrs = _unsupported(await update_body(request, "subnet", SUBNET_UPDATE),
                         {"service_types": []})
    return JSONResponse({"subnet": views.subnet(await svc.subnets.update_subnet(caller, subnet_id,
                                                                        attrs))})


@router.delete("/subnets/{subnet_id}", status_code=204)
async def delete_subnet(subnet_id: str, svc: WriteService, caller: CallerDep) -> Response:
    await svc.subnets.delete_subnet(caller, subnet_id)
    return Response(status_code=204)


# Ports ------------------------------------------------------------------------------------

_PORT_UNSUPPORTED: dict[str, Any] = {"allowed_address_pairs": [], "extra_dhcp_opts": [],
                                     "qos_policy_id": None}


def _port_view(svc: NetworkService, caller: Caller, port: Any) -> dict[str, Any]:
    return views.port(port, caller, svc.backend.bound_vif_type)


@router.get("/ports")
async def list_ports(request: Request, svc: Service, caller: CallerDep) -> JSONResponse:
    query = listing.parse(request.query_params)
    ports = await svc.ports.list_ports(caller, query.pushdown(PORT_COLUMNS))
    return JSONResponse(listing.apply([_port_view(svc, caller, p) for p in ports], query,
                                      collection="ports", url=collection_url(request)))


@router.get("/ports/{port_id}")
async def show_port(port_id: str, request: Request, svc: Service,
                    caller: CallerDep) -> JSONResponse:
    port = await svc.ports.get_port(caller, port_id)
    fields = listing.parse(request.query_params).fields
    return JSONResponse({"port": listing.cut(_port_view(svc, caller, port), fields)})


@router.post("/ports")
async def create_ports(request: Request, svc: WriteService, caller: CallerDep) -> JSONResponse:
    items, bulk = await single_or_bulk(request, "port", "ports", PORT_CREATE)
    created = []
    for attrs in items:
        attrs = _unsupported(attrs, _PORT_UNSUPPORTED)
        created.append(_port_view(svc, caller, await svc.ports.create_port(caller, attrs)))
    return _created("port", created, bulk)


@router.put("/ports/{port_id}")
async def update_port(port_id: str, request: Request, svc: WriteService,
                      caller: CallerDep) -> JSONResponse:
    attrs = _unsupported(await update_body(request, "port", PORT_UPDATE), _PORT_UNSUPPORTED)
    port = await svc.ports.update_port(caller, port_id, attrs)
    return JSONResponse({"port": _port_view(svc, caller, port)})


@router.delete("/ports/{port_id}", status_code=204)
async def delete_port(port_id: str, svc: WriteService, caller: CallerDep) -> Response:
    await svc.ports.delete_port(caller, port_id)
    return Response(status_code=204)
