"""``os-quota-sets``, ``limits`` and ``os-services`` of block storage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from stratus.volume.api.deps import Authorize, Context, Service, runtime
from stratus.volume.api.params import parse_bool
from stratus.volume.api.schemas import QuotaSetBody
from stratus.volume.api.views import timestamp
from stratus.volume.quotas import RESOURCES, defaults

router = APIRouter(prefix="/v3/{project_id}")


@router.get("/os-quota-sets/{target}/defaults")
async def quota_defaults(target: str, request: Request, context: Context,
                         authorize: Authorize) -> dict[str, Any]:
    authorize("volume_extension:quotas:show", {"project_id": target})
    return {"quota_set": {"id": target, **defaults(runtime(request).options)}}


@router.get("/os-quota-sets/{target}")
async def show_quotas(target: str, request: Request, svc: Service, context: Context,
                      authorize: Authorize) -> dict[str, Any]:
    authorize("volume_extension:quotas:show", {"project_id": target})
    limits = await svc.quotas.limits(target)
    if parse_bool(request.query_params.get("usage", "false"), "usage"):
        used = await svc.quotas.usage(target)
        return {"quota_set": {"id": target, **{
            r: {"limit": limits[r], "in_use": used.get(r, 0), "reserved": 0,
                "allocated": 0} for r in RESOURCES}}}
    return {"quota_set": {"id": target, **{r: limits[r] for r in RESOURCES}}}


@router.put("/os-quota-sets/{target}")
async def update_quotas(target: str, body: QuotaSetBody, svc: Service, context: Context,
                        authorize: Authorize) -> dict[str, Any]:
    authorize("volume_extension:quotas:update", {"project_id": target})
    limits = await svc.quotas.update(target, body.quota_set)
    return {"quota_set": {r: limits[r] for r in RESOURCES}}


@router.delete("/os-quota-sets/{target}")
async def delete_quotas(target: str, svc: Service, authorize: Authorize) -> Response:
    authorize("volume_extension:quotas:delete", {"project_id": target})
    await svc.quotas.reset(target)
    return Response(status_code=200)


@router.get("/limits")
async def limits(svc: Service, context: Context, authorize: Authorize) -> dict[str, Any]:
    assert context.project_id is not None
    authorize("limits_extension:used_limits", {"project_id": context.project_id})
    limit = await svc.quotas.limits(context.project_id)
    used = await svc.quotas.usage(context.project_id)
    return {"limits": {"rate": [], "absolute": {
        "maxTotalVolumes": limit["volumes"], "maxTotalSnapshots": limit["snapshots"],
        "maxTotalVolumeGigabytes": limit["gigabytes"],
        "maxTotalBackups": limit["backups"],
        "maxTotalBackupGigabytes": limit["backup_gigabytes"],
        "totalVolumesUsed": used["volumes"], "totalSnapshotsUsed": used["snapshots"],
        "totalGigabytesUsed": used["gigabytes"], "totalBackupsUsed": 0,
        "totalBackupGigabytesUsed": 0}}}


@router.get("/os-services")
async def services(request: Request, svc: Service, authorize: Authorize) -> dict[str, Any]:
    authorize("volume_extension:services:index")
    return {"services": [{
        "binary": "cinder-volume", "host": f"{s.host}@{s.backend}", "zone":
        s.availability_zone, "status": "disabled" if s.disabled else "enabled",
        "state": "up" if svc.hosts.is_up(s) else "down",
        "updated_at": timestamp(s.last_seen_up), "disabled_reason": None,
    } for s in await svc.hosts.list_all()]}
