"""``/os-availability-zone``: the zones of the compute services, and (admin) their hosts.

A zone is available when at least one enabled ``nova-compute`` service is in it. Services
other than compute hosts belong to the ``internal`` zone, shown only in the detail.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stratus.compute.api.deps import Authorize, Context, Service
from stratus.compute.api.server_views import timestamp
from stratus.compute.hosts import INTERNAL_ZONE, zone_of, zone_states

router = APIRouter(prefix="/v2.1/os-availability-zone")


@router.get("")
async def index(svc: Service, context: Context, authorize: Authorize) -> dict[str, Any]:
    authorize("os_compute_api:os-availability-zone:list")
    zones = zone_states(await svc.hosts.services_by_host())
    return {"availabilityZoneInfo": [
        {"zoneName": name, "zoneState": {"available": available}, "hosts": None}
        for name, available in sorted(zones.items(), key=lambda z: (not z[1], z[0]))]}


@router.get("/detail")
async def detail(svc: Service, context: Context, authorize: Authorize) -> dict[str, Any]:
    authorize("os_compute_api:os-availability-zone:detail")
    services = await svc.hosts.services_by_host()
    available = zone_states(services)
    zones: dict[str, dict[str, dict[str, Any]]] = {}
    for s in services:
        zones.setdefault(zone_of(s), {}).setdefault(s.host, {})[s.binary] = {
            "available": not s.disabled, "active": svc.hosts.is_up(s),
            "updated_at": timestamp(s.updated_at)}
    info = []
    for name in sorted(zones, key=lambda z: (z != INTERNAL_ZONE, z)):
        state = True if name == INTERNAL_ZONE else available.get(name, False)
        info.append({"zoneName": name, "zoneState": {"available": state},
                     "hosts": zones[name]})
    return {"availabilityZoneInfo": info}
