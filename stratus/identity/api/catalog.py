"""``/v3/regions``, ``/v3/services`` and ``/v3/endpoints``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from stratus.identity.api import views
from stratus.identity.api.common import split_known, text
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

Q = Annotated[str | None, Query()]


@router.get("/regions")
async def list_regions(svc: Service, authorize: Authorize, base: BaseURL,
                       parent_region_id: Q = None) -> dict[str, Any]:
    authorize("identity:list_regions")
    regions = await svc.catalog.list_regions(parent_region_id=parent_region_id)
    return views.collection("regions", [views.region(r, base) for r in regions], base, "regions")


@router.post("/regions", status_code=201)
async def create_region(body: RegionCreateBody, svc: Service, authorize: Authorize,
                        base: BaseURL) -> dict[str, Any]:
    authorize("identity:create_region")
    r = body.region
    _, extra = split_known(r.changes(), ("id", "description", "parent_region_id"))
    region = await svc.catalog.create_region(region_id=r.id, description=text(r.description),
                                             parent_region_id=r.parent_region_id, extra=extra)
    return {"region": views.region(region, base)}


@router.put("/regions/{region_id}", status_code=201)
async def create_region_with_id(region_id: str, body: RegionCreateBody, svc: Service,
                                authorize: Authorize, base: BaseURL) -> dict[str, Any]:
    authorize("identity:create_region")
    r = body.region
    _, extra = split_known(r.changes(), ("id", "description", "parent_region_id"))
    region = await svc.catalog.create_region(region_id=region_id, description=text(r.description),
                                             parent_region_id=r.parent_region_id, extra=extra)
    return {"region": views.region(region, base)}


@router.get("/regions/{region_id}")
async def get_region(region_id: str, svc: Service, authorize: Authorize,
                     base: BaseURL) -> dict[str, Any]:
    authorize("identity:get_region")
    return {"region": views.region(await svc.catalog.get_region(region_id), base)}


@router.patch("/regions/{region_id}")
async def update_region(region_id: str, body: RegionUpdateBody, svc: Service,
                        authorize: Authorize, base: BaseURL) -> dict[str, Any]:
    authorize("identity:update_region")
    changes = body.region.changes()
    if "description" in changes:
        changes["description"] = text(changes["description"])
    return {"region": views.region(await svc.catalog.update_region(region_id, changes), base)}


@router.delete("/regions/{region_id}", status_code=204)
async def delete_region(region_id: str, svc: Service, authorize: Authorize) -> Response:
    authorize("identity:delete_region")
    await svc.catalog.delete_region(region_id)
    return Response(status_code=204)


@router.get("/services")
async def list_services(svc: Service, authorize: Authorize, base: BaseURL, type: Q = None,
                        name: Q = None) -> dict[str, Any]:
    authorize("identity:list_services")
    services = await svc.catalog.list_services(type=type, name=name)
    return views.collection("services", [views.service(s, base) for s in services],
                            base, "services")


@router.post("/services", status_code=201)
async def create_service(body: ServiceCreateBody, svc: Service, authorize: Authorize,
                         base: BaseURL) -> dict[str, Any]:
    authorize("identity:create_service")
    s = body.service
    _, extra = split_known(s.changes(), ("type", "name", "description", "enabled"))
    service = await svc.catalog.create_service(type=s.type, name=text(s.name),
                                               description=text(s.description),
                                               enabled=s.enabled, extra=extra)
    return {"service": views.service(service, base)}


@router.get("/services/{service_id}")
async def get_service(service_id: str, svc: Service, authorize: Authorize,
                      base: BaseURL) -> dict[str, Any]:
    authorize("identity:get_service")
    return {"service": views.service(await svc.catalog.get_service(service_id), base)}


@router.patch("/services/{service_id}")
async def update_service(service_id: str, body: ServiceUpdateBody, svc: Service,
                         authorize: Authorize, base: BaseURL) -> dict[str, Any]:
    authorize("identity:update_service")
    changes = body.service.changes()
    for key in ("name", "description"):
        if key in changes:
            changes[key] = text(changes[key])
    return {"service": views.service(await svc.catalog.update_service(service_id, changes), base)}


@router.delete("/services/{service_id}", status_code=204)
async def delete_service(service_id: str, svc: Service, authorize: Authorize) -> Response:
    authorize("identity:delete_service")
    await svc.catalog.delete_service(service_id)
    return Response(status_code=204)


@router.get("/endpoints")
async def list_endpoints(svc: Service, authorize: Authorize, base: BaseURL,
                         service_id: Q = None, interface: Q = None,
                         region_id: Q = None) -> dict[str, Any]:
    authorize("identity:list_endpoints")
    endpoints = await svc.catalog.list_endpoints(service_id=service_id, interface=interface,
                                                 region_id=region_id)
    return views.collection("endpoints", [views.endpoint(e, base) for e in endpoints],
                            base, "endpoints")


@router.post("/endpoints", status_code=201)
async def create_endpoint(body: EndpointCreateBody, svc: Service, authorize: Authorize,
                          base: BaseURL) -> dict[str, Any]:
    authorize("identity:create_endpoint")
    e = body.endpoint
    _, extra = split_known(e.changes(), ("service_id", "interface", "url", "region_id",
                                         "region", "enabled"))
    endpoint = await svc.catalog.create_endpoint(
        service_id=e.service_id, interface=e.interface, url=e.url,
        region_id=e.region_id or e.region, enabled=e.enabled, extra=extra)
    return {"endpoint": views.endpoint(endpoint, base)}


@router.get("/endpoints/{endpoint_id}")
async def get_endpoint(endpoint_id: str, svc: Service, authorize: Authorize,
                       base: BaseURL) -> dict[str, Any]:
    authorize("identity:get_endpoint")
    return {"endpoint": views.endpoint(await svc.catalog.get_endpoint(endpoint_id), base)}


@router.patch("/endpoints/{endpoint_id}")
async def update_endpoint(endpoint_id: str, body: EndpointUpdateBody, svc: Service,
                          authorize: Authorize, base: BaseURL) -> dict[str, Any]:
    authorize("identity:update_endpoint")
    changes = body.endpoint.changes()
    if "region" in changes:
        changes.setdefault("region_id", changes.pop("region"))
    return {"endpoint": views.endpoint(await svc.catalog.update_endpoint(endpoint_id, changes),
                                       base)}


@router.delete("/endpoints/{endpoint_id}", status_code=204)
async def delete_endpoint(endpoint_id: str, svc: Service, authorize: Authorize) -> Response:
    authorize("identity:delete_endpoint")
    await svc.catalog.delete_endpoint(endpoint_id)
    return Response(status_code=204)
