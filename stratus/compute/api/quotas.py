"""``/limits`` and ``/os-quota-sets``: what a project may use, and what it uses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from stratus.compute.api.deps import CallerDep, Context, Service, Version
from stratus.compute.api.schemas import MAX_INT
from stratus.compute.quotas import DEFAULTS
from stratus.core.web.microversions import APIVersion

router = APIRouter(prefix="/v2.1")

#: Quotas Nova still shows before the microversions that dropped them (2.36, 2.57).
_LEGACY_236 = {"fixed_ips": -1, "floating_ips": 10, "security_group_rules": 20,
               "security_groups": 10}
_LEGACY_257 = {"injected_file_content_bytes": 10240, "injected_file_path_bytes": 255,
               "injected_files": 5}


def _quota_set(project_id: str, limits: dict[str, int], version: APIVersion) -> dict[str, Any]:
    body: dict[str, Any] = {"id": project_id}
    for key in ("instances", "cores", "ram", "key_pairs", "metadata_items", "server_groups",
                "server_group_members"):
        body[key] = limits[key]
    if not version.at_least("2.36"):
        body.update(_LEGACY_236)
    if not version.at_least("2.57"):
        body.update(_LEGACY_257)
    return body


@router.get("/limits")
async def limits(svc: Service, context: Context, version: Version) -> dict[str, Any]:
    project_id = context.require_project()
    quota = await svc.quotas.limits(project_id)
    used = await svc.quotas.usage(project_id)
    groups = await svc.quotas.server_groups_of(project_id)
    absolute: dict[str, Any] = {
        "maxTotalInstances": quota["instances"], "maxTotalCores": quota["cores"],
        "maxTotalRAMSize": quota["ram"], "maxTotalKeypairs": quota["key_pairs"],
        "maxServerMeta": quota["metadata_items"], "maxServerGroups": quota["server_groups"],
        "maxServerGroupMembers": quota["server_group_members"],
        "totalInstancesUsed": used["instances"], "totalCoresUsed": used["cores"],
        "totalRAMUsed": used["ram"], "totalServerGroupsUsed": groups,
    }
    if not version.at_least("2.36"):
        absolute.update({"maxTotalFloatingIps": 10, "totalFloatingIpsUsed": 0,
                         "maxSecurityGroups": 10, "totalSecurityGroupsUsed": 0,
                         "maxSecurityGroupRules": 20})
    if not version.at_least("2.39"):
        absolute["maxImageMeta"] = 128
    if not version.at_least("2.57"):
        absolute.update({"maxPersonality": 5, "maxPersonalitySize": 10240})
    return {"limits": {"rate": [], "absolute": absolute}}


@router.get("/os-quota-sets/{project_id}")
async def show_quota(project_id: str, svc: Service, caller: CallerDep,
                     version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-quota-sets:show", {"project_id": project_id})
    return {"quota_set": _quota_set(project_id, await svc.quotas.limits(project_id), version)}


@router.get("/os-quota-sets/{project_id}/detail")
async def show_quota_detail(project_id: str, svc: Service, caller: CallerDep,
                            version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-quota-sets:detail", {"project_id": project_id})
    limits = await svc.quotas.limits(project_id)
    used = await svc.quotas.usage_detail(project_id)
    body: dict[str, Any] = {"id": project_id}
    for key, value in _quota_set(project_id, limits, version).items():
        if key != "id":
            body[key] = {"limit": value, "in_use": used.get(key, 0), "reserved": 0}
    return {"quota_set": body}


@router.get("/os-quota-sets/{project_id}/defaults")
async def show_defaults(project_id: str, caller: CallerDep,
                        version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-quota-sets:defaults")
    return {"quota_set": _quota_set(project_id, dict(DEFAULTS), version)}


class QuotaUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    instances: int | None = Field(default=None, ge=-1, le=MAX_INT)
    cores: int | None = Field(default=None, ge=-1, le=MAX_INT)
    ram: int | None = Field(default=None, ge=-1, le=MAX_INT)
    key_pairs: int | None = Field(default=None, ge=-1, le=MAX_INT)
    metadata_items: int | None = Field(default=None, ge=-1, le=MAX_INT)
    server_groups: int | None = Field(default=None, ge=-1, le=MAX_INT)
    server_group_members: int | None = Field(default=None, ge=-1, le=MAX_INT)
    force: bool = False


class QuotaUpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    quota_set: QuotaUpdate


@router.put("/os-quota-sets/{project_id}")
async def update_quota(project_id: str, body: QuotaUpdateBody, svc: Service,
                       caller: CallerDep, version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-quota-sets:update", {"project_id": project_id})
    limits = await svc.quotas.update(
        project_id, body.quota_set.model_dump(exclude_none=True, exclude={"force"}),
        force=body.quota_set.force)
    quota_set = _quota_set(project_id, limits, version)
    quota_set.pop("id")
    return {"quota_set": quota_set}
