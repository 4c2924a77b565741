"""``/v3/{project_id}/types``: volume types (admin CRUD; everyone lists public ones)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from stratus.core.web import listing
from stratus.core.web.listing import ListSpec
from stratus.volume.api import views
from stratus.volume.api.deps import CallerDep, Context, Service, URLs, runtime
from stratus.volume.api.params import TYPE_SORT_KEYS, list_sort
from stratus.volume.api.schemas import ExtraSpecsBody, TypeCreateBody, TypeUpdateBody
from stratus.volume.queries import ListQuery

router = APIRouter(prefix="/v3/{project_id}/types")


@router.get("")
async def list_types(request: Request, svc: Service, context: Context, caller: CallerDep,
                     urls: URLs) -> dict[str, Any]:
    caller.authorize("volume_extension:type_get_all")
    spec = ListSpec("volume_types", sort_keys=TYPE_SORT_KEYS,
                    max_limit=runtime(request).options.limit_max)
    req = listing.CINDER.parse(request.query_params, spec)
    types, more = await svc.types.list_page(
        ListQuery(None, sort=list_sort(req), limit=req.limit, marker=req.marker,
                  offset=req.offset), admin=context.is_admin)
    body = {"volume_types": [views.type_view(t, admin=context.is_admin) for t in types]}
    return body | listing.CINDER.links(req, spec, urls.url("types"),
                                       next_marker=listing.CINDER.next_marker(
                                           req, [t.id for t in types], more))


@router.get("/default")
async def default_type(svc: Service, context: Context,
                       caller: CallerDep) -> dict[str, Any]:
    caller.authorize("volume_extension:type_get")
    return {"volume_type": views.type_view(await svc.types.ensure_default(),
                                           admin=context.is_admin)}


@router.get("/{type_id}")
async def show_type(type_id: str, svc: Service, context: Context,
                    caller: CallerDep) -> dict[str, Any]:
    caller.authorize("volume_extension:type_get")
    vtype = await svc.types.get_visible(type_id, admin=context.is_admin)
    return {"volume_type": views.type_view(vtype, admin=context.is_admin)}


@router.post("")
async def create_type(body: TypeCreateBody, svc: Service, context: Context,
                      caller: CallerDep) -> dict[str, Any]:
    caller.authorize("volume_extension:types_manage")
    t = body.volume_type
    is_public = t.is_public if t.is_public is not None else t.os_volume_type_access_is_public
    vtype = await svc.types.create(name=t.name.strip(), description=t.description,
                                  is_public=is_public, extra_specs=t.extra_specs or {})
    return {"volume_type": views.type_view(vtype, admin=True)}


@router.put("/{type_id}")
async def update_type(type_id: str, body: TypeUpdateBody, svc: Service, context: Context,
                      caller: CallerDep) -> dict[str, Any]:
    caller.authorize("volume_extension:types_manage")
    u = body.volume_type
    vtype = await svc.types.update(type_id, name=u.name, description=u.description,
                                   set_description="description" in u.model_fields_set,
                                   is_public=u.is_public)
    return {"volume_type": views.type_view(vtype, admin=True)}


@router.delete("/{type_id}", status_code=202)
async def delete_type(type_id: str, svc: Service, caller: CallerDep) -> Response:
    caller.authorize("volume_extension:types_manage")
    await svc.types.delete(type_id)
    return Response(status_code=202)


@router.get("/{type_id}/extra_specs")
async def get_extra_specs(type_id: str, svc: Service, caller: CallerDep) -> dict[str, Any]:
    caller.authorize("volume_extension:types_manage")
    return {"extra_specs": await svc.types.extra_specs(type_id)}


@router.post("/{type_id}/extra_specs")
async def set_extra_specs(type_id: str, body: ExtraSpecsBody, svc: Service,
                          caller: CallerDep) -> dict[str, Any]:
    caller.authorize("volume_extension:types_manage")
    await svc.types.set_extra_specs(type_id, body.extra_specs)
    return {"extra_specs": dict(body.extra_specs)}


@router.delete("/{type_id}/extra_specs/{key}", status_code=202)
async def delete_extra_spec(type_id: str, key: str, svc: Service,
                            caller: CallerDep) -> Response:
    caller.authorize("volume_extension:types_manage")
    await svc.types.delete_extra_spec(type_id, key)
    return Response(status_code=202)
