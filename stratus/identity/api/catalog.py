"""``/v3/regions``, ``/v3/services`` and ``/v3/endpoints``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stratus.identity.api import views
from stratus.identity.api.common import text
from stratus.identity.api.crud import Resource, add_routes
from stratus.identity.api.deps import Authorize, BaseURL, Service
from stratus.identity.api.schemas import (
    EndpointCreateBody,
    EndpointUpdateBody,
    RegionCreateBody,
    RegionUpdateBody,
    ServiceCreateBody,
    ServiceUpdateBody,
)

router = APIRouter(prefix="/v3")

for _resource in (
    Resource("region", "regions", "catalog", views.region, RegionUpdateBody,
             filters=("parent_region_id",)),
    Resource("service", "services", "catalog", views.service, ServiceUpdateBody,
             filters=("type", "name")),
    Resource("endpoint", "endpoints", "catalog", views.endpoint, EndpointUpdateBody,
             filters=("service_id", "interface", "region_id")),
):
    add_routes(router, _resource)


async def _create_region(region_id: str | None, body: RegionCreateBody, svc: Service,
                         authorize: Authorize, base: BaseURL) -> dict[str, Any]:
    authorize("identity:create_region")
    r = body.region
    region = await svc.catalog.create_region(region_id=region_id, description=text(r.description),
                                             parent_region_id=r.parent_region_id,
                                             extra=r.extras())
    return {"region": views.region(region, base)}


@router.post("/regions", status_code=201)
async def create_region(body: RegionCreateBody, svc: Service, authorize: Authorize,
                        base: BaseURL) -> dict[str, Any]:
    return await _create_region(body.region.id, body, svc, authorize, base)


@router.put("/regions/{region_id}", status_code=201)
async def create_region_with_id(region_id: str, body: RegionCreateBody, svc: Service,
                                authorize: Authorize, base: BaseURL) -> dict[str, Any]:
    return await _create_region(region_id, body, svc, authorize, base)


@router.post("/services", status_code=201)
async def create_service(body: ServiceCreateBody, svc: Service, authorize: Authorize,
                         base: BaseURL) -> dict[str, Any]:
    authorize("identity:create_service")
    s = body.service
    service = await svc.catalog.create_service(type=s.type, name=text(s.name),
                                               description=text(s.description),
                                               enabled=s.enabled, extra=s.extras())
    return {"service": views.service(service, base)}


@router.post("/endpoints", status_code=201)
async def create_endpoint(body: EndpointCreateBody, svc: Service, authorize: Authorize,
                          base: BaseURL) -> dict[str, Any]:
    authorize("identity:create_endpoint")
    e = body.endpoint
    endpoint = await svc.catalog.create_endpoint(
        service_id=e.service_id, interface=e.interface, url=e.url,
        region_id=e.region_id or e.region, enabled=e.enabled, extra=e.extras())
    return {"endpoint": views.endpoint(endpoint, base)}
