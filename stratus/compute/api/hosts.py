"""``/os-services`` and ``/os-hypervisors``: the compute hosts, as operators see them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select

from stratus.compute.api.deps import Authorize, Service, Version
from stratus.compute.api.server_views import timestamp
from stratus.compute.models import Allocation, ComputeServiceRecord, Inventory, ResourceProvider
from stratus.compute.scheduler.host_state import is_up
from stratus.compute.scheduler.placement import DISK_GB, MEMORY_MB, VCPU
from stratus.compute.service import ComputeService
from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.web.microversions import APIVersion

router = APIRouter(prefix="/v2.1")

SERVICE_DOWN_TIME = 60.0


def _service_view(s: ComputeServiceRecord, version: APIVersion) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": s.uuid if version.at_least("2.53") else s.id,
        "binary": s.binary, "host": s.host, "zone": s.zone,
        "status": "disabled" if s.disabled else "enabled",
        "state": "up" if is_up(s.last_seen_up, s.forced_down, SERVICE_DOWN_TIME) else "down",
        "updated_at": timestamp(s.updated_at), "disabled_reason": s.disabled_reason,
    }
    if version.at_least("2.11"):
        body["forced_down"] = s.forced_down
    return body


@router.get("/os-services")
async def list_services(svc: Service, authorize: Authorize, version: Version,
                        host: str | None = None, binary: str | None = None) -> dict[str, Any]:
    authorize("os_compute_api:os-services:list")
    query = select(ComputeServiceRecord).order_by(ComputeServiceRecord.id)
    if host:
        query = query.where(ComputeServiceRecord.host == host)
    if binary:
        query = query.where(ComputeServiceRecord.binary == binary)
    return {"services": [_service_view(s, version) for s in await svc.session.scalars(query)]}


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
    service = await svc.session.scalar(select(ComputeServiceRecord).where(
        ComputeServiceRecord.uuid == service_id))
    if service is None:
        raise NotFound(f"Service {service_id} could not be found.")
    if body.status is not None:
        if body.status not in ("enabled", "disabled"):
            raise BadRequest("status must be 'enabled' or 'disabled'.")
        service.disabled = body.status == "disabled"
        service.disabled_reason = body.disabled_reason if service.disabled else None
    elif body.disabled_reason is not None:
        raise BadRequest("disabled_reason needs status 'disabled'.")
    if body.forced_down is not None:
        service.forced_down = body.forced_down
    await svc.session.flush()
    return {"service": _service_view(service, version)}


async def _hypervisors(svc: ComputeService) -> list[dict[str, Any]]:
    providers = list(await svc.session.scalars(
        select(ResourceProvider).order_by(ResourceProvider.name)))
    inventories: dict[str, dict[str, Inventory]] = {}
    for row in await svc.session.scalars(select(Inventory)):
        inventories.setdefault(row.provider_uuid, {})[row.resource_class] = row
    used: dict[str, dict[str, int]] = {}
    running: dict[str, int] = {}
    for provider, rc, total, consumers in (await svc.session.execute(
            select(Allocation.provider_uuid, Allocation.resource_class,
                   func.sum(Allocation.used), func.count(Allocation.consumer_uuid.distinct()))
            .group_by(Allocation.provider_uuid, Allocation.resource_class))).all():
        used.setdefault(provider, {})[rc] = int(total or 0)
        running[provider] = max(running.get(provider, 0), int(consumers))
    services = {s.host: s for s in await svc.session.scalars(select(ComputeServiceRecord))}
    result = []
    for index, p in enumerate(providers, start=1):
        inv = inventories.get(p.uuid, {})
        u = used.get(p.uuid, {})
        service = services.get(p.name)

        def capacity(rc: str, inv: dict[str, Inventory] = inv) -> int:
            return inv[rc].total if rc in inv else 0

        result.append({
            "provider": p, "index": index, "service": service,
            "vcpus": capacity(VCPU), "memory_mb": capacity(MEMORY_MB),
            "local_gb": capacity(DISK_GB),
            "vcpus_used": u.get(VCPU, 0), "memory_mb_used": u.get(MEMORY_MB, 0),
            "local_gb_used": u.get(DISK_GB, 0), "running_vms": running.get(p.uuid, 0)})
    return result


def _hypervisor_view(h: dict[str, Any], version: APIVersion, detail: bool) -> dict[str, Any]:
    provider: ResourceProvider = h["provider"]
    service: ComputeServiceRecord | None = h["service"]
    up = service is not None and is_up(service.last_seen_up, service.forced_down,
                                       SERVICE_DOWN_TIME)
    body: dict[str, Any] = {
        "id": provider.uuid if version.at_least("2.53") else h["index"],
        "hypervisor_hostname": provider.name,
        "state": "up" if up else "down",
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
            "vcpus": h["vcpus"], "memory_mb": h["memory_mb"], "local_gb": h["local_gb"],
            "vcpus_used": h["vcpus_used"], "memory_mb_used": h["memory_mb_used"],
            "local_gb_used": h["local_gb_used"],
            "free_ram_mb": h["memory_mb"] - h["memory_mb_used"],
            "free_disk_gb": h["local_gb"] - h["local_gb_used"],
            "current_workload": 0, "running_vms": h["running_vms"],
            "disk_available_least": h["local_gb"] - h["local_gb_used"],
            # A JSON string until 2.28, an object from then on.
            "cpu_info": {} if version.at_least("2.28") else "{}",
        })
    return body


@router.get("/os-hypervisors")
async def list_hypervisors(svc: Service, authorize: Authorize,
                           version: Version) -> dict[str, Any]:
    authorize("os_compute_api:os-hypervisors:list")
    return {"hypervisors": [_hypervisor_view(h, version, False)
                            for h in await _hypervisors(svc)]}


@router.get("/os-hypervisors/detail")
async def list_hypervisors_detail(svc: Service, authorize: Authorize,
                                  version: Version) -> dict[str, Any]:
    authorize("os_compute_api:os-hypervisors:list-detail")
    return {"hypervisors": [_hypervisor_view(h, version, True)
                            for h in await _hypervisors(svc)]}


@router.get("/os-hypervisors/statistics")
async def hypervisor_statistics(svc: Service, authorize: Authorize,
                                version: Version) -> dict[str, Any]:
    authorize("os_compute_api:os-hypervisors:statistics")
    if version.at_least("2.88"):
        raise NotFound("Hypervisor statistics are not available from microversion 2.88.")
    rows = await _hypervisors(svc)
    keys = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
            "running_vms")
    stats: dict[str, Any] = {k: sum(h[k] for h in rows) for k in keys}
    stats.update(count=len(rows), current_workload=0,
                 free_ram_mb=stats["memory_mb"] - stats["memory_mb_used"],
                 free_disk_gb=stats["local_gb"] - stats["local_gb_used"],
                 disk_available_least=stats["local_gb"] - stats["local_gb_used"])
    return {"hypervisor_statistics": stats}


@router.get("/os-hypervisors/{hypervisor_id}")
async def show_hypervisor(hypervisor_id: str, svc: Service, authorize: Authorize,
                          version: Version) -> dict[str, Any]:
    authorize("os_compute_api:os-hypervisors:show")
    for h in await _hypervisors(svc):
        if hypervisor_id in (h["provider"].uuid, str(h["index"])):
            return {"hypervisor": _hypervisor_view(h, version, True)}
    raise NotFound(f"Hypervisor {hypervisor_id} could not be found.")



