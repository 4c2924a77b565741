"""``/os-services`` and ``/os-hypervisors``: the compute hosts, as operators see them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from stratus.compute.api.deps import CallerDep, Service, URLs, Version
from stratus.compute.api.server_views import timestamp
from stratus.compute.hosts import ComputeServiceRecord, Hypervisor
from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.web import listing, params
from stratus.core.web.listing import ListRequest, ListSpec
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
async def list_services(svc: Service, caller: CallerDep, version: Version,
                        host: str | None = None, binary: str | None = None) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-services:list")
    return {"services": [_service_view(s, svc.hosts.is_up(s), version)
                         for s in await svc.hosts.services(host=host, binary=binary)]}


class ServiceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    status: str | None = None
    disabled_reason: str | None = None
    forced_down: bool | None = None


@router.put("/os-services/{service_id}")
async def update_service(service_id: str, body: ServiceUpdate, svc: Service,
                         caller: CallerDep, version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-services:update")
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


HYPERVISORS = ListSpec("hypervisors")


async def _hypervisor_list(request: Request, svc: Service, urls: URLs, version: Version,
                           detail: bool, limit: str | None,
                           marker: str | None) -> dict[str, Any]:
    """A page of hypervisors; ``limit`` and ``marker`` (an id as shown) from 2.33."""
    paging = version.at_least("2.33")
    count = params.NOVA.optional_integer("limit", limit) if paging else None
    after = None
    if paging and marker is not None:
        try:  # the marker is an id as shown: a uuid from 2.53, a position before
            after = (await svc.hosts.hypervisor(marker)).provider.uuid
        except NotFound as exc:
            raise BadRequest(f"marker [{marker}] not found") from exc
    found = await svc.hosts.hypervisors(limit=count, marker=after)
    body = {"hypervisors": [_hypervisor_view(h, version, detail) for h in found]}
    full = count is not None and found and len(found) == count
    last = (found[-1].provider.uuid if version.at_least("2.53") else str(found[-1].index)) \
        if full else None
    path = "os-hypervisors/detail" if detail else "os-hypervisors"
    return body | listing.NOVA.links(ListRequest(query=tuple(request.query_params.multi_items())),
                                     HYPERVISORS, urls.url(path), next_marker=last)


@router.get("/os-hypervisors")
async def list_hypervisors(request: Request, svc: Service, caller: CallerDep, urls: URLs,
                           version: Version, limit: str | None = None,
                           marker: str | None = None) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-hypervisors:list")
    return await _hypervisor_list(request, svc, urls, version, False, limit, marker)


@router.get("/os-hypervisors/detail")
async def list_hypervisors_detail(request: Request, svc: Service, caller: CallerDep,
                                  urls: URLs, version: Version, limit: str | None = None,
                                  marker: str | None = None) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-hypervisors:list-detail")
    return await _hypervisor_list(request, svc, urls, version, True, limit, marker)


@router.get("/os-hypervisors/statistics")
async def hypervisor_statistics(svc: Service, caller: CallerDep,
                                version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-hypervisors:statistics")
    if version.at_least("2.88"):
        raise NotFound("Hypervisor statistics are not available from microversion 2.88.")
    stats: dict[str, Any] = await svc.hosts.hypervisor_totals()
    stats.update(current_workload=0,
                 free_ram_mb=stats["memory_mb"] - stats["memory_mb_used"],
                 free_disk_gb=stats["local_gb"] - stats["local_gb_used"],
                 disk_available_least=stats["local_gb"] - stats["local_gb_used"])
    return {"hypervisor_statistics": stats}


@router.get("/os-hypervisors/{hypervisor_id}")
async def show_hypervisor(hypervisor_id: str, svc: Service, caller: CallerDep,
                          version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-hypervisors:show")
    return {"hypervisor": _hypervisor_view(await svc.hosts.hypervisor(hypervisor_id), version,
                                           True)}
