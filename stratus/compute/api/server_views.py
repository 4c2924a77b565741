"""JSON views of servers, exactly as the requested microversion shapes them.

Tempest checks these bodies against closed schemas, so a key appears only from the
microversion that introduced it (2.3 extended attributes, 2.9 ``locked``, 2.16
``host_status``, 2.19 ``description``, 2.26 ``tags``, 2.47 embedded flavor, 2.63 trusted
certificates, 2.71 ``server_groups``, 2.73 ``locked_reason``, 2.96
``pinned_availability_zone``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from stratus.compute import states
from stratus.compute.api.deps import Links
from stratus.compute.instances import Instance, InstanceFault
from stratus.core.web.microversions import APIVersion

#: Statuses during which Nova reports ``progress``.
_PROGRESS_STATUSES = {"ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING"}


def timestamp(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def action_timestamp(value: dt.datetime | None) -> str | None:
    """Instance actions and their events carry microseconds and no zone, as Nova's do
    (``2018-04-25T01:26:36.790544``)."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def host_id(instance: Instance) -> str:
    if not instance.host:
        return ""
    return hashlib.sha224(f"{instance.project_id}{instance.host}".encode()).hexdigest()


def brief(instance: Instance, links: Links) -> dict[str, Any]:
    return {"id": instance.uuid, "name": instance.display_name,
            "links": links.pair(f"servers/{instance.uuid}")}


def _flavor(instance: Instance, links: Links, version: APIVersion) -> dict[str, Any]:
    flavor = instance.flavor or {}
    if not version.at_least("2.47"):
        return {"id": instance.flavor_id,
                "links": [links.pair(f"flavors/{instance.flavor_id}")[1]]}
    return {"original_name": flavor.get("name"), "vcpus": flavor.get("vcpus"),
            "ram": flavor.get("ram"), "disk": flavor.get("disk"),
            "ephemeral": flavor.get("ephemeral", 0), "swap": flavor.get("swap", 0),
            "extra_specs": dict(flavor.get("extra_specs") or {})}


def addresses_of(instance: Instance) -> dict[str, list[dict[str, Any]]]:
    """Per network, each fixed address and then the floating ones translated to it (as Nova
    lists them)."""
    addresses: dict[str, list[dict[str, Any]]] = {}
    for vif in instance.network_info or []:
        for ip in vif.get("ips", []):
            shown = addresses.setdefault(vif.get("network_name", "network"), [])
            shown.append({
                "version": ip.get("version", 4), "addr": ip["address"],
                "OS-EXT-IPS:type": "fixed", "OS-EXT-IPS-MAC:mac_addr": vif.get("address")})
            shown.extend({
                "version": ip.get("version", 4), "addr": floating,
                "OS-EXT-IPS:type": "floating", "OS-EXT-IPS-MAC:mac_addr": vif.get("address")}
                for floating in ip.get("floating_ips") or [])
    return addresses


def _fault(fault: InstanceFault, admin: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"code": fault.code, "created": timestamp(fault.created_at),
                            "message": fault.message}
    if admin or fault.code != 500:  # Nova hides details of internal errors from users
        body["details"] = fault.details
    return body


def detail(instance: Instance, links: Links, version: APIVersion, *, admin: bool,
           fault: InstanceFault | None = None, host_up: bool | None = None,
           group_uuids: list[str] | None = None) -> dict[str, Any]:
    status = states.status(instance.vm_state, instance.task_state)
    body: dict[str, Any] = {
        **brief(instance, links),
        "status": status,
        "tenant_id": instance.project_id,
        "user_id": instance.user_id,
        "metadata": dict(instance.server_metadata or {}),
        "hostId": host_id(instance),
        "image": ({"id": instance.image_ref,
                   "links": [links.pair(f"images/{instance.image_ref}")[1]]}
                  if instance.image_ref else ""),
        "flavor": _flavor(instance, links, version),
        "created": timestamp(instance.created_at),
        "updated": timestamp(instance.updated_at or instance.created_at),
        "addresses": addresses_of(instance),
        "accessIPv4": instance.access_ip_v4 or "",
        "accessIPv6": instance.access_ip_v6 or "",
        "OS-DCF:diskConfig": "MANUAL",
        "OS-EXT-AZ:availability_zone": instance.availability_zone or "nova",
        "config_drive": instance.config_drive or "",
        "key_name": instance.key_name,
        "OS-SRV-USG:launched_at": _usage_time(instance.launched_at),
        "OS-SRV-USG:terminated_at": _usage_time(instance.terminated_at),
        "OS-EXT-STS:task_state": instance.task_state,
        "OS-EXT-STS:vm_state": instance.vm_state,
        "OS-EXT-STS:power_state": instance.power_state,
        "os-extended-volumes:volumes_attached": [],
        "security_groups": [{"name": name} for name in instance.security_groups or []],
    }
    if status in _PROGRESS_STATUSES:
        body["progress"] = instance.progress
    if fault is not None and instance.vm_state == states.ERROR:
        body["fault"] = _fault(fault, admin)
    if admin:
        body["OS-EXT-SRV-ATTR:host"] = instance.host
        body["OS-EXT-SRV-ATTR:hypervisor_hostname"] = instance.node
        body["OS-EXT-SRV-ATTR:instance_name"] = f"instance-{instance.uuid[:8]}"
    if version.at_least("2.3") and admin:
        body.update({
            "OS-EXT-SRV-ATTR:reservation_id": instance.reservation_id,
            "OS-EXT-SRV-ATTR:launch_index": instance.launch_index,
            "OS-EXT-SRV-ATTR:hostname": instance.hostname,
            "OS-EXT-SRV-ATTR:kernel_id": "",
            "OS-EXT-SRV-ATTR:ramdisk_id": "",
            "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
            "OS-EXT-SRV-ATTR:user_data": instance.user_data,
        })
    if version.at_least("2.9"):
        body["locked"] = instance.locked
    if version.at_least("2.16") and admin:
        body["host_status"] = "" if not instance.host else ("UP" if host_up else "DOWN")
    if version.at_least("2.19"):
        body["description"] = instance.display_description
    if version.at_least("2.26"):
        body["tags"] = list(instance.tags or [])
    if version.at_least("2.63"):
        body["trusted_image_certificates"] = None
    if version.at_least("2.71"):
        body["server_groups"] = list(group_uuids or [])
    if version.at_least("2.73"):
        body["locked_reason"] = instance.locked_reason
    if version.at_least("2.90"):
        body["OS-EXT-SRV-ATTR:hostname"] = instance.hostname
    if version.at_least("2.96"):
        body["pinned_availability_zone"] = instance.availability_zone
    return body


#: What ``PUT /servers/{id}`` and ``rebuild`` answer below 2.75: Nova's base server view,
#: without what its extensions add to ``GET`` (availability zone, config drive, key name,
#: usage times, extended status, volumes, security groups, the admin's host attributes and
#: host status). The versioned keys here appear only at their own microversions.
_UPDATE_KEYS = frozenset({
    "id", "name", "status", "tenant_id", "user_id", "metadata", "hostId", "image", "flavor",
    "created", "updated", "addresses", "accessIPv4", "accessIPv6", "OS-DCF:diskConfig",
    "links", "progress", "fault", "locked", "description", "tags",
    "trusted_image_certificates", "server_groups", "locked_reason",
})


def as_updated(body: dict[str, Any], version: APIVersion) -> dict[str, Any]:
    """A ``detail`` body as update and rebuild answer at ``version``: from 2.75 the same as
    ``GET``; before, the base view, its addresses without their type and MAC."""
    if version.at_least("2.75"):
        return body
    kept = {key: value for key, value in body.items() if key in _UPDATE_KEYS}
    kept["addresses"] = {
        network: [{"version": a["version"], "addr": a["addr"]} for a in shown]
        for network, shown in body.get("addresses", {}).items()}
    return kept


def _usage_time(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") if value else None
