"""``/v3/{project_id}/snapshots``: create, list, show, update, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from stratus.core.exceptions import BadRequest
from stratus.volume.api import views
from stratus.volume.api.deps import Authorize, Context, Service, Version, runtime
from stratus.volume.api.schemas import SnapshotCreateBody, SnapshotUpdateBody
from stratus.volume.api.volumes import _bool, _int

router = APIRouter(prefix="/v3/{project_id}/snapshots")


@router.post("", status_code=202)
async def create_snapshot(body: SnapshotCreateBody, request: Request, context: Context,
                          authorize: Authorize, version: Version) -> JSONResponse:
    authorize("volume:create_snapshot", {"project_id": context.project_id})
    s = body.snapshot
    force = s.force if isinstance(s.force, bool) else _bool(str(s.force), "force")
    snapshot = await runtime(request).create_snapshot(
        context, s.volume_id, name=s.name if s.name is not None else s.display_name,
        description=s.description if s.description is not None else s.display_description,
        metadata=s.metadata or {}, force=force)
    return JSONResponse({"snapshot": views.snapshot_view(snapshot, version=version)},
                        status_code=202)


async def _list(request: Request, svc: Any, context: Any, version: Any) -> dict[str, Any]:
    params = dict(request.query_params)
    all_tenants = context.is_admin and _bool(params.get("all_tenants", "0"), "all_tenants")
    filters = {k: params[k] for k in ("name", "status", "volume_id") if k in params}
    limit = _int(params["limit"], "limit") if "limit" in params else None
    rows = await svc.list_snapshots(None if all_tenants else context.project_id,
                                    filters=filters, limit=limit,
                                    marker=params.get("marker"))
    return {"snapshots": [views.snapshot_view(s, version=version) for s in rows]}


@router.get("")
async def list_snapshots(request: Request, svc: Service, context: Context,
                         authorize: Authorize, version: Version) -> dict[str, Any]:
    authorize("volume:get_all_snapshots", {"project_id": context.project_id})
    return await _list(request, svc, context, version)


@router.get("/detail")
async def list_snapshots_detail(request: Request, svc: Service, context: Context,
                                authorize: Authorize, version: Version) -> dict[str, Any]:
    authorize("volume:get_all_snapshots", {"project_id": context.project_id})
    return await _list(request, svc, context, version)


@router.get("/{snapshot_id}")
async def show_snapshot(snapshot_id: str, svc: Service, context: Context,
                        authorize: Authorize, version: Version) -> dict[str, Any]:
    snapshot = await svc.get_snapshot(snapshot_id,
                                      None if context.is_admin else context.project_id)
    authorize("volume:get_snapshot", {"project_id": snapshot.project_id})
    return {"snapshot": views.snapshot_view(snapshot, version=version)}


@router.put("/{snapshot_id}")
async def update_snapshot(snapshot_id: str, body: SnapshotUpdateBody, svc: Service,
                          context: Context, authorize: Authorize,
                          version: Version) -> dict[str, Any]:
    snapshot = await svc.get_snapshot(snapshot_id,
                                      None if context.is_admin else context.project_id)
    authorize("volume:update_snapshot", {"project_id": snapshot.project_id})
    u = body.snapshot
    fields = u.model_fields_set
    if not fields:
        raise BadRequest("Invalid input received: nothing to update.")
    if "name" in fields or "display_name" in fields:
        snapshot.name = u.name if "name" in fields else u.display_name
    if "description" in fields or "display_description" in fields:
        snapshot.description = (u.description if "description" in fields
                                else u.display_description)
    await svc.session.flush()
    return {"snapshot": views.snapshot_view(snapshot, version=version)}


@router.delete("/{snapshot_id}", status_code=202)
async def delete_snapshot(snapshot_id: str, request: Request, context: Context,
                          authorize: Authorize) -> Response:
    project = None if context.is_admin else context.project_id
    async with runtime(request).service() as svc:
        snapshot = await svc.get_snapshot(snapshot_id, project)
    authorize("volume:delete_snapshot", {"project_id": snapshot.project_id})
    await runtime(request).delete_snapshot(context, snapshot_id, project)
    return Response(status_code=202)
