"""``/v3/{project_id}/volumes``: create, list, show, update, delete, metadata, actions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from stratus.core.clients.image import ImageClient
from stratus.core.exceptions import BadRequest
from stratus.core.web import listing, openapi
from stratus.core.web.actions import one_action
from stratus.core.web.listing import ListSpec
from stratus.core.web.microversions import APIVersion
from stratus.volume.api import views
from stratus.volume.api.deps import CallerDep, Context, Links, Service, URLs, Version, runtime
from stratus.volume.api.params import SORT_KEYS, parse_bool, parse_sort, volume_query
from stratus.volume.api.schemas import (
    MetadataBody,
    MetaItemBody,
    VolumeCreateBody,
    VolumeUpdateBody,
    parse_action,
)
from stratus.volume.api.volume_actions import ACTIONS, ActionCall
from stratus.volume.service import NewVolume, VolumeService

router = APIRouter(prefix="/v3/{project_id}/volumes")

__all__ = ["parse_sort", "router"]


async def render(svc: VolumeService, volumes: list[Any], *, links: Links,
                 context: Any, version: APIVersion,
                 extended: bool = True) -> list[dict[str, Any]]:
    """The volumes' detail views (``extended=False``: as create and update answer)."""
    attachments = await svc.attachments.live(v.id for v in volumes)
    types = await svc.types.by_id(v.volume_type_id for v in volumes)
    return [views.volume_detail(v, attachments=attachments[v.id],
                                vtype=types.get(v.volume_type_id or ""), links=links,
                                context=context, version=version, extended=extended)
            for v in volumes]


@router.post("", status_code=202)
async def create_volume(body: VolumeCreateBody, request: Request, context: Context,
                        caller: CallerDep, urls: URLs, version: Version) -> JSONResponse:
    caller.authorize("volume:create", {"project_id": context.project_id})
    v = body.volume
    if v.backup_id or v.consistencygroup_id or v.group_id:
        raise BadRequest("Invalid input received: backups, consistency groups and groups "
                         "are not supported by this cloud.")
    image_ref = v.imageRef or v.image_id
    image = None
    if image_ref is not None:
        image = await ImageClient(request.app.state.http_client).get(context, image_ref)
    volume = await runtime(request).create_volume(context, NewVolume(
        size=v.size, name=v.name if v.name is not None else v.display_name,
        description=v.description if v.description is not None else v.display_description,
        volume_type=v.volume_type, availability_zone=v.availability_zone,
        metadata=v.metadata or {}, snapshot_id=v.snapshot_id, source_volid=v.source_volid,
        image=image, multiattach=bool(v.multiattach)))
    async with runtime(request).service() as svc:
        rendered = (await render(svc, [volume], links=urls, context=context,
                                 version=version, extended=False))[0]
    return JSONResponse({"volume": rendered}, status_code=202)


async def _list(request: Request, svc: VolumeService, context: Any, urls: Links,
                version: APIVersion, detail: bool) -> dict[str, Any]:
    spec = ListSpec("volumes", sort_keys=SORT_KEYS,
                    max_limit=runtime(request).options.limit_max)
    req, query = volume_query(request.query_params, spec, context)
    rows, more = await svc.volumes.list_page(query)
    items = (await render(svc, rows, links=urls, context=context, version=version)
             if detail else [views.volume_summary(v, urls) for v in rows])
    body: dict[str, Any] = {"volumes": items}
    body |= listing.CINDER.links(req, spec, urls.url("volumes/detail" if detail else "volumes"),
                                 next_marker=listing.CINDER.next_marker(
                                     req, [r.id for r in rows], more))
    if version.at_least("3.45") and parse_bool(req.filter("with_count") or "false",
                                               "with_count"):
        body["count"] = await svc.volumes.count(query)
    return body


@router.get("")
async def list_volumes(request: Request, svc: Service, context: Context,
                       caller: CallerDep, urls: URLs, version: Version) -> dict[str, Any]:
    caller.authorize("volume:get_all", {"project_id": context.project_id})
    return await _list(request, svc, context, urls, version, detail=False)


@router.get("/detail")
async def list_volumes_detail(request: Request, svc: Service, context: Context,
                              caller: CallerDep, urls: URLs,
                              version: Version) -> dict[str, Any]:
    caller.authorize("volume:get_all", {"project_id": context.project_id})
    return await _list(request, svc, context, urls, version, detail=True)


@router.get("/{volume_id}")
async def show_volume(volume_id: str, svc: Service, context: Context, caller: CallerDep,
                      urls: URLs, version: Version) -> dict[str, Any]:
    volume = await svc.volumes.get_visible(context, volume_id)
    caller.authorize("volume:get", {"project_id": volume.project_id})
    return {"volume": (await render(svc, [volume], links=urls, context=context,
                                    version=version))[0]}


@router.put("/{volume_id}")
async def update_volume(volume_id: str, body: VolumeUpdateBody, svc: Service,
                        context: Context, caller: CallerDep, urls: URLs,
                        version: Version) -> dict[str, Any]:
    volume = await svc.volumes.get_visible(context, volume_id)
    caller.authorize("volume:update", {"project_id": volume.project_id})
    volume = await svc.volumes.update(volume, body.volume.changes())
    return {"volume": (await render(svc, [volume], links=urls, context=context,
                                    version=version, extended=False))[0]}


@router.delete("/{volume_id}", status_code=202)
async def delete_volume(volume_id: str, request: Request, context: Context,
                        caller: CallerDep) -> Response:
    params = request.query_params
    cascade = parse_bool(params.get("cascade", "false"), "cascade")
    force = parse_bool(params.get("force", "false"), "force")

    def authorize(volume: Any) -> None:
        caller.authorize("volume:delete", {"project_id": volume.project_id})
        if force:
            caller.authorize("volume:force_delete", {"project_id": volume.project_id})

    await runtime(request).delete_volume(context, volume_id,
                                         None if context.is_admin else context.project_id,
                                         cascade=cascade, force=force, authorize=authorize)
    return Response(status_code=202)


# Metadata ------------------------------------------------------------------------------


@router.get("/{volume_id}/metadata")
async def get_metadata(volume_id: str, svc: Service, context: Context,
                       caller: CallerDep) -> dict[str, Any]:
    volume = await svc.volumes.get_visible(context, volume_id)
    caller.authorize("volume:get", {"project_id": volume.project_id})
    return {"metadata": dict(volume.metadata_ or {})}


@router.post("/{volume_id}/metadata")
async def add_metadata(volume_id: str, body: MetadataBody, svc: Service, context: Context,
                       caller: CallerDep) -> dict[str, Any]:
    volume = await svc.volumes.get_visible(context, volume_id)
    caller.authorize("volume:update_volume_metadata", {"project_id": volume.project_id})
    return {"metadata": await svc.volumes.set_metadata(volume, body.metadata, replace=False)}


@router.put("/{volume_id}/metadata")
async def replace_metadata(volume_id: str, body: MetadataBody, svc: Service,
                           context: Context, caller: CallerDep) -> dict[str, Any]:
    volume = await svc.volumes.get_visible(context, volume_id)
    caller.authorize("volume:update_volume_metadata", {"project_id": volume.project_id})
    return {"metadata": await svc.volumes.set_metadata(volume, body.metadata, replace=True)}


@router.get("/{volume_id}/metadata/{key}")
async def get_meta_item(volume_id: str, key: str, svc: Service, context: Context,
                        caller: CallerDep) -> dict[str, Any]:
    volume = await svc.volumes.get_visible(context, volume_id)
    caller.authorize("volume:get", {"project_id": volume.project_id})
    return {"meta": {key: svc.volumes.meta_item(volume, key)}}


@router.put("/{volume_id}/metadata/{key}")
async def set_meta_item(volume_id: str, key: str, body: MetaItemBody, svc: Service,
                        context: Context, caller: CallerDep) -> dict[str, Any]:
    volume = await svc.volumes.get_visible(context, volume_id)
    caller.authorize("volume:update_volume_metadata", {"project_id": volume.project_id})
    await svc.volumes.set_meta_item(volume, key, body.meta)
    return {"meta": dict(body.meta)}


@router.delete("/{volume_id}/metadata/{key}")
async def delete_meta_item(volume_id: str, key: str, svc: Service, context: Context,
                           caller: CallerDep) -> Response:
    volume = await svc.volumes.get_visible(context, volume_id)
    caller.authorize("volume:update_volume_metadata", {"project_id": volume.project_id})
    await svc.volumes.delete_meta_item(volume, key)
    return Response(status_code=200)


# Actions -------------------------------------------------------------------------------


#: One action of the table: ``{name: <its arguments>}``.
_ACTION_BODY = openapi.request_body({"oneOf": [
    openapi.wrapped(name, openapi.model_schema(action.body))
    for name, action in ACTIONS.items()]})


@router.post("/{volume_id}/action", openapi_extra=_ACTION_BODY)
async def volume_action(volume_id: str, request: Request, context: Context,
                        caller: CallerDep, version: Version) -> Response:
    """One action of the table in ``volume_actions``: 404, then unknown action, then the
    policy rule, then the argument."""
    name, args = await one_action(request, "Invalid input received")
    rt = runtime(request)
    async with rt.service() as svc:
        volume = await svc.volumes.get_visible(context, volume_id)
    action = ACTIONS.get(name)
    if action is None:
        raise BadRequest(f"Invalid input received: There is no such action: {name}.")
    caller.authorize(action.rule, {"project_id": volume.project_id})
    answer = await action.run(ActionCall(rt, caller, volume.id, version,
                                         request.app.state.http_client),
                              parse_action(action.body, args))
    if answer is not None:
        return JSONResponse(answer, status_code=action.status)
    return Response(status_code=action.status)
