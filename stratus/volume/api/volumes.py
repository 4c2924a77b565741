"""``/v3/{project_id}/volumes``: create, list, show, update, delete, metadata, actions."""

from __future__ import annotations

import ast
import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from stratus.core.clients.image import ImageClient
from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.web.microversions import APIVersion
from stratus.volume import states
from stratus.volume.api import views
from stratus.volume.api.deps import Authorize, Context, Links, Service, URLs, Version, runtime
from stratus.volume.api.schemas import (
    MetadataBody,
    MetaItemBody,
    VolumeCreateBody,
    VolumeUpdateBody,
)
from stratus.volume.models import Volume
from stratus.volume.service import NewVolume, VolumeService

router = APIRouter(prefix="/v3/{project_id}/volumes")

SORT_KEYS = ("id", "name", "status", "size", "created_at", "updated_at",
             "availability_zone", "bootable")
FILTERS = ("name", "status", "availability_zone", "bootable")


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "y", "on", "t"):
        return True
    if lowered in ("false", "0", "no", "n", "off", "f"):
        return False
    raise BadRequest(f"Invalid input received: {name} must be a boolean, not {value!r}.")


def _int(value: str, name: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"Invalid input received: {name} must be an integer.") from None
    if number < minimum:
        raise BadRequest(f"Invalid input received: {name} must be >= {minimum}.")
    return number


def parse_sort(params: dict[str, str], keys: tuple[str, ...]) -> list[tuple[str, str]]:
    """``sort=k1:dir,k2`` or ``sort_key``/``sort_dir``; unknown keys are a 400."""
    items: list[tuple[str, str]] = []
    if "sort" in params:
        if "sort_key" in params or "sort_dir" in params:
            raise BadRequest("Invalid input received: The 'sort' parameter cannot be used "
                             "with 'sort_key' or 'sort_dir'.")
        for part in params["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            items.append((key, direction or "desc"))
    elif "sort_key" in params or "sort_dir" in params:
        items.append((params.get("sort_key", "created_at"), params.get("sort_dir", "desc")))
    for key, direction in items:
        if key not in keys:
            raise BadRequest(f"Invalid input received: Invalid sort key {key!r}.")
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Invalid input received: Invalid sort direction {direction!r}.")
    return items


async def render(svc: VolumeService, volumes: list[Volume], *, links: Links,
                 context: Any, version: APIVersion) -> list[dict[str, Any]]:
    attachments = await svc.live_attachments(v.id for v in volumes)
    types = await svc.types_by_id(v.volume_type_id for v in volumes)
    return [views.volume_detail(v, attachments=attachments[v.id],
                                vtype=types.get(v.volume_type_id or ""), links=links,
                                context=context, version=version) for v in volumes]


@router.post("", status_code=202)
async def create_volume(body: VolumeCreateBody, request: Request, context: Context,
                        authorize: Authorize, urls: URLs, version: Version) -> JSONResponse:
    authorize("volume:create", {"project_id": context.project_id})
    v = body.volume
    if v.backup_id or v.consistencygroup_id or v.group_id:
        raise BadRequest("Invalid input received: backups, consistency groups and groups "
                         "are not supported by this cloud.")
    image_ref = v.imageRef or v.image_id
    image = None
    if image_ref is not None:
        image = await ImageClient(request.app.state.http_client).get(context, image_ref)
    metadata = v.metadata or {}
    volume = await runtime(request).create_volume(context, NewVolume(
        size=v.size, name=v.name if v.name is not None else v.display_name,
        description=v.description if v.description is not None else v.display_description,
        volume_type=v.volume_type, availability_zone=v.availability_zone,
        metadata=metadata, snapshot_id=v.snapshot_id, source_volid=v.source_volid,
        image=image, multiattach=bool(v.multiattach)))
    async with runtime(request).service() as svc:
        rendered = (await render(svc, [volume], links=urls, context=context,
                                 version=version))[0]
    return JSONResponse({"volume": rendered}, status_code=202)


async def _list(request: Request, svc: VolumeService, context: Any, urls: Links,
                version: APIVersion, detail: bool) -> dict[str, Any]:
    params = dict(request.query_params)
    all_tenants = context.is_admin and _bool(params.pop("all_tenants", "0"), "all_tenants")
    project = None if all_tenants else context.project_id
    if context.is_admin and "project_id" in params:
        project = params.pop("project_id")
    filters: dict[str, Any] = {}
    for key in FILTERS:
        if key in params:
            filters[key] = _bool(params[key], key) if key == "bootable" else params[key]
    if "metadata" in params:
        try:
            metadata = ast.literal_eval(params["metadata"])
        except (ValueError, SyntaxError):
            metadata = None
        if not isinstance(metadata, dict):
            raise BadRequest("Invalid input received: metadata must be a dictionary.")
        filters["metadata"] = metadata
    limit_max = runtime(request).options.limit_max
    limit = _int(params["limit"], "limit") if "limit" in params else None
    effective = min(limit, limit_max) if limit is not None else limit_max
    offset = _int(params.get("offset", "0"), "offset")
    rows = await svc.list_volumes(project, filters=filters,
                                  sort=parse_sort(params, SORT_KEYS), limit=effective + 1,
                                  marker=params.get("marker"), offset=offset)
    more = len(rows) > effective
    rows = rows[:effective]
    items = (await render(svc, rows, links=urls, context=context, version=version)
             if detail else [views.volume_summary(v, urls) for v in rows])
    body: dict[str, Any] = {"volumes": items}
    if more and rows:
        query = {k: v for k, v in params.items() if k not in ("marker",)}
        query.update(limit=str(effective), marker=rows[-1].id)
        path = "volumes/detail" if detail else "volumes"
        href = urls.url(path) + "?" + "&".join(f"{k}={v}" for k, v in query.items())
        body["volumes_links"] = [{"href": href, "rel": "next"}]
    if version.at_least("3.45") and _bool(params.get("with_count", "false"), "with_count"):
        body["count"] = len(await svc.list_volumes(project, filters=filters, sort=[],
                                                   limit=None, marker=None))
    return body


@router.get("")
async def list_volumes(request: Request, svc: Service, context: Context,
                       authorize: Authorize, urls: URLs, version: Version) -> dict[str, Any]:
    authorize("volume:get_all", {"project_id": context.project_id})
    return await _list(request, svc, context, urls, version, detail=False)


@router.get("/detail")
async def list_volumes_detail(request: Request, svc: Service, context: Context,
                              authorize: Authorize, urls: URLs,
                              version: Version) -> dict[str, Any]:
    authorize("volume:get_all", {"project_id": context.project_id})
    return await _list(request, svc, context, urls, version, detail=True)


async def _get(svc: VolumeService, context: Any, volume_id: str) -> Volume:
    try:
        uuid.UUID(volume_id)
    except ValueError:
        raise NotFound(f"Volume {volume_id} could not be found.") from None
    return await svc.get_volume(volume_id, None if context.is_admin else context.project_id)


@router.get("/{volume_id}")
async def show_volume(volume_id: str, svc: Service, context: Context, authorize: Authorize,
                      urls: URLs, version: Version) -> dict[str, Any]:
    volume = await _get(svc, context, volume_id)
    authorize("volume:get", {"project_id": volume.project_id})
    return {"volume": (await render(svc, [volume], links=urls, context=context,
                                    version=version))[0]}


@router.put("/{volume_id}")
async def update_volume(volume_id: str, body: VolumeUpdateBody, svc: Service,
                        context: Context, authorize: Authorize, urls: URLs,
                        version: Version) -> dict[str, Any]:
    volume = await _get(svc, context, volume_id)
    authorize("volume:update", {"project_id": volume.project_id})
    u = body.volume
    fields = u.model_fields_set
    if not fields:
        raise BadRequest("Invalid input received: Missing required element 'volume' in "
                         "request body or nothing to update.")
    if "name" in fields or "display_name" in fields:
        volume.name = u.name if "name" in fields else u.display_name
    if "description" in fields or "display_description" in fields:
        volume.description = (u.description if "description" in fields
                              else u.display_description)
    if u.metadata is not None:
        volume.metadata_ = dict(u.metadata)
    await svc.session.flush()
    return {"volume": (await render(svc, [volume], links=urls, context=context,
                                    version=version))[0]}


@router.delete("/{volume_id}", status_code=202)
async def delete_volume(volume_id: str, request: Request, context: Context,
                        authorize: Authorize) -> Response:
    params = request.query_params
    cascade = _bool(params.get("cascade", "false"), "cascade")
    force = _bool(params.get("force", "false"), "force")
    async with runtime(request).service() as svc:
        volume = await _get(svc, context, volume_id)
    authorize("volume:delete", {"project_id": volume.project_id})
    if force:
        authorize("volume:force_delete", {"project_id": volume.project_id})
    await runtime(request).delete_volume(context, volume.id,
                                         None if context.is_admin else context.project_id,
                                         cascade=cascade, force=force)
    return Response(status_code=202)


# Metadata ------------------------------------------------------------------------------


@router.get("/{volume_id}/metadata")
async def get_metadata(volume_id: str, svc: Service, context: Context,
                       authorize: Authorize) -> dict[str, Any]:
    volume = await _get(svc, context, volume_id)
    authorize("volume:get", {"project_id": volume.project_id})
    return {"metadata": dict(volume.metadata_ or {})}


@router.post("/{volume_id}/metadata")
async def add_metadata(volume_id: str, body: MetadataBody, svc: Service, context: Context,
                       authorize: Authorize) -> dict[str, Any]:
    volume = await _get(svc, context, volume_id)
    authorize("volume:update_volume_metadata", {"project_id": volume.project_id})
    volume.metadata_ = {**(volume.metadata_ or {}), **body.metadata}
    await svc.session.flush()
    return {"metadata": dict(volume.metadata_)}


@router.put("/{volume_id}/metadata")
async def replace_metadata(volume_id: str, body: MetadataBody, svc: Service,
                           context: Context, authorize: Authorize) -> dict[str, Any]:
    volume = await _get(svc, context, volume_id)
    authorize("volume:update_volume_metadata", {"project_id": volume.project_id})
    volume.metadata_ = dict(body.metadata)
    await svc.session.flush()
    return {"metadata": dict(volume.metadata_)}


@router.get("/{volume_id}/metadata/{key}")
async def get_meta_item(volume_id: str, key: str, svc: Service, context: Context,
                        authorize: Authorize) -> dict[str, Any]:
    volume = await _get(svc, context, volume_id)
    authorize("volume:get", {"project_id": volume.project_id})
    if key not in (volume.metadata_ or {}):
        raise NotFound(f"Metadata item {key} was not found.")
    return {"meta": {key: volume.metadata_[key]}}


@router.put("/{volume_id}/metadata/{key}")
async def set_meta_item(volume_id: str, key: str, body: MetaItemBody, svc: Service,
                        context: Context, authorize: Authorize) -> dict[str, Any]:
    volume = await _get(svc, context, volume_id)
    authorize("volume:update_volume_metadata", {"project_id": volume.project_id})
    if list(body.meta) != [key]:
        raise BadRequest("Invalid input received: Request body and URI mismatch.")
    volume.metadata_ = {**(volume.metadata_ or {}), **body.meta}
    await svc.session.flush()
    return {"meta": dict(body.meta)}


@router.delete("/{volume_id}/metadata/{key}")
async def delete_meta_item(volume_id: str, key: str, svc: Service, context: Context,
                           authorize: Authorize) -> Response:
    volume = await _get(svc, context, volume_id)
    authorize("volume:update_volume_metadata", {"project_id": volume.project_id})
    if key not in (volume.metadata_ or {}):
        raise NotFound(f"Metadata item {key} was not found.")
    volume.metadata_ = {k: v for k, v in volume.metadata_.items() if k != key}
    await svc.session.flush()
    return Response(status_code=200)


# Actions -------------------------------------------------------------------------------


@router.post("/{volume_id}/action")
async def volume_action(volume_id: str, request: Request, context: Context,
                        authorize: Authorize) -> Response:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("Malformed request body: the body is not valid JSON.") from None
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest("Invalid input received: an action body names one action.")
    (action, args), = body.items()
    rt = runtime(request)
    project = None if context.is_admin else context.project_id
    async with rt.service() as svc:
        volume = await _get(svc, context, volume_id)
    target = {"project_id": volume.project_id}
    if action == "os-extend":
        authorize("volume:extend", target)
        new_size = (args or {}).get("new_size") if isinstance(args, dict) else None
        if isinstance(new_size, str) and new_size.isdigit():
            new_size = int(new_size)
        if not isinstance(new_size, int) or isinstance(new_size, bool) or new_size < 1:
            raise BadRequest("Invalid input received: new_size must be an integer >= 1.")
        await rt.extend_volume(context, volume.id, project, new_size)
        return Response(status_code=202)
    if action == "os-set_bootable":
        authorize("volume_extension:volume_actions:set_bootable", target)
        value = (args or {}).get("bootable") if isinstance(args, dict) else None
        bootable = _bool(str(value), "bootable") if value is not None else None
        if bootable is None:
            raise BadRequest("Invalid input received: bootable is required.")
        async with rt.service() as svc:
            (await svc.get_volume(volume.id, project)).bootable = bootable
        return Response(status_code=200)
    if action == "os-update_readonly_flag":
        authorize("volume_extension:volume_actions:update_readonly_flag", target)
        value = (args or {}).get("readonly") if isinstance(args, dict) else None
        if value is None:
            raise BadRequest("Invalid input received: readonly is required.")
        async with rt.service() as svc:
            (await svc.get_volume(volume.id, project)).readonly = _bool(str(value),
                                                                        "readonly")
        return Response(status_code=202)
    if action == "os-reset_status":
        authorize("volume_extension:volume_admin_actions:reset_status", target)
        if not isinstance(args, dict):
            raise BadRequest("Invalid input received: os-reset_status takes an object.")
        status = args.get("status")
        attach_status = args.get("attach_status")
        if status is not None and status not in states.ALL:
            raise BadRequest(f"Invalid input received: invalid status {status!r}.")
        if attach_status is not None and attach_status not in (states.ATTACHED,
                                                                states.DETACHED):
            raise BadRequest(f"Invalid input received: invalid attach_status "
                             f"{attach_status!r}.")
        async with rt.service() as svc:
            row = await svc.get_volume(volume.id)
            if status is not None:
                row.status = status
            if attach_status is not None:
                row.attach_status = attach_status
        return Response(status_code=202)
    if action == "os-force_delete":
        authorize("volume:force_delete", target)
        await rt.delete_volume(context, volume.id, None, force=True)
        return Response(status_code=202)
    raise BadRequest(f"Invalid input received: There is no such action: {action}.")
