"""``/flavors``: sizes, their extra specs, and who may use a private one."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from stratus.compute.api import views
from stratus.compute.api.deps import CallerDep, Context, Service, URLs, Version
from stratus.compute.api.schemas import (
    ExtraSpecsBody,
    FlavorActionBody,
    FlavorCreateBody,
    FlavorUpdateBody,
)
from stratus.compute.flavors import Flavor, FlavorQuery
from stratus.core.exceptions import BadRequest, NotFound, ValidationError
from stratus.core.web import listing, params
from stratus.core.web.listing import ListRequest, ListSpec

router = APIRouter(prefix="/v2.1/flavors")

Q = Annotated[str | None, Query()]


#: Nova's ``is_public`` words ("none", every flavor the caller may see, is read first).
IS_PUBLIC = dataclasses.replace(params.NOVA, strip=True, error=ValidationError,
                                bool_message=lambda _, value: f"Invalid is_public filter [{value}]")
COUNTS = params.NOVA.raising(ValidationError)
FLAVORS = ListSpec("flavors")


def _is_public(value: str | None) -> bool | None:
    """Nova's ``is_public`` filter: true (the default), false, or "none" (all visible)."""
    if value is None:
        return True
    return None if value.strip().lower() == "none" else IS_PUBLIC.boolean("is_public", value)


async def flavor_query(is_public: Q = None,
                 min_ram: Annotated[str | None, Query(alias="minRam")] = None,
                 min_disk: Annotated[str | None, Query(alias="minDisk")] = None,
                 sort_key: Q = None, sort_dir: Q = None, limit: Q = None,
                 marker: Q = None) -> FlavorQuery:
    """A flavor list's query string, parsed as Nova does."""
    return FlavorQuery(is_public=_is_public(is_public),
                       min_ram=COUNTS.optional_integer("minRam", min_ram),
                       min_disk=COUNTS.optional_integer("minDisk", min_disk),
                       sort_key=sort_key or "flavorid", sort_dir=sort_dir or "asc",
                       limit=COUNTS.optional_integer("limit", limit), marker=marker)


ListQuery = Annotated[FlavorQuery, Depends(flavor_query)]


async def _listing(request: Request, svc: Service, context: Context, caller: CallerDep,
                   query: ListQuery, urls: URLs, path: str,
                   view: Callable[[Flavor], dict[str, Any]]) -> dict[str, Any]:
    caller.authorize("os_compute_api:flavors:list")
    flavors = await svc.flavors.list_flavors(query, project_id=context.project_id,
                                             admin=context.is_admin)
    body: dict[str, Any] = {"flavors": [view(f) for f in flavors]}
    # Nova links the next page whenever this one is full.
    full = query.limit is not None and flavors and len(flavors) >= query.limit
    return body | listing.NOVA.links(
        ListRequest(query=tuple(request.query_params.multi_items())), FLAVORS, urls.url(path),
        next_marker=flavors[-1].id if full else None)


@router.get("")
async def list_flavors(request: Request, svc: Service, context: Context, caller: CallerDep,
                       urls: URLs, version: Version, query: ListQuery) -> dict[str, Any]:
    return await _listing(request, svc, context, caller, query, urls, "flavors",
                          lambda f: views.flavor_brief(f, urls, version))


@router.get("/detail")
async def list_flavors_detail(request: Request, svc: Service, context: Context,
                              caller: CallerDep, urls: URLs, version: Version,
                              query: ListQuery) -> dict[str, Any]:
    specs = caller.check("os_compute_api:os-flavor-extra-specs:index")
    return await _listing(request, svc, context, caller, query, urls, "flavors/detail",
                          lambda f: views.flavor(f, urls, version, extra_specs=specs))


@router.get("/{flavor_id}")
async def show_flavor(flavor_id: str, svc: Service, context: Context, caller: CallerDep,
                      urls: URLs, version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:flavors:show")
    flavor = await svc.flavors.get(flavor_id, project_id=context.project_id,
                                   admin=context.is_admin)
    specs = caller.check("os_compute_api:os-flavor-extra-specs:index")
    return {"flavor": views.flavor(flavor, urls, version, extra_specs=specs)}


@router.post("")
async def create_flavor(body: FlavorCreateBody, svc: Service, caller: CallerDep,
                        urls: URLs, version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-flavor-manage:create")
    f = body.flavor
    if f.description is not None and not version.at_least("2.55"):
        raise BadRequest("Invalid input for field 'description': flavor descriptions need "
                         "microversion 2.55 or later.")
    flavor = await svc.flavors.create(
        name=f.name, vcpus=f.vcpus, ram=f.ram, disk=f.disk, flavor_id=f.id, swap=f.swap,
        ephemeral=f.ephemeral, rxtx_factor=f.rxtx_factor, is_public=f.is_public,
        description=f.description)
    return {"flavor": views.flavor(flavor, urls, version, extra_specs=True)}


@router.put("/{flavor_id}")
async def update_flavor(flavor_id: str, body: FlavorUpdateBody, svc: Service,
                        caller: CallerDep, urls: URLs, version: Version) -> dict[str, Any]:
    if not version.at_least("2.55"):
        raise NotFound("The resource could not be found.")  # no such route before 2.55
    caller.authorize("os_compute_api:os-flavor-manage:update")
    flavor = await svc.flavors.update_description(flavor_id, body.flavor.description)
    return {"flavor": views.flavor(flavor, urls, version, extra_specs=True)}


@router.delete("/{flavor_id}", status_code=202)
async def delete_flavor(flavor_id: str, svc: Service, caller: CallerDep) -> Response:
    caller.authorize("os_compute_api:os-flavor-manage:delete")
    await svc.flavors.delete(flavor_id)
    return Response(status_code=202)


# Extra specs ------------------------------------------------------------------------------

@router.get("/{flavor_id}/os-extra_specs")
async def list_extra_specs(flavor_id: str, svc: Service, context: Context,
                           caller: CallerDep) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-flavor-extra-specs:index")
    flavor = await svc.flavors.get(flavor_id, project_id=context.project_id,
                                   admin=context.is_admin)
    return {"extra_specs": dict(flavor.extra_specs or {})}


@router.post("/{flavor_id}/os-extra_specs")
async def create_extra_specs(flavor_id: str, body: ExtraSpecsBody, svc: Service,
                             caller: CallerDep) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-flavor-extra-specs:create")
    return {"extra_specs": await svc.flavors.set_extra_specs(flavor_id, body.extra_specs)}


@router.get("/{flavor_id}/os-extra_specs/{key}")
async def show_extra_spec(flavor_id: str, key: str, svc: Service, context: Context,
                          caller: CallerDep) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-flavor-extra-specs:show")
    flavor = await svc.flavors.get(flavor_id, project_id=context.project_id,
                                   admin=context.is_admin)
    specs = flavor.extra_specs or {}
    if key not in specs:
        raise NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
    return {key: specs[key]}


@router.put("/{flavor_id}/os-extra_specs/{key}")
async def update_extra_spec(flavor_id: str, key: str, body: dict[str, str], svc: Service,
                            caller: CallerDep) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-flavor-extra-specs:update")
    if list(body) != [key]:
        raise BadRequest("The request body must hold exactly the key named in the URI.")
    specs = await svc.flavors.set_extra_specs(flavor_id, {key: body[key]})
    return {key: specs[key]}


@router.delete("/{flavor_id}/os-extra_specs/{key}")
async def delete_extra_spec(flavor_id: str, key: str, svc: Service,
                            caller: CallerDep) -> Response:
    caller.authorize("os_compute_api:os-flavor-extra-specs:delete")
    await svc.flavors.delete_extra_spec(flavor_id, key)
    return Response(status_code=200)


# Access to private flavors ----------------------------------------------------------------

def _access(flavor_id: str, projects: list[str]) -> dict[str, Any]:
    return {"flavor_access": [{"flavor_id": flavor_id, "tenant_id": p} for p in projects]}


@router.get("/{flavor_id}/os-flavor-access")
async def list_access(flavor_id: str, svc: Service, caller: CallerDep) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-flavor-access")
    return _access(flavor_id, await svc.flavors.access_list(flavor_id))


@router.post("/{flavor_id}/action")
async def flavor_action(flavor_id: str, body: FlavorActionBody, svc: Service,
                        caller: CallerDep) -> dict[str, Any]:
    if body.add_tenant_access is not None:
        caller.authorize("os_compute_api:os-flavor-access:add_tenant_access")
        projects = await svc.flavors.add_access(flavor_id, body.add_tenant_access.tenant)
    elif body.remove_tenant_access is not None:
        caller.authorize("os_compute_api:os-flavor-access:remove_tenant_access")
        projects = await svc.flavors.remove_access(flavor_id, body.remove_tenant_access.tenant)
    else:
        raise BadRequest("The action is not known: use addTenantAccess or "
                         "removeTenantAccess.")
    return _access(flavor_id, projects)
