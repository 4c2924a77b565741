"""``os-availability-zone`` and ``extensions``: what block storage offers where.

The zones are those of the volume-manager hosts (available while one of the zone's hosts is
up and enabled). The extensions are the API families of Cinder's ``extensions`` list that
this volume-api serves; an alias appears here only when its routes or attributes do.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stratus.volume.api.deps import CallerDep, Service

router = APIRouter(prefix="/v3/{project_id}")

#: The time Cinder stamps on its extensions (they are versioned by microversions now).
_UPDATED = "2013-04-18T00:00:00+00:00"

#: (alias, name, description) of each served family, as Cinder lists them.
EXTENSIONS: tuple[tuple[str, str, str], ...] = (
    ("os-availability-zone", "AvailabilityZones", "Describe Availability Zones."),
    ("os-extended-snapshot-attributes", "ExtendedSnapshotAttributes",
     "Extended SnapshotAttributes support."),
    ("os-quota-sets", "Quotas", "Quota management support."),
    ("os-services", "Services", "Services support."),
    ("os-types-manage", "TypesManage", "Types manage support."),
    ("os-types-extra-specs", "TypesExtraSpecs", "Type extra specs support."),
    ("os-used-limits", "UsedLimits", "Provide data on limited resources that are being used."),
    ("os-vol-host-attr", "VolumeHostAttribute", "Expose host as an attribute of a volume."),
    ("os-vol-image-meta", "VolumeImageMetadata",
     "Show image metadata associated with the volume."),
    ("os-vol-mig-status-attr", "VolumeMigStatusAttribute",
     "Expose migration_status as an attribute of a volume."),
    ("os-vol-tenant-attr", "VolumeTenantAttribute",
     "Expose the internal project_id as an attribute of a volume."),
    ("os-volume-actions", "VolumeActions", "Enable volume actions."),
    ("os-admin-actions", "AdminActions", "Enable admin actions."),
    ("os-volume-transfer", "VolumeTransfer", "Volume transfer management support."),
)


@router.get("/os-availability-zone")
async def availability_zones(svc: Service, caller: CallerDep) -> dict[str, Any]:
    caller.authorize("volume_extension:availability_zone_list")
    zones: dict[str, bool] = {}
    for host in await svc.hosts.list_all():
        up = svc.hosts.is_up(host) and not host.disabled
        zones[host.availability_zone] = zones.get(host.availability_zone, False) or up
    return {"availabilityZoneInfo": [
        {"zoneName": name, "zoneState": {"available": available}}
        for name, available in sorted(zones.items())]}


@router.get("/extensions")
async def extensions(caller: CallerDep) -> dict[str, Any]:
    caller.authorize("volume_extension:extensions")
    return {"extensions": [
        {"alias": alias, "name": name, "description": description, "links": [],
         "updated": _UPDATED} for alias, name, description in EXTENSIONS]}
