"""``/os-services`` and ``/os-hypervisors``: the compute hosts, as operators see them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from stratus.compute.api.deps import Authorize, Service, Version
from stratus.compute.api.server_views import timestamp
from stratus.compute.hosts import ComputeServiceRecord, Hypervisor
from stratus.core.exceptions import NotFound
from stratus.core.web.microversions import APIVersion

router = APIRouter(prefix="/v2.1")


def _service_view(s: ComputeServiceRecord, up: bool, version: APIVersion) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": s.uuid if version.at_least("2.53") else s.id,
        "binary": s.binary, "host": s.host, "zone": s.zone,
        "status": "disabled" if s.disabled else "enabled",
        "state": "up" if up else "down",
        "updated_at": timestamp(s.updated_at), "disabled_reason": s.disabled_reason,
    }
    if version.at_least("2.11"):
        body["forced_down"] = s.forced_down
    return body


@router.get("/os-services")
async def list_services(svc: Service, authorize: Authorize, version: Version,
                        host: str | None = None, binary: str | None = None) -> dict[str, Any]:
    authorize("os_compute_api:os-services:list")
    return {"services": [_service_view(s, svc.hosts.is_up(s), version)
                         for s in await svc.hosts.services(host=host, binary=binary)]}


class ServiceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    status: str | None = None
    disabled_reason: str | None = None
    forced_down: bool | None = None


@router.put("/os-services/{service_id}")
async def update_service(service_id: str, body: ServiceUpdate, svc: Service,
                         authorize: Authorize, version: Version) -> dict[str, Any]:
    authorize("os_compute_api:os-services:update")
    if not version.at_least("2.53"):
        raise NotFound("Updating a service by id needs microversion 2.53 or later.")
    service = await svc.hosts.update_service(
        service_id, status=body.status, disabled_reason=body.disabled_reason,
        forced_down=body.forced_down)
    return {"service": _service_view(service, svc.hosts.is_up(service), version)}


def _hypervisor_view(h: Hypervisor, version: APIVersion, detail: bool) -> dict[str, Any]:
    provider, service = h.provider, h.service
    body: dict[str, Any] = {
        "id": provider.uuid if version.at_least("2.53") else h.index,
        "hypervisor_hostname": provider.name,
        "state": "up" if h.up else "down",
        "status": "disabled" if service is not None and service.disabled else "enabled",
    }
    if not detail:
        return body
    body.update({
        "hypervisor_type": provider.hypervisor_type, "hypervisor_version": 1000,
        "host_ip": "127.0.0.1",
        "service": {"host": provider.name,
                    "id": (service.uuid if version.at_least("2.53") else service.id)
                    if service else None,
                    "disabled_reason": service.disabled_reason if service else None},
    })
    if not version.at_least("2.88"):
        body.update({
            "vcpus": h.vcpus, "memory_mb": h.memory_mb, "local_gb": h.local_gb,
            "vcpus_used": h.vcpus_used, "memory_mb_used": h.memory_mb_used,
            "local_gb_used": h.local_gb_used,
            "free_ram_mb": h.memory_mb - h.memory_mb_used,
            "free_disk_gb": h.local_gb - h.local_gb_used,
            "current_workload": 0, "running_vms": h.running_vms,
            "disk_available_least": h.local_gb - h.local_gb_used,
            # A JSON string until 2.28, an object from then on.
            "cpu_info": {} if version.at_least("2.28") else "{}",
        })
    return body


async def _hypervisor_list(svc: Service, version: Version, detail: bool) -> dict[str, Any]:
    return {"hypervisors": [_hypervisor_view(h, version, detail)
                            for h in await svc.hosts.hypervisors()]}


@router.get("/os-hypervisors")
async def list_hypervisors(svc: Service, authorize: Authorize,
                           version: Version) -> dict[str, Any]:
    authorize("os_compute_api:os-hypervisors:list")
    return await _hypervisor_list(svc, version, detail=False)


@router.get("/os-hypervisors/detail")
async def list_hypervisors_detail(svc: Service, authorize: Authorize,
                                  version: Version) -> dict[str, Any]:
    authorize("os_compute_api:os-hypervisors:list-detail")
    return await _hypervisor_list(svc, version, detail=True)


@router.get("/os-hypervisors/statistics")
async def hypervisor_statistics(svc: Service, authorize: Authorize,
                                version: Version) -> dict[str, Any]:
    authorize("os_compute_api:os-hypervisors:statistics")
    if version.at_least("2.88"):
        raise NotFound("Hypervisor statistics are not available from microversion 2.88.")
    rows = await svc.hosts.hypervisors()
    keys = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
            "running_vms")
    stats: dict[str, Any] = {k: sum(getattr(h, k) for h in rows) for k in keys}
    stats.update(count=len(rows), current_workload=0,
                 free_ram_mb=stats["memory_mb"] - stats["memory_mb_used"],
                 free_disk_gb=stats["local_gb"] - stats["local_gb_used"],
                 disk_available_least=stats["local_gb"] - stats["local_gb_used"])
    return {"hypervisor_statistics": stats}


@router.get("/os-hypervisors/{hypervisor_id}")
async def show_hypervisor(hypervisor_id: str, svc: Service, authorize: Authorize,
                          version: Version) -> dict[str, Any]:
    authorize("os_compute_api:os-hypervisors:show")
    for h in await svc.hosts.hypervisors():
        if hypervisor_id in (h.provider.uuid, str(h.index)):
            return {"hypervisor": _hypervisor_view(h, version, True)}
    raise NotFound(f"Hypervisor {hypervisor_id} could not be found.")
