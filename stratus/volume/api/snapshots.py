"""``/v3/{project_id}/snapshots``: create, list, show, update, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from stratus.volume.api import views
from stratus.volume.api.deps import Authorize, Context, Service, Version, runtime
from stratus.volume.api.params import parse_bool, parse_int
from stratus.volume.api.schemas import SnapshotCreateBody, SnapshotUpdateBody

router = APIRouter(prefix="/v3/{project_id}/snapshots")


@router.post("", status_code=202)
async def create_snapshot(body: SnapshotCreateBody, request: Request, context: Context,
                          authorize: Authorize, version: Version) -> JSONResponse:
    authorize("volume:create_snapshot", {"project_id": context.project_id})
    s = body.snapshot
    force = s.force if isinstance(s.force, bool) else parse_bool(str(s.force), "force")
    snapshot = await runtime(request).create_snapshot(
        context, s.volume_id, name=s.name if s.name is not None else s.display_name,
        description=s.description if s.description is not None else s.display_description,
        metadata=s.metadata or {}, force=force)
    return JSONResponse({"snapshot": views.snapshot_view(snapshot, version=version)},
                        status_code=202)


async def _list(request: Request, svc: Any, context: Any, version: Any) -> dict[str, Any]:
    params = dict(request.query_params)
    all_tenants = context.is_admin and parse_bool(params.get("all_tenants", "0"), "all_tenants")
    filters = {k: params[k] for k in ("name", "status", "volume_id") if k in params}
    limit = parse_int(params["limit"], "limit") if "limit" in params else None
    rows = await svc.snapshots.list_page(None if all_tenants else context.project_id,
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
    snapshot = await svc.snapshots.get(snapshot_id,
                                      None if context.is_admin else context.project_id)
    authorize("volume:get_snapshot", {"project_id": snapshot.project_id})
    return {"snapshot": views.snapshot_view(snapshot, version=version)}


@router.put("/{snapshot_id}")
async def update_snapshot(snapshot_id: str, body: SnapshotUpdateBody, svc: Service,
                          context: Context, authorize: Authorize,
                          version: Version) -> dict[str, Any]:
    snapshot = await svc.snapshots.get(snapshot_id,
                                      None if context.is_admin else context.project_id)
    authorize("volume:update_snapshot", {"project_id": snapshot.project_id})
    snapshot = await svc.snapshots.rename(snapshot, body.snapshot.changes())
    return {"snapshot": views.snapshot_view(snapshot, version=version)}


@router.delete("/{snapshot_id}", status_code=202)
async def delete_snapshot(snapshot_id: str, request: Request, context: Context,
                          authorize: Authorize) -> Response:
    project = None if context.is_admin else context.project_id
    async with runtime(request).service() as svc:
        snapshot = await svc.snapshots.get(snapshot_id, project)
    authorize("volume:delete_snapshot", {"project_id": snapshot.project_id})
    await runtime(request).delete_snapshot(context, snapshot_id, project)
    return Response(status_code=202)
