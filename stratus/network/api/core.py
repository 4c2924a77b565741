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
from stratus.network.api.schemas import (
    NetworkBody,
    NetworkUpdateBody,
    PortBody,
    PortUpdateBody,
    SubnetBody,
    SubnetUpdateBody,
)
from stratus.network.caller import Caller
from stratus.network.service import NetworkService

router = APIRouter(prefix="/v2.0")

NETWORK_COLUMNS = {"id": "id", "name": "name", "project_id": "project_id",
                   "tenant_id": "project_id"}
SUBNET_COLUMNS = {"id": "id", "name": "name", "network_id": "network_id",
                  "project_id": "project_id", "tenant_id": "project_id", "cidr": "cidr"}
PORT_COLUMNS = {"id": "id", "name": "name", "network_id": "network_id",
                "device_id": "device_id", "device_owner": "device_owner",
                "mac_address": "mac_address", "project_id": "project_id",
                "tenant_id": "project_id", "binding:host_id": "binding_host_id"}


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
    items, bulk = await single_or_bulk(request, "network", "networks", NetworkBody)
    created = [await svc.networks.create_network(caller, item.command()) for item in items]
    return _created("network", [_network_view(svc, caller, n) for n in created], bulk)


@router.put("/networks/{network_id}")
async def update_network(network_id: str, request: Request, svc: WriteService,
                         caller: CallerDep) -> JSONResponse:
    body = await update_body(request, "network", NetworkUpdateBody)
    net = await svc.networks.update_network(caller, network_id, body.command())
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


@router.post("/subnets")
async def create_subnets(request: Request, svc: WriteService, caller: CallerDep) -> JSONResponse:
    items, bulk = await single_or_bulk(request, "subnet", "subnets", SubnetBody)
    created = [await svc.subnets.create_subnet(caller, item.command()) for item in items]
    return _created("subnet", [views.subnet(s) for s in created], bulk)


@router.put("/subnets/{subnet_id}")
async def update_subnet(subnet_id: str, request: Request, svc: WriteService,
                        caller: CallerDep) -> JSONResponse:
    body = await update_body(request, "subnet", SubnetUpdateBody)
    subnet = await svc.subnets.update_subnet(caller, subnet_id, body.command())
    return JSONResponse({"subnet": views.subnet(subnet)})


@router.delete("/subnets/{subnet_id}", status_code=204)
async def delete_subnet(subnet_id: str, svc: WriteService, caller: CallerDep) -> Response:
    await svc.subnets.delete_subnet(caller, subnet_id)
    return Response(status_code=204)


# Ports ------------------------------------------------------------------------------------

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
    items, bulk = await single_or_bulk(request, "port", "ports", PortBody)
    created = [await svc.ports.create_port(caller, item.command()) for item in items]
    return _created("port", [_port_view(svc, caller, p) for p in created], bulk)


@router.put("/ports/{port_id}")
async def update_port(port_id: str, request: Request, svc: WriteService,
                      caller: CallerDep) -> JSONResponse:
    body = await update_body(request, "port", PortUpdateBody)
    port = await svc.ports.update_port(caller, port_id, body.command())
    return JSONResponse({"port": _port_view(svc, caller, port)})


@router.delete("/ports/{port_id}", status_code=204)
async def delete_port(port_id: str, svc: WriteService, caller: CallerDep) -> Response:
    await svc.ports.delete_port(caller, port_id)
    return Response(status_code=204)
