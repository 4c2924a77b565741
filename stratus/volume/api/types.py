"""``/v3/{project_id}/types``: volume types (admin CRUD; everyone lists public ones)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from stratus.core.exceptions import Conflict, NotFound
from stratus.volume.api import views
from stratus.volume.api.deps import Authorize, Context, Service
from stratus.volume.api.schemas import ExtraSpecsBody, TypeCreateBody, TypeUpdateBody

router = APIRouter(prefix="/v3/{project_id}/types")


@router.get("")
async def list_types(svc: Service, context: Context, authorize: Authorize) -> dict[str, Any]:
    authorize("volume_extension:type_get_all")
    return {"volume_types": [views.type_view(t, admin=context.is_admin)
                             for t in await svc.list_types(admin=context.is_admin)]}


@router.get("/default")
async def default_type(svc: Service, context: Context,
                       authorize: Authorize) -> dict[str, Any]:
    authorize("volume_extension:type_get")
    return {"volume_type": views.type_view(await svc.ensure_default_type(),
                                           admin=context.is_admin)}


@router.get("/{type_id}")
async def show_type(type_id: str, svc: Service, context: Context,
                    authorize: Authorize) -> dict[str, Any]:
    authorize("volume_extension:type_get")
    vtype = await svc.get_type(type_id)
    if not vtype.is_public and not context.is_admin:
        raise NotFound(f"Volume type {type_id} could not be found.")
    return {"volume_type": views.type_view(vtype, admin=context.is_admin)}


@router.post("")
async def create_type(body: TypeCreateBody, svc: Service, context: Context,
                      authorize: Authorize) -> dict[str, Any]:
    authorize("volume_extension:types_manage")
    t = body.volume_type
    is_public = t.is_public if t.is_public is not None else t.os_volume_type_access_is_public
    vtype = await svc.create_type(name=t.name.strip(), description=t.description,
                                  is_public=is_public, extra_specs=t.extra_specs or {})
    return {"volume_type": views.type_view(vtype, admin=True)}


@router.put("/{type_id}")
async def update_type(type_id: str, body: TypeUpdateBody, svc: Service, context: Context,
                      authorize: Authorize) -> dict[str, Any]:
    authorize("volume_extension:types_manage")
    vtype = await svc.get_type(type_id)
    u = body.volume_type
    if u.name is not None and u.name != vtype.name:
        if vtype.name == svc.options.default_volume_type:
            raise Conflict("The default volume type cannot be renamed.")
        try:
            await svc.get_type(u.name)
        except NotFound:
            vtype.name = u.name
        else:
            raise Conflict(f"Volume Type {u.name} already exists.")
    if "description" in u.model_fields_set:
        vtype.description = u.description
    if u.is_public is not None:
        vtype.is_public = u.is_public
    await svc.session.flush()
    return {"volume_type": views.type_view(vtype, admin=True)}


@router.delete("/{type_id}", status_code=202)
async def delete_type(type_id: str, svc: Service, authorize: Authorize) -> Response:
    authorize("volume_extension:types_manage")
    await svc.delete_type(type_id)
    return Response(status_code=202)


@router.get("/{type_id}/extra_specs")
async def get_extra_specs(type_id: str, svc: Service, authorize: Authorize) -> dict[str, Any]:
    authorize("volume_extension:types_manage")
    return {"extra_specs": dict((await svc.get_type(type_id)).extra_specs or {})}


@router.post("/{type_id}/extra_specs")
async def set_extra_specs(type_id: str, body: ExtraSpecsBody, svc: Service,
                          authorize: Authorize) -> dict[str, Any]:
    authorize("volume_extension:types_manage")
    vtype = await svc.get_type(type_id)
    vtype.extra_specs = {**(vtype.extra_specs or {}), **body.extra_specs}
    await svc.session.flush()
    return {"extra_specs": dict(body.extra_specs)}


@router.delete("/{type_id}/extra_specs/{key}", status_code=202)
async def delete_extra_spec(type_id: str, key: str, svc: Service,
                            authorize: Authorize) -> Response:
    authorize("volume_extension:types_manage")
    vtype = await svc.get_type(type_id)
    if key not in (vtype.extra_specs or {}):
        raise NotFound(f"Volume Type {type_id} has no extra specs with key {key}.")
    vtype.extra_specs = {k: v for k, v in vtype.extra_specs.items() if k != key}
    await svc.session.flush()
    return Response(status_code=202)
