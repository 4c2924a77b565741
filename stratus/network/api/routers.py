"""``/v2.0/routers``: the standard routes (``resources.add_routes``), and
``PUT /v2.0/routers/{id}/add_router_interface`` / ``remove_router_interface`` with
``{"subnet_id"}`` or ``{"port_id"}``. Bodies and views are here; the rules in
``stratus.network.routers``."""

from __future__ import annotations

from typing import Annotated, Any, Self

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field, model_validator

from stratus.core.policy import Caller
from stratus.core.web import openapi
from stratus.network.api.bodies import json_body
from stratus.network.api.deps import CallerDep, WriteService
from stratus.network.api.resources import Collection, add_routes
from stratus.network.api.schemas import (
    Body,
    Bool,
    FixedIpBody,
    Owned,
    RouteBody,
    Str,
    StrList,
    parse,
)
from stratus.network.api.views import stamp
from stratus.network.common import UNSET
from stratus.network.errors import InvalidInput
from stratus.network.objects import HostRoute
from stratus.network.routers import (
    GatewayRequest,
    InterfaceInfo,
    InterfaceRequest,
    NewRouter,
    RouterShown,
    RouterUpdate,
)
from stratus.network.service import NetworkService

router = APIRouter(prefix="/v2.0")


# Bodies ------------------------------------------------------------------------------------


class GatewayBody(Body):
    """``external_gateway_info``; ``{}`` (no ``network_id``) means no gateway."""

    network_id: Str = ""
    enable_snat: Bool | None = None
    external_fixed_ips: Annotated[list[FixedIpBody], Field(strict=True)] | None = None

    @model_validator(mode="after")
    def _network_named(self) -> Self:
        if not self.network_id and self.model_fields_set - {"network_id"}:
            raise InvalidInput("Invalid input for external_gateway_info: network_id is "
                               "required.")
        return self

    def request(self) -> GatewayRequest | None:
        if not self.network_id:
            return None
        return GatewayRequest(
            network_id=self.network_id, enable_snat=self.enable_snat,
            external_fixed_ips=None if self.external_fixed_ips is None
            else tuple(f.request() for f in self.external_fixed_ips))


class _RouterAttrs(Body):
    UNSUPPORTED = {"distributed": False, "ha": False, "flavor_id": None}

    name: Str = ""
    description: Str = ""
    admin_state_up: Bool = True
    external_gateway_info: GatewayBody | None = None
    distributed: Bool = False
    ha: Bool = False
    flavor_id: Str | None = None

    def gateway(self) -> GatewayRequest | None:
        info = self.external_gateway_info
        return None if info is None else info.request()


class RouterBody(_RouterAttrs, Owned):
    availability_zone_hints: StrList = []

    def command(self) -> NewRouter:
        return NewRouter(name=self.name, description=self.description, project_id=self.owner,
                         admin_state_up=self.admin_state_up, gateway=self.gateway(),
                         availability_zone_hints=tuple(self.availability_zone_hints))


class RouterUpdateBody(_RouterAttrs):
    routes: Annotated[list[RouteBody], Field(strict=True)] | None = None

    def command(self) -> RouterUpdate:
        named = self.model_fields_set
        return RouterUpdate(
            name=self.given("name"), description=self.given("description"),
            admin_state_up=self.given("admin_state_up"),
            gateway=self.gateway() if "external_gateway_info" in named else UNSET,
            routes=tuple(HostRoute(destination=r.destination, nexthop=r.nexthop)
                         for r in self.routes or ()) if "routes" in named else UNSET)


class InterfaceBody(Body):
    subnet_id: Str | None = None
    port_id: Str | None = None

    def command(self) -> InterfaceRequest:
        return InterfaceRequest(subnet_id=self.subnet_id or None, port_id=self.port_id or None)


# Views -------------------------------------------------------------------------------------


def router_view(shown: RouterShown) -> dict[str, Any]:
    r = shown.router
    gateway = None
    if shown.gateway_network_id is not None:
        gateway = {"network_id": shown.gateway_network_id, "enable_snat": r.enable_snat,
                   "external_fixed_ips": [{"subnet_id": s, "ip_address": ip}
                                          for s, ip in shown.gateway_ips]}
    return {
        "id": r.id, "name": r.name, "admin_state_up": r.admin_state_up, "status": r.status,
        "external_gateway_info": gateway,
        "routes": [{"destination": x.destination, "nexthop": x.nexthop} for x in r.routes],
        "availability_zone_hints": list(r.availability_zone_hints or []),
        "availability_zones": ["nova"] if r.l3_agent_host else [],
        "tenant_id": r.project_id, "project_id": r.project_id, "description": r.description,
        "tags": list(r.tags or []), "created_at": stamp(r.created_at),
        "updated_at": stamp(r.updated_at), "revision_number": r.revision_number,
    }


async def router_views(svc: NetworkService, caller: Caller,
                       routers: list[Any]) -> list[dict[str, Any]]:
    return [router_view(s) for s in await svc.routers.shown(routers)]


def interface_view(info: InterfaceInfo) -> dict[str, Any]:
    return {"id": info.router_id, "tenant_id": info.project_id,
            "project_id": info.project_id, "port_id": info.port_id,
            "network_id": info.network_id,
            "subnet_id": info.subnet_ids[0] if info.subnet_ids else None,
            "subnet_ids": list(info.subnet_ids)}


# Routes ------------------------------------------------------------------------------------

COLLECTION = Collection("router", "routers", lambda svc: svc.routers, router_views,
                        create=RouterBody, update=RouterUpdateBody)
add_routes(router, COLLECTION)


_INTERFACE_BODY = openapi.request_body(openapi.model_schema(InterfaceBody))


async def _interface_body(request: Request) -> InterfaceRequest:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise InvalidInput("Invalid input: the body must be an object naming subnet_id or "
                           "port_id.")
    return parse(InterfaceBody, body, "router").command()


@router.put("/routers/{router_id}/add_router_interface", openapi_extra=_INTERFACE_BODY)
async def add_router_interface(router_id: str, request: Request, svc: WriteService,
                               caller: CallerDep) -> JSONResponse:
    wanted = await _interface_body(request)
    return JSONResponse(interface_view(
        await svc.routers.add_router_interface(caller, router_id, wanted)))


@router.put("/routers/{router_id}/remove_router_interface", openapi_extra=_INTERFACE_BODY)
async def remove_router_interface(router_id: str, request: Request, svc: WriteService,
                                  caller: CallerDep) -> JSONResponse:
    wanted = await _interface_body(request)
    return JSONResponse(interface_view(
        await svc.routers.remove_router_interface(caller, router_id, wanted)))
