"""``/os-availability-zone``: the zones of the compute services, and (admin) their hosts.

A zone is available when at least one enabled ``nova-compute`` service is in it. Services
other than compute hosts belong to the ``internal`` zone, shown only in the detail.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from stratus.compute.api.deps import Authorize, Context, Service
from stratus.compute.api.server_views import timestamp
from stratus.compute.models import ComputeServiceRecord
from stratus.compute.scheduler.host_state import COMPUTE_BINARY, is_up

router = APIRouter(prefix="/v2.1/os-availability-zone")

INTERNAL_ZONE = "internal"
SERVICE_DOWN_TIME = 60.0


def _zone_of(service: ComputeServiceRecord) -> str:
    return service.zone if service.binary == COMPUTE_BINARY else INTERNAL_ZONE


def zone_states(services: list[ComputeServiceRecord]) -> dict[str, bool]:
    """Zone name → available, over compute services only (the internal zone excluded)."""
    zones: dict[str, bool] = {}
    for s in services:
        if s.binary == COMPUTE_BINARY:
            zones[s.zone] = zones.get(s.zone, False) or not s.disabled
    return zones


async def _services(svc: Any) -> list[ComputeServiceRecord]:
    return list(await svc.session.scalars(
        select(ComputeServiceRecord).order_by(ComputeServiceRecord.host,
                                              ComputeServiceRecord.binary)))


@router.get("")
async def index(svc: Service, context: Context, authorize: Authorize) -> dict[str, Any]:
    authorize("os_compute_api:os-availability-zone:list")
    zones = zone_states(await _services(svc))
    return {"availabilityZoneInfo": [
        {"zoneName": name, "zoneState": {"available": available}, "hosts": None}
        for name, available in sorted(zones.items(), key=lambda z: (not z[1], z[0]))]}


@router.get("/detail")
async def detail(svc: Service, context: Context, authorize: Authorize) -> dict[str, Any]:
    authorize("os_compute_api:os-availability-zone:detail")
    services = await _services(svc)
    available = zone_states(services)
    zones: dict[str, dict[str, dict[str, Any]]] = {}
    for s in services:
        zone = _zone_of(s)
        zones.setdefault(zone, {}).setdefault(s.host, {})[s.binary] = {
            "available": not s.disabled,
            "active": is_up(s.last_seen_up, s.forced_down, SERVICE_DOWN_TIME),
            "updated_at": timestamp(s.updated_at)}
    info = []
    for name in sorted(zones, key=lambda z: (z != INTERNAL_ZONE, z)):
        state = True if name == INTERNAL_ZONE else available.get(name, False)
        info.append({"zoneName": name, "zoneState": {"available": state},
                     "hosts": zones[name]})
    return {"availabilityZoneInfo": info}
