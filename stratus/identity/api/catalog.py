"""``/v3/regions``, ``/v3/services`` and ``/v3/endpoints``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stratus.identity.api import schemas, views
from stratus.identity.api.crud import Resource, add_routes
from stratus.identity.api.deps import BaseURL, CallerDep, Service

router = APIRouter(prefix="/v3")

for _resource in (
    Resource("region", "regions", "catalog", views.region, schemas.RegionUpdateBody,
             schemas.RegionCreateBody, filters=("parent_region_id",)),
    Resource("service", "services", "catalog", views.service, schemas.ServiceUpdateBody,
             schemas.ServiceCreateBody, filters=("type", "name")),
    Resource("endpoint", "endpoints", "catalog", views.endpoint, schemas.EndpointUpdateBody,
             schemas.EndpointCreateBody, filters=("service_id", "interface", "region_id")),
):
    add_routes(router, _resource)


@router.put("/regions/{region_id}", status_code=201)
async def create_region_with_id(region_id: str, body: schemas.RegionCreateBody, svc: Service,
                                caller: CallerDep, base: BaseURL) -> dict[str, Any]:
    """Keystone's other way to create a region: the id in the path, not the body."""
    caller.authorize("identity:create_region")
    args = {**body.region.create_args(None), "region_id": region_id}
    return {"region": views.region(await svc.catalog.create_region(**args), base)}
