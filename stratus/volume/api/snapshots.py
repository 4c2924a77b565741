"""``/v3/{project_id}/snapshots``: create, list, show, update, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from stratus.core.exceptions import NotFound
from stratus.core.web import listing
from stratus.core.web.listing import ListSpec
from stratus.volume.api import views
from stratus.volume.api.deps import CallerDep, Context, Service, URLs, Version, runtime
from stratus.volume.api.params import SNAPSHOT_SORT_KEYS, parse_bool, snapshot_query
from stratus.volume.api.schemas import (
    MetadataBody,
    MetaItemBody,
    SnapshotCreateBody,
    SnapshotUpdateBody,
)

router = APIRouter(prefix="/v3/{project_id}/snapshots")


@router.post("", status_code=202)
async def create_snapshot(body: SnapshotCreateBody, request: Request, context: Context,
                          caller: CallerDep, version: Version) -> JSONResponse:
    caller.authorize("volume:create_snapshot", {"project_id": context.project_id})
    s = body.snapshot
    if s.volume_id is None:
        raise NotFound("Volume None could not be found.")
    force = s.force if isinstance(s.force, bool) else parse_bool(str(s.force), "force")
    snapshot = await runtime(request).create_snapshot(
        context, s.volume_id, name=s.name if s.name is not None else s.display_name,
        description=s.description if s.description is not None else s.display_description,
        metadata=s.metadata or {}, force=force)
    return JSONResponse({"snapshot": views.snapshot_view(snapshot, version=version,
                                                         extended=False)},
                        status_code=202)


@router.get("")
@router.get("/detail")
async def list_snapshots(request: Request, svc: Service, context: Context,
                         caller: CallerDep, version: Version,
                         urls: URLs) -> dict[str, Any]:
    """Both ``/snapshots`` and ``/snapshots/detail``: the detail adds Cinder's extended
    attributes; the ``next`` link keeps the path that was asked."""
    caller.authorize("volume:get_all_snapshots", {"project_id": context.project_id})
    spec = ListSpec("snapshots", sort_keys=SNAPSHOT_SORT_KEYS,
                    max_limit=runtime(request).options.limit_max)
    req, query = snapshot_query(request.query_params, spec, context)
    rows, more = await svc.snapshots.list_page(query)
    detail = request.url.path.endswith("/detail")
    body = {"snapshots": [views.snapshot_view(s, version=version, extended=detail)
                          for s in rows]}
    url = urls.url("snapshots/detail" if detail else "snapshots")
    return body | listing.CINDER.links(req, spec, url,
                                       next_marker=listing.CINDER.next_marker(
                                           req, [r.id for r in rows], more))


@router.get("/{snapshot_id}")
async def show_snapshot(snapshot_id: str, svc: Service, context: Context,
                        caller: CallerDep, version: Version) -> dict[str, Any]:
    snapshot = await svc.snapshots.get(snapshot_id,
                                      None if context.is_admin else context.project_id)
    caller.authorize("volume:get_snapshot", {"project_id": snapshot.project_id})
    return {"snapshot": views.snapshot_view(snapshot, version=version)}


@router.put("/{snapshot_id}")
async def update_snapshot(snapshot_id: str, body: SnapshotUpdateBody, svc: Service,
                          context: Context, caller: CallerDep,
                          version: Version) -> dict[str, Any]:
    snapshot = await svc.snapshots.get(snapshot_id,
                                      None if context.is_admin else context.project_id)
    caller.authorize("volume:update_snapshot", {"project_id": snapshot.project_id})
    snapshot = await svc.snapshots.rename(snapshot, body.snapshot.changes())
    return {"snapshot": views.snapshot_view(snapshot, version=version, extended=False)}


@router.delete("/{snapshot_id}", status_code=202)
async def delete_snapshot(snapshot_id: str, request: Request, context: Context,
                          caller: CallerDep) -> Response:
    project = None if context.is_admin else context.project_id
    async with runtime(request).service() as svc:
        snapshot = await svc.snapshots.get(snapshot_id, project)
    caller.authorize("volume:delete_snapshot", {"project_id": snapshot.project_id})
    await runtime(request).delete_snapshot(context, snapshot_id, project)
    return Response(status_code=202)


# Metadata ------------------------------------------------------------------------------


@router.get("/{snapshot_id}/metadata")
async def get_metadata(snapshot_id: str, svc: Service, context: Context,
                       caller: CallerDep) -> dict[str, Any]:
    snapshot = await svc.snapshots.get(snapshot_id,
                                      None if context.is_admin else context.project_id)
    caller.authorize("volume:get_snapshot_metadata", {"project_id": snapshot.project_id})
    return {"metadata": dict(snapshot.metadata_ or {})}


@router.post("/{snapshot_id}/metadata")
async def add_metadata(snapshot_id: str, body: MetadataBody, svc: Service, context: Context,
                       caller: CallerDep) -> dict[str, Any]:
    snapshot = await svc.snapshots.get(snapshot_id,
                                      None if context.is_admin else context.project_id)
    caller.authorize("volume:update_snapshot_metadata", {"project_id": snapshot.project_id})
    return {"metadata": await svc.snapshots.metadata.set_all(snapshot, body.metadata,
                                                             replace=False)}


@router.put("/{snapshot_id}/metadata")
async def replace_metadata(snapshot_id: str, body: MetadataBody, svc: Service,
                           context: Context, caller: CallerDep) -> dict[str, Any]:
    snapshot = await svc.snapshots.get(snapshot_id,
                                      None if context.is_admin else context.project_id)
    caller.authorize("volume:update_snapshot_metadata", {"project_id": snapshot.project_id})
    return {"metadata": await svc.snapshots.metadata.set_all(snapshot, body.metadata,
                                                             replace=True)}


@router.get("/{snapshot_id}/metadata/{key}")
async def get_meta_item(snapshot_id: str, key: str, svc: Service, context: Context,
                        caller: CallerDep) -> dict[str, Any]:
    snapshot = await svc.snapshots.get(snapshot_id,
                                      None if context.is_admin else context.project_id)
    caller.authorize("volume:get_snapshot_metadata", {"project_id": snapshot.project_id})
    return {"meta": {key: svc.snapshots.metadata.item(snapshot, key)}}


@router.put("/{snapshot_id}/metadata/{key}")
async def set_meta_item(snapshot_id: str, key: str, body: MetaItemBody, svc: Service,
                        context: Context, caller: CallerDep) -> dict[str, Any]:
    snapshot = await svc.snapshots.get(snapshot_id,
                                      None if context.is_admin else context.project_id)
    caller.authorize("volume:update_snapshot_metadata", {"project_id": snapshot.project_id})
    await svc.snapshots.metadata.set_item(snapshot, key, body.meta)
    return {"meta": dict(body.meta)}


@router.delete("/{snapshot_id}/metadata/{key}")
async def delete_meta_item(snapshot_id: str, key: str, svc: Service, context: Context,
                           caller: CallerDep) -> Response:
    snapshot = await svc.snapshots.get(snapshot_id,
                                      None if context.is_admin else context.project_id)
    caller.authorize("volume:delete_snapshot_metadata", {"project_id": snapshot.project_id})
    await svc.snapshots.metadata.delete_item(snapshot, key)
    return Response(status_code=200)
