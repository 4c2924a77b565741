"""The Placement API (``/placement``), read-only, over the scheduler's resource providers,
inventories and allocations (``placement_reads``): the version document, providers with
their inventories, usages, aggregates, traits and allocations, a consumer's allocations
and a project's usages. Admins only, as placement's default policy has it.

Its own app, not a part of the compute API: placement has its own root, error format
(``ErrorStyle.PLACEMENT``) and microversions (``OpenStack-API-Version: placement 1.x``);
a route a microversion does not have yet answers 404, as placement does.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from fastapi import APIRouter, FastAPI, Request

from stratus.compute.api.deps import CallerDep, Service, Version
from stratus.compute.placement_reads import MIN_UNIT, STEP_SIZE, Inventory, ResourceProvider
from stratus.compute.service import ComputeRuntime
from stratus.core.auth import TokenValidator
from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.web import ErrorStyle, create_app
from stratus.core.web.microversions import APIVersion, VersionRange

#: 1.14 (nested providers' fields) is the newest whose formats are all served here.
VERSIONS = VersionRange("placement", APIVersion(1, 0), APIVersion(1, 14))

router = APIRouter()


def _since(version: APIVersion, minimum: str) -> None:
    """Placement answers 404 for a route its negotiated microversion does not have."""
    if not version.at_least(minimum):
        raise NotFound("The resource could not be found.")


def _query(request: Request, allowed: set[str]) -> dict[str, str]:
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise BadRequest(f"Invalid query string parameters: {', '.join(unknown)} "
                         f"(this placement serves {', '.join(sorted(allowed)) or 'none'}).")
    return dict(request.query_params)


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise BadRequest(f"Invalid {what}: {value!r} is not a uuid.") from None


def _prefix(request: Request) -> str:
    """Placement's links are paths under the API's mount point (``/placement``)."""
    return str(request.scope.get("root_path", ""))


def provider_view(request: Request, provider: ResourceProvider,
                  version: APIVersion) -> dict[str, Any]:
    base = f"{_prefix(request)}/resource_providers/{provider.uuid}"
    links = [{"rel": "self", "href": base},
             {"rel": "inventories", "href": f"{base}/inventories"},
             {"rel": "usages", "href": f"{base}/usages"}]
    if version.at_least("1.1"):
        links.append({"rel": "aggregates", "href": f"{base}/aggregates"})
    if version.at_least("1.6"):
        links.append({"rel": "traits", "href": f"{base}/traits"})
    if version.at_least("1.11"):
        links.append({"rel": "allocations", "href": f"{base}/allocations"})
    body: dict[str, Any] = {"uuid": provider.uuid, "name": provider.name,
                            "generation": provider.generation, "links": links}
    if version.at_least("1.14"):  # every compute node is its own tree's root
        body["parent_provider_uuid"] = None
        body["root_provider_uuid"] = provider.uuid
    return body


def inventory_view(row: Inventory) -> dict[str, Any]:
    return {"total": row.total, "reserved": row.reserved, "min_unit": MIN_UNIT,
            "max_unit": row.max_unit, "step_size": STEP_SIZE,
            "allocation_ratio": row.allocation_ratio}


@router.get("/")
async def versions(request: Request) -> dict[str, Any]:
    return {"versions": [{"id": "v1.0", "status": "CURRENT",
                          "min_version": str(VERSIONS.minimum),
                          "max_version": str(VERSIONS.maximum),
                          "links": [{"rel": "self", "href": ""}]}]}


@router.get("/resource_providers")
async def list_providers(request: Request, svc: Service, caller: CallerDep,
                         version: Version) -> dict[str, Any]:
    caller.authorize("placement:resource_providers:list")
    query = _query(request, {"name", "uuid"})
    uuid = _uuid(query["uuid"], "uuid") if "uuid" in query else None
    providers = await svc.placement_reads.providers(name=query.get("name"), uuid=uuid)
    return {"resource_providers": [provider_view(request, p, version) for p in providers]}


@router.get("/resource_providers/{uuid}")
async def show_provider(request: Request, uuid: str, svc: Service, caller: CallerDep,
                        version: Version) -> dict[str, Any]:
    caller.authorize("placement:resource_providers:show")
    provider = await svc.placement_reads.provider(uuid)
    return provider_view(request, provider, version)


@router.get("/resource_providers/{uuid}/inventories")
async def list_inventories(uuid: str, svc: Service, caller: CallerDep) -> dict[str, Any]:
    caller.authorize("placement:resource_providers:inventories:list")
    provider = await svc.placement_reads.provider(uuid)
    inventories = await svc.placement_reads.inventories(uuid)
    return {"inventories": {rc: inventory_view(row) for rc, row in inventories.items()},
            "resource_provider_generation": provider.generation}


@router.get("/resource_providers/{uuid}/inventories/{resource_class}")
async def show_inventory(uuid: str, resource_class: str, svc: Service,
                         caller: CallerDep) -> dict[str, Any]:
    caller.authorize("placement:resource_providers:inventories:show")
    provider = await svc.placement_reads.provider(uuid)
    row = (await svc.placement_reads.inventories(uuid)).get(resource_class)
    if row is None:
        raise NotFound(f"No inventory of class {resource_class} for resource provider {uuid}.")
    return {**inventory_view(row), "resource_provider_generation": provider.generation}


@router.get("/resource_providers/{uuid}/usages")
async def provider_usages(uuid: str, svc: Service, caller: CallerDep) -> dict[str, Any]:
    caller.authorize("placement:resource_providers:usages")
    provider = await svc.placement_reads.provider(uuid)
    return {"usages": await svc.placement_reads.usages(uuid),
            "resource_provider_generation": provider.generation}


@router.get("/resource_providers/{uuid}/allocations")
async def provider_allocations(uuid: str, svc: Service, caller: CallerDep) -> dict[str, Any]:
    caller.authorize("placement:resource_providers:allocations:list")
    provider = await svc.placement_reads.provider(uuid)
    consumers = await svc.placement_reads.provider_allocations(uuid)
    return {"allocations": {consumer: {"resources": resources}
                            for consumer, resources in consumers.items()},
            "resource_provider_generation": provider.generation}


@router.get("/resource_providers/{uuid}/aggregates")
async def provider_aggregates(uuid: str, svc: Service, caller: CallerDep,
                              version: Version) -> dict[str, Any]:
    _since(version, "1.1")
    caller.authorize("placement:resource_providers:aggregates:list")
    provider = await svc.placement_reads.provider(uuid)
    return {"aggregates": await svc.placement_reads.aggregates(provider)}


@router.get("/resource_providers/{uuid}/traits")
async def provider_traits(uuid: str, svc: Service, caller: CallerDep,
                          version: Version) -> dict[str, Any]:
    _since(version, "1.6")
    caller.authorize("placement:resource_providers:traits:list")
    provider = await svc.placement_reads.provider(uuid)
    return {"traits": [], "resource_provider_generation": provider.generation}


@router.get("/allocations/{consumer_uuid}")
async def consumer_allocations(consumer_uuid: str, svc: Service, caller: CallerDep,
                               version: Version) -> dict[str, Any]:
    caller.authorize("placement:allocations:list")
    held = await svc.placement_reads.consumer_allocations(consumer_uuid)
    body: dict[str, Any] = {"allocations": {
        provider: {"generation": generation, "resources": resources}
        for provider, (generation, resources) in held.by_provider.items()}}
    if version.at_least("1.12") and held.by_provider:
        body["project_id"], body["user_id"] = held.project_id, held.user_id
    return body


@router.get("/usages")
async def project_usages(request: Request, svc: Service, caller: CallerDep,
                         version: Version) -> dict[str, Any]:
    _since(version, "1.9")
    caller.authorize("placement:usages")
    query = _query(request, {"project_id", "user_id"})
    if "project_id" not in query:
        raise BadRequest("The query parameter project_id is required.")
    return {"usages": await svc.placement_reads.project_usages(query["project_id"],
                                                               query.get("user_id"))}


def create_placement_app(runtime: ComputeRuntime, validator: TokenValidator) -> FastAPI:
    return create_app(
        service="placement",
        style=ErrorStyle.PLACEMENT,
        routers=[router],
        max_body_size=runtime.settings.max_request_body_size,
        versions=VERSIONS,
        state={"compute": runtime, "token_validator": validator, "versions": VERSIONS},
        openapi=runtime.settings.serve_openapi,
    )
