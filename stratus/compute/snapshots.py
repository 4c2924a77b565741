"""``createImage``: an image of a server's disk, as Nova makes one.

compute-api checks the server's state, makes the image at once in the caller's project
(``queued``, so its id is known to the answer), with Nova's snapshot properties
(``snapshot_image``), sets ``image_snapshot`` and casts to the server's host, which walks
``image_pending_upload`` → ``image_uploading`` → None while its driver copies the disk and
the host uploads it (``stratus.compute.agent.snapshots``). Any failure deletes the image and
gives the server back its state; the action's event says why.

Before 2.45 the answer is a 202 with a ``Location`` header naming the image; from 2.45 a
202 with ``{"image_id": ...}``.

A server booted from a volume gets a snapshot of each of its volumes (through the volume
API, ``force`` as they are in use) and a data-less image that records them
(``block_device_mapping``, ``bdm_v2``, ``root_device_name``): booting that image makes the
root volume again from the snapshot (``stratus.compute.boot``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stratus.compute import states
from stratus.compute.action_steps import Reply, parse_args, require, version
from stratus.compute.models import Instance
from stratus.compute.servers import target, visible
from stratus.compute.service import ComputeRuntime
from stratus.core.bus import MessagingError
from stratus.core.clients.base import endpoint
from stratus.core.clients.volume import BOOT_FOR
from stratus.core.context import RequestContext
from stratus.core.exceptions import Conflict, Forbidden, PayloadTooLarge
from stratus.core.policy import Caller

LOG = logging.getLogger(__name__)

#: Seconds a volume-backed server's createImage waits for each volume snapshot.
SNAPSHOT_WAIT = 300.0

#: The vm_states a snapshot may be taken in (with no task in flight).
SNAPSHOT_STATES = (states.ACTIVE, states.STOPPED, states.PAUSED, states.SUSPENDED)

#: Base image properties a snapshot inherits: the ones that say how to run the disk.
_INHERITED_PREFIXES = ("hw_", "img_", "os_")
_INHERITED_KEYS = ("architecture", "hypervisor_type", "vm_mode", "auto_disk_config")
#: ... but not these (signatures belong to the original bits; hashes are the image's own).
_NOT_INHERITED_PREFIXES = ("img_signature", "os_hash", "os_glance", "os_hidden")


class CreateImageArgs(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    metadata: dict[str, str] | None = None


def inherited_properties(base: dict[str, Any]) -> dict[str, str]:
    """The base image's properties a snapshot of a server booted from it carries on."""
    return {key: str(value) for key, value in base.items()
            if (key.startswith(_INHERITED_PREFIXES) or key in _INHERITED_KEYS)
            and not key.startswith(_NOT_INHERITED_PREFIXES) and value is not None}


def snapshot_image(instance: Instance, name: str, base: dict[str, Any] | None,
                   extra: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``POST /v2/images`` body of a snapshot of ``instance``, as Nova fills it in."""
    base = base or {}
    flavor = instance.flavor or {}
    image: dict[str, Any] = {
        **inherited_properties(base),
        "name": name, "disk_format": "qcow2", "container_format": "bare",
        "visibility": "private",
        "min_ram": int(base.get("min_ram") or 0),
        "min_disk": max(int(flavor.get("disk") or 0), int(base.get("min_disk") or 0)),
        "image_type": "snapshot", "instance_uuid": instance.uuid,
        "user_id": instance.user_id, "base_image_ref": instance.image_ref or "",
    }
    image.update(extra or {})
    return image


async def create_image(rt: ComputeRuntime, caller: Caller, server_id: str,
                       args: Any) -> Reply:
    requested = parse_args(CreateImageArgs, args, "createImage")
    context = caller.context
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:servers:create_image", target(instance))
        require(instance, SNAPSHOT_STATES, "createImage")
        volume_backed = not instance.image_ref
        if volume_backed:
            caller.authorize("os_compute_api:servers:create_image:allow_volume_backed",
                             target(instance))
    if volume_backed:
        image_id = await _snapshot_volumes(rt, caller, instance, requested)
    else:
        base = await rt.clients.images.find(context, instance.image_ref)
        image_id = await new_image(rt, context, snapshot_image(
            instance, requested.name, base, requested.metadata))
        await _start_on_host(rt, caller, instance.uuid, image_id)
    if version().at_least("2.45"):
        return Reply(202, {"image_id": image_id})
    location = f"{endpoint(context, 'image')}/v2/images/{image_id}"
    return Reply(202, headers={"Location": location})


async def new_image(rt: ComputeRuntime, context: RequestContext,
                     body: dict[str, Any]) -> str:
    """Make the queued image; the image service's quota refusal is Nova's 403."""
    try:
        created = await rt.clients.images.create(context, body)
    except PayloadTooLarge as exc:
        raise Forbidden(f"Quota exceeded for images: {exc.message}") from exc
    return str(created["id"])


async def _start_on_host(rt: ComputeRuntime, caller: Caller, uuid: str,
                         image_id: str) -> None:
    """Record the action and hand the snapshot to the server's host; if the server moved
    on meanwhile or the host cannot be told, the image goes again."""
    context = caller.context
    try:
        async with rt.service() as svc:
            instance = await svc.instances.get(uuid)
            require(instance, SNAPSHOT_STATES, "createImage")
            if instance.host is None:
                raise Conflict(f"Instance {uuid} has no host.")
            instance.task_state = states.IMAGE_SNAPSHOT
            await svc.instances.start_action(context, uuid, "createImage")
            host = instance.host
    except Exception:
        await rt.clients.images.delete(context, image_id)
        raise
    try:
        await rt.clients.agents.snapshot_instance(context, host, uuid, image_id)
    except MessagingError as exc:
        async with rt.service() as svc:
            instance = await svc.instances.get(uuid)
            if instance.task_state == states.IMAGE_SNAPSHOT:
                instance.task_state = None
            await svc.instances.finish_action(uuid, context.request_id, "Error")
        await rt.clients.images.delete(context, image_id)
        raise Conflict(f"The server's host {host} could not be reached: "
                       f"{type(exc).__name__}.") from exc


# Volume-backed servers ----------------------------------------------------------------------

async def _settled(rt: ComputeRuntime, context: RequestContext, base: str,
                   snapshot_id: str) -> None:
    """Wait (bounded) for a volume snapshot to be made, so the image that records it boots
    at once; one that failed is a 409."""
    deadline = time.monotonic() + SNAPSHOT_WAIT
    while True:
        snapshot = await rt.clients.volumes.get_snapshot(context, base, snapshot_id)
        if snapshot["status"] == "available":
            return
        if snapshot["status"] == "error" or time.monotonic() > deadline:
            raise Conflict(f"Volume snapshot {snapshot_id} is {snapshot['status']}; the "
                           "server's image cannot record it.")
        await asyncio.sleep(0.2)


async def _snapshot_volumes(rt: ComputeRuntime, caller: Caller, instance: Instance,
                            requested: CreateImageArgs) -> str:
    """Snapshots of the server's volumes and an active, data-less image recording them."""
    context = caller.context
    base = endpoint(context, "block-storage")
    volumes = rt.clients.volumes
    async with rt.service() as svc:
        await svc.instances.start_action(context, instance.uuid, "createImage")
    mappings = []
    root = await volumes.volumes_with_metadata(context, base, BOOT_FOR, instance.uuid)
    root_ids = {v["id"] for v in root}
    attached = {a["volume_id"]: a for a in await volumes.attachments_of(
        context, base, instance.uuid)}
    for volume_id in sorted(root_ids | set(attached), key=lambda v: v not in root_ids):
        volume = await volumes.get_volume(context, base, volume_id)
        device = "/dev/vda" if volume_id in root_ids else next(
            (a.get("device") for a in volume.get("attachments") or [] if a.get("device")),
            None)
        snapshot = await volumes.create_snapshot(
            context, base, volume_id, name=f"snapshot for {requested.name}", force=True)
        await _settled(rt, context, base, snapshot["id"])
        mappings.append({
            "source_type": "snapshot", "destination_type": "volume",
            "snapshot_id": snapshot["id"], "volume_size": volume["size"],
            "boot_index": 0 if volume_id in root_ids else None,
            "delete_on_termination": volume_id in root_ids and
            (volume.get("metadata") or {}).get("stratus:delete_on_termination") == "true",
            "device_name": device, "volume_id": None, "image_id": None, "no_device": None,
            "disk_bus": "virtio", "device_type": "disk", "guest_format": None, "tag": None,
            "volume_type": None})
    body = snapshot_image(instance, requested.name, None, requested.metadata)
    # No data of its own: "raw" (empty bytes are a valid raw disk; the image service checks
    # data against its declared format).
    body.update({"bdm_v2": "True", "root_device_name": "/dev/vda",
                 "block_device_mapping": json.dumps(mappings), "min_disk": 0,
                 "disk_format": "raw"})
    image_id = await new_image(rt, context, body)
    await rt.clients.images.upload_bytes(context, image_id, b"")
    async with rt.service() as svc:
        await svc.instances.finish_action(instance.uuid, context.request_id)
    return image_id
