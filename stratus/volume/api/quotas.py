"""``os-quota-sets``, ``limits`` and ``os-services`` of block storage."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from stratus.core.exceptions import BadRequest
from stratus.volume.api.deps import Authorize, Context, Service, runtime
from stratus.volume.api.schemas import QuotaSetBody
from stratus.volume.api.volumes import _bool
from stratus.volume.quotas import RESOURCES, defaults
from stratus.volume.service import is_up

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
    if _bool(request.query_params.get("usage", "false"), "usage"):
        used = await svc.quotas.usage(target)
        return {"quota_set": {"id": target, **{
            r: {"limit": limits[r], "in_use": used.get(r, 0), "reserved": 0,
                "allocated": 0} for r in RESOURCES}}}
    return {"quota_set": {"id": target, **{r: limits[r] for r in RESOURCES}}}


@router.put("/os-quota-sets/{target}")
async def update_quotas(target: str, body: QuotaSetBody, svc: Service, context: Context,
                        authorize: Authorize) -> dict[str, Any]:
    authorize("volume_extension:quotas:update", {"project_id": target})
    changes: dict[str, int] = {}
    for key, value in body.quota_set.items():
        if key in ("tenant_id", "id"):
            continue
        if key not in RESOURCES:
            raise BadRequest(f"Invalid input received: Bad key(s) in quota set: {key}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise BadRequest(f"Invalid input received: {key} must be an integer.") from None
        if number < -1:
            raise BadRequest(f"Invalid input received: {key} must be >= -1.")
        changes[key] = number
    limits = await svc.quotas.set_limits(target, changes)
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
    options = runtime(request).options
    from stratus.volume.api.views import timestamp

    return {"services": [{
        "binary": "cinder-volume", "host": f"{s.host}@{s.backend}", "zone":
        s.availability_zone, "status": "disabled" if s.disabled else "enabled",
        "state": "up" if is_up(s.last_seen_up, options.service_down_time) else "down",
        "updated_at": timestamp(s.last_seen_up), "disabled_reason": None,
    } for s in await svc.list_services()]}
