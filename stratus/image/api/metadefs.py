"""``/v2/metadefs``: Glance's metadata definitions catalog (namespaces and resource types),
which Horizon's "Update Metadata" dialogs and ``openstack image metadef`` read."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response

from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.web import listing, openapi
from stratus.core.web.listing import ListSpec
from stratus.image.api.deps import CallerDep, Runtime, Service
from stratus.image.api.images import json_body
from stratus.image.metadefs import (
    NAMESPACE_VISIBILITIES,
    SORT_KEYS,
    NamespaceQuery,
    prefixed,
    timestamp,
)
from stratus.image.models import MetadefNamespace

router = APIRouter(prefix="/v2/metadefs")

_NAMESPACE_BODY = openapi.request_body({"type": "object", "required": ["namespace"],
                                        "properties": {
    "namespace": {"type": "string", "maxLength": 80},
    "display_name": {"type": "string", "maxLength": 80},
    "description": {"type": "string", "maxLength": 500},
    "visibility": {"type": "string", "enum": list(NAMESPACE_VISIBILITIES)},
    "protected": {"type": "boolean"},
    "resource_type_associations": {"type": "array", "items": {"type": "object"}},
    "properties": {"type": "object"}, "objects": {"type": "array"},
    "tags": {"type": "array"}}})


def namespace_view(row: MetadefNamespace, *, resource_type: str | None = None,
                   full: bool = False) -> dict[str, Any]:
    """The namespace as Glance shows it: unset attributes left out; ``full`` (show, create,
    update) adds its properties, objects and tags when it has any."""
    body: dict[str, Any] = {
        "namespace": row.namespace,
        "display_name": row.display_name,
        "description": row.description,
        "visibility": row.visibility,
        "protected": row.protected,
        "owner": row.owner,
        "resource_type_associations": row.resource_type_associations,
        "created_at": timestamp(row.created_at),
        "updated_at": timestamp(row.updated_at),
        "schema": "/v2/schemas/metadefs/namespace",
        "self": f"/v2/metadefs/namespaces/{row.namespace}",
    }
    body = {k: v for k, v in body.items() if v is not None}
    if full:
        if row.properties:
            body["properties"] = prefixed(row, resource_type)
        if row.objects:
            body["objects"] = row.objects
        if row.tags:
            body["tags"] = row.tags
    return body


@router.get("/namespaces")
async def list_namespaces(request: Request, svc: Service, caller: CallerDep,
                          runtime: Runtime) -> dict[str, Any]:
    params = list(request.query_params.multi_items())
    settings = runtime.settings.image
    spec = ListSpec("namespaces", sort_keys=SORT_KEYS, default_limit=settings.limit_default,
                    max_limit=settings.limit_max)
    req = listing.GLANCE.parse(params, spec)
    # Other parameters are ignored, as Glance's namespace list ignores them.
    visibility = req.filter("visibility")
    if visibility is not None and visibility not in NAMESPACE_VISIBILITIES:
        raise BadRequest(f"Invalid visibility {visibility!r}: one of "
                         f"{', '.join(NAMESPACE_VISIBILITIES)}.")
    types = req.filter("resource_types")
    sort = req.sort[0]
    query = NamespaceQuery(
        limit=req.limit if req.limit is not None else settings.limit_default,
        marker=req.marker, sort_key=sort.column, sort_dir=sort.direction,
        visibility=visibility,
        resource_types=tuple(t.strip() for t in (types or "").split(",") if t.strip()))
    rows, more = await svc.metadefs.list_page(caller, query)
    body: dict[str, Any] = {"namespaces": [namespace_view(r) for r in rows],
                            "schema": "/v2/schemas/metadefs/namespaces"}
    return body | listing.GLANCE.links(
        req, spec, "/v2/metadefs/namespaces",
        next_marker=rows[-1].namespace if more and rows else None)


@router.post("/namespaces", status_code=201, openapi_extra=_NAMESPACE_BODY)
async def create_namespace(request: Request, response: Response, svc: Service,
                           caller: CallerDep) -> dict[str, Any]:
    row = await svc.metadefs.create(caller, await json_body(request))
    response.headers["Location"] = f"/v2/metadefs/namespaces/{quote(row.namespace, safe=':')}"
    return namespace_view(row, full=True)


@router.get("/namespaces/{namespace}")
async def show_namespace(namespace: str, svc: Service, caller: CallerDep,
                         resource_type: str | None = None) -> dict[str, Any]:
    row = await svc.metadefs.get(caller, namespace)
    return namespace_view(row, resource_type=resource_type, full=True)


@router.put("/namespaces/{namespace}", openapi_extra=_NAMESPACE_BODY)
async def update_namespace(namespace: str, request: Request, svc: Service,
                           caller: CallerDep) -> dict[str, Any]:
    row = await svc.metadefs.update(caller, namespace, await json_body(request))
    return namespace_view(row, full=True)


@router.delete("/namespaces/{namespace}", status_code=204)
async def delete_namespace(namespace: str, svc: Service, caller: CallerDep) -> Response:
    await svc.metadefs.delete(caller, namespace)
    return Response(status_code=204)


@router.get("/namespaces/{namespace}/resource_types")
async def namespace_resource_types(namespace: str, svc: Service,
                                   caller: CallerDep) -> dict[str, Any]:
    row = await svc.metadefs.get(caller, namespace)
    return {"resource_type_associations": row.resource_type_associations}


@router.get("/namespaces/{namespace}/properties")
async def namespace_properties(namespace: str, svc: Service, caller: CallerDep,
                               resource_type: str | None = None) -> dict[str, Any]:
    row = await svc.metadefs.get(caller, namespace)
    return {"properties": prefixed(row, resource_type)}


@router.post("/namespaces/{namespace}/resource_types", status_code=201)
async def associate_resource_type(namespace: str, request: Request, svc: Service,
                                  caller: CallerDep) -> dict[str, Any]:
    return await svc.metadefs.associate(caller, namespace, await json_body(request))


@router.delete("/namespaces/{namespace}/resource_types/{resource_type}", status_code=204)
async def dissociate_resource_type(namespace: str, resource_type: str, svc: Service,
                                   caller: CallerDep) -> Response:
    await svc.metadefs.dissociate(caller, namespace, resource_type)
    return Response(status_code=204)


@router.post("/namespaces/{namespace}/properties", status_code=201)
async def create_property(namespace: str, request: Request, svc: Service,
                          caller: CallerDep) -> dict[str, Any]:
    name, definition = await svc.metadefs.add_property(caller, namespace,
                                                       await json_body(request))
    return {"name": name, **definition}


@router.get("/namespaces/{namespace}/properties/{name}")
async def namespace_property(namespace: str, name: str, svc: Service,
                             caller: CallerDep) -> dict[str, Any]:
    row = await svc.metadefs.get(caller, namespace)
    definition = row.properties.get(name)
    if definition is None:
        raise NotFound(f"Metadata definition property={name} in namespace={namespace} was "
                       "not found.")
    return {"name": name, **definition}


@router.put("/namespaces/{namespace}/properties/{name}")
async def update_property(namespace: str, name: str, request: Request, svc: Service,
                          caller: CallerDep) -> dict[str, Any]:
    renamed, definition = await svc.metadefs.update_property(caller, namespace, name,
                                                             await json_body(request))
    return {"name": renamed, **definition}


@router.delete("/namespaces/{namespace}/properties/{name}", status_code=204)
async def delete_property(namespace: str, name: str, svc: Service,
                          caller: CallerDep) -> Response:
    await svc.metadefs.delete_property(caller, namespace, name)
    return Response(status_code=204)


def object_view(namespace: str, found: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in found.items() if v is not None}
    return {**body, "schema": "/v2/schemas/metadefs/object",
            "self": f"/v2/metadefs/namespaces/{namespace}/objects/{found['name']}"}


@router.get("/namespaces/{namespace}/objects")
async def namespace_objects(namespace: str, svc: Service, caller: CallerDep) -> dict[str, Any]:
    row = await svc.metadefs.get(caller, namespace)
    return {"objects": [object_view(row.namespace, o) for o in row.objects],
            "schema": "v2/schemas/metadefs/objects"}


@router.post("/namespaces/{namespace}/objects", status_code=201)
async def create_object(namespace: str, request: Request, svc: Service,
                        caller: CallerDep) -> dict[str, Any]:
    made = await svc.metadefs.add_object(caller, namespace, await json_body(request))
    return object_view(namespace, made)


@router.get("/namespaces/{namespace}/objects/{name}")
async def show_object(namespace: str, name: str, svc: Service,
                      caller: CallerDep) -> dict[str, Any]:
    row = await svc.metadefs.get(caller, namespace)
    return object_view(namespace, svc.metadefs.get_object(row, name))


@router.put("/namespaces/{namespace}/objects/{name}")
async def update_object(namespace: str, name: str, request: Request, svc: Service,
                        caller: CallerDep) -> dict[str, Any]:
    changed = await svc.metadefs.update_object(caller, namespace, name,
                                               await json_body(request))
    return object_view(namespace, changed)


@router.delete("/namespaces/{namespace}/objects/{name}", status_code=204)
async def delete_object(namespace: str, name: str, svc: Service,
                        caller: CallerDep) -> Response:
    await svc.metadefs.delete_object(caller, namespace, name)
    return Response(status_code=204)


@router.get("/namespaces/{namespace}/tags")
async def namespace_tags(namespace: str, svc: Service, caller: CallerDep) -> dict[str, Any]:
    row = await svc.metadefs.get(caller, namespace)
    return {"tags": row.tags}


@router.post("/namespaces/{namespace}/tags", status_code=201)
async def create_tags(namespace: str, request: Request, svc: Service,
                      caller: CallerDep) -> dict[str, Any]:
    body = await json_body(request)
    tags = body.get("tags") if isinstance(body, dict) else None
    if not isinstance(tags, list) or not all(isinstance(t, dict) for t in tags):
        raise BadRequest("The request body must be {\"tags\": [{\"name\": ...}, ...]}.")
    append = request.headers.get("x-openstack-append", "false").lower() == "true"
    made = await svc.metadefs.add_tags(caller, namespace, [t.get("name") for t in tags],
                                       append=append)
    return {"tags": [{"name": t["name"]} for t in made]}


@router.delete("/namespaces/{namespace}/tags", status_code=204)
async def delete_tags(namespace: str, svc: Service, caller: CallerDep) -> Response:
    await svc.metadefs.delete_tags(caller, namespace)
    return Response(status_code=204)


@router.post("/namespaces/{namespace}/tags/{name}", status_code=201)
async def create_tag(namespace: str, name: str, svc: Service,
                     caller: CallerDep) -> dict[str, Any]:
    return await svc.metadefs.add_tag(caller, namespace, name)


@router.get("/namespaces/{namespace}/tags/{name}")
async def show_tag(namespace: str, name: str, svc: Service,
                   caller: CallerDep) -> dict[str, Any]:
    row = await svc.metadefs.get(caller, namespace)
    return svc.metadefs.get_tag(row, name)


@router.put("/namespaces/{namespace}/tags/{name}")
async def update_tag(namespace: str, name: str, request: Request, svc: Service,
                     caller: CallerDep) -> dict[str, Any]:
    return await svc.metadefs.rename_tag(caller, namespace, name, await json_body(request))


@router.delete("/namespaces/{namespace}/tags/{name}", status_code=204)
async def delete_tag(namespace: str, name: str, svc: Service, caller: CallerDep) -> Response:
    await svc.metadefs.delete_tag(caller, namespace, name)
    return Response(status_code=204)


@router.get("/resource_types")
async def resource_types(svc: Service, caller: CallerDep) -> dict[str, Any]:
    return {"resource_types": await svc.metadefs.resource_types(caller)}
