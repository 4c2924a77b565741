"""Block Storage v3 response bodies, exact for the requested microversion."""

from __future__ import annotations

import datetime as dt
from typing import Any

from stratus.core.context import RequestContext
from stratus.core.web.microversions import APIVersion
from stratus.volume.api.deps import Links
from stratus.volume.attachments import Attachment
from stratus.volume.snapshots import Snapshot
from stratus.volume.transfers import Transfer
from stratus.volume.types import VolumeType
from stratus.volume.uploads import ImageUpload
from stratus.volume.volumes import Volume


def timestamp(value: dt.datetime | None) -> str | None:
    """Cinder's form: ISO 8601 with microseconds, no zone (the time is UTC)."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def volume_summary(volume: Volume, links: Links) -> dict[str, Any]:
    return {"id": volume.id, "name": volume.name, "links": links.pair(f"volumes/{volume.id}")}


def volume_attachment_items(volume: Volume, attachments: list[Attachment]) -> list[
        dict[str, Any]]:
    return [{"id": volume.id, "attachment_id": a.id, "volume_id": volume.id,
             "server_id": a.instance_uuid, "host_name": a.attached_host,
             "device": a.mountpoint, "attached_at": timestamp(a.attach_time)}
            for a in attachments if a.attach_status == "attached"]


def volume_detail(volume: Volume, *, attachments: list[Attachment],
                  vtype: VolumeType | None, links: Links, context: RequestContext,
                  version: APIVersion, extended: bool = True) -> dict[str, Any]:
    """A volume as ``GET /volumes/{id}`` and ``/volumes/detail`` show it.

    ``extended=False`` is the body of create and update: Cinder adds the project, host,
    migration and image-metadata attributes (its "extended" attributes) to show and detail
    only, and clients validate the create/update body without them.
    """
    body: dict[str, Any] = {
        "id": volume.id,
        "name": volume.name,
        "description": volume.description,
        "status": volume.status,
        "size": volume.size,
        "availability_zone": volume.availability_zone,
        "created_at": timestamp(volume.created_at),
        "updated_at": timestamp(volume.updated_at),
        "attachments": volume_attachment_items(volume, attachments),
        "bootable": "true" if volume.bootable else "false",
        "encrypted": False,
        "links": links.pair(f"volumes/{volume.id}"),
        # Cinder shows the admin metadata users may see (readonly) with the user's own.
        "metadata": {**(volume.metadata_ or {}), **(volume.admin_metadata or {})},
        "migration_status": None,
        "multiattach": volume.multiattach,
        "replication_status": None,
        "snapshot_id": volume.snapshot_id,
        "source_volid": volume.source_volid,
        "user_id": volume.user_id,
        "volume_type": vtype.name if vtype else None,
        "consistencygroup_id": None,
    }
    if extended:
        body["os-vol-tenant-attr:tenant_id"] = volume.project_id
    if extended and volume.image_metadata:
        body["volume_image_metadata"] = dict(volume.image_metadata)
    if extended and context.is_admin:
        # Cinder's host@backend#pool form; the file backend has one pool.
        body["os-vol-host-attr:host"] = (f"{volume.host}@file#file" if volume.host
                                         else None)
        body["os-vol-mig-status-attr:migstat"] = None
        body["os-vol-mig-status-attr:name_id"] = None
    if version.at_least("3.13"):
        body["group_id"] = None
    if version.at_least("3.21") and context.is_admin:
        body["provider_id"] = None
    if version.at_least("3.48"):
        body["shared_targets"] = False
        if context.is_admin:
            body["service_uuid"] = None
    return body


def snapshot_view(snapshot: Snapshot, *, version: APIVersion,
                  extended: bool = True) -> dict[str, Any]:
    """A snapshot as show and ``/snapshots/detail`` answer; ``extended=False``: as create,
    update and the plain list answer, without Cinder's extended attributes (progress,
    project)."""
    body: dict[str, Any] = {
        "id": snapshot.id,
        "name": snapshot.name,
        "description": snapshot.description,
        "status": snapshot.status,
        "size": snapshot.size,
        "volume_id": snapshot.volume_id,
        "created_at": timestamp(snapshot.created_at),
        "updated_at": timestamp(snapshot.updated_at),
        "metadata": dict(snapshot.metadata_ or {}),
    }
    if extended:
        body["os-extended-snapshot-attributes:progress"] = (
            "100%" if snapshot.status == "available" else "0%")
        body["os-extended-snapshot-attributes:project_id"] = snapshot.project_id
    if version.at_least("3.14"):
        body["group_snapshot_id"] = None
    if version.at_least("3.41"):
        body["user_id"] = snapshot.user_id
    return body


def type_view(vtype: VolumeType, *, admin: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": vtype.id, "name": vtype.name, "description": vtype.description,
        "is_public": vtype.is_public, "os-volume-type-access:is_public": vtype.is_public,
        "extra_specs": dict(vtype.extra_specs or {}), "qos_specs_id": None,
    }
    if not admin:
        # Cinder shows non-admins no extra specs beyond the user-visible ones.
        body["extra_specs"] = {k: v for k, v in body["extra_specs"].items()
                               if k in ("multiattach", "RESKEY:availability_zones")}
    return body


def upload_view(volume: Volume, vtype: VolumeType | None, image_id: str,
                upload: ImageUpload, *, version: APIVersion) -> dict[str, Any]:
    """The answer of ``os-volume_upload_image``: the volume (``uploading``), its type in
    full, and the new image's id and formats (its visibility and protection from 3.1)."""
    body: dict[str, Any] = {
        "id": volume.id,
        "updated_at": timestamp(volume.updated_at),
        "status": volume.status,
        "display_description": volume.description,
        "size": volume.size,
        "volume_type": None if vtype is None else {
            "id": vtype.id, "name": vtype.name, "description": vtype.description,
            "is_public": vtype.is_public, "extra_specs": dict(vtype.extra_specs or {}),
            "qos_specs_id": None, "created_at": timestamp(vtype.created_at),
            "updated_at": None, "deleted": vtype.deleted_at is not None,
            "deleted_at": timestamp(vtype.deleted_at)},
        "image_id": image_id,
        "container_format": upload.container_format,
        "disk_format": upload.disk_format,
        "image_name": upload.image_name,
    }
    if version.at_least("3.1"):
        body["visibility"] = upload.visibility
        body["protected"] = upload.protected
    return body


def transfer_view(transfer: Transfer, links: Links, path: str, *, version: APIVersion,
                  detail: bool = True, versioned: bool = False) -> dict[str, Any]:
    """A transfer under ``path`` (``os-volume-transfer`` or ``volume-transfers``);
    ``detail=False``: as the plain list and accept show it. ``versioned``: the
    ``volume-transfers`` API, which adds ``no_snapshots`` (3.55) and the projects and
    ``accepted`` (3.57)."""
    body: dict[str, Any] = {"id": transfer.id, "name": transfer.name,
                            "volume_id": transfer.volume_id,
                            "links": links.pair(f"{path}/{transfer.id}")}
    if detail:
        body["created_at"] = timestamp(transfer.created_at)
        if versioned and version.at_least("3.55"):
            body["no_snapshots"] = transfer.no_snapshots
        if versioned and version.at_least("3.57"):
            body.update({"source_project_id": transfer.source_project_id,
                         "destination_project_id": transfer.destination_project_id,
                         "accepted": transfer.accepted})
    return body


def attachment_view(attachment: Attachment, *, detail: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": attachment.id,
        "status": attachment.attach_status,
        "instance": attachment.instance_uuid,
        "volume_id": attachment.volume_id,
    }
    if detail:
        body.update({
            "attached_at": timestamp(attachment.attach_time) or "",
            "detached_at": timestamp(attachment.detach_time) or "",
            "attach_mode": attachment.attach_mode,
            "connection_info": dict(attachment.connection_info or {}),
        })
    return body
