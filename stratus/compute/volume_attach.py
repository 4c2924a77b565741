"""Volumes on servers: root volumes made at boot, and attach/detach of block storage volumes.

The volume service holds the attachments and the root volumes' ties to their servers
(compute keeps no table of its own for them); every call carries the user's token.

Boot from volume (``block_device_mapping_v2`` boot index 0, ``RootVolume``): compute-api asks
the block storage service for the root volume (from an image, of ``size`` GiB) as soon as the
instance exists, tagging it with the instance's id (volume metadata ``stratus:boot_for`` and
``stratus:delete_on_termination``), or tags the existing volume it boots from. The compute
host finds it there, waits for it to be ``available`` and attaches it as ``/dev/vda``
(``stratus.compute.agent.volumes``); deleting the server releases it and, if asked, deletes
it. A server deleted where no host can do it (never placed, or its host is down) has its
volumes released by compute-api itself (``release_volumes``).

Attach reserves an attachment with the user's token, then asks the server's host (a bus
call) to connect, attach and complete it; if the host fails or does not answer, the
reservation is deleted again, so the volume is ``available`` and never left ``attaching``.
Detach asks the host to detach and delete the attachment.
"""

from __future__ import annotations

import asyncio
import logging
import string
from dataclasses import dataclass
from typing import Any

from stratus.compute import states
from stratus.compute.action_steps import refuse_if_locked, require
from stratus.compute.objects import shelved_volume_devices
from stratus.compute.servers import SERVERS_PER_REQUEST, target, visible
from stratus.compute.service import ComputeRuntime
from stratus.core.bus import MessagingError, RemoteError
from stratus.core.clients.base import endpoint
from stratus.core.clients.volume import (
    BOOT_FOR,
    DATA_FOR,
    DELETE_ON_TERMINATION,
    VolumeClient,
)
from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, Conflict, NotFound, StratusError
from stratus.core.policy import Caller

LOG = logging.getLogger(__name__)

#: Seconds a server view waits for the volume service's attachments before showing none.
VIEW_TIMEOUT = 5.0

@dataclass(frozen=True)
class RootVolume:
    """A server's root volume: an existing volume, or one to make from an image or (with
    ``from_snapshot``) from a volume snapshot (``size`` 0: the snapshot's)."""

    source_id: str
    from_image: bool
    size: int = 1
    delete_on_termination: bool = False
    from_snapshot: bool = False


@dataclass(frozen=True)
class Attached:
    """A volume attached to a server, as the volume service has it."""

    server_id: str
    volume_id: str
    attachment_id: str
    device: str | None
    #: Whether the volume goes when the server does (as its boot request asked).
    delete_on_termination: bool = False
    #: The device tag the boot request gave the volume (2.70+ shows it).
    tag: str | None = None


# Root volumes -------------------------------------------------------------------------------

async def create_root_volume(volumes: VolumeClient, context: RequestContext,
                             instance_uuid: str, root: RootVolume) -> dict[str, Any]:
    """Ask the volume service for the instance's root volume (it is made asynchronously;
    the compute host waits for it), or tag the existing one it boots from."""
    base = endpoint(context, "block-storage")
    tags = {BOOT_FOR: instance_uuid,
            DELETE_ON_TERMINATION: "true" if root.delete_on_termination else "false"}
    if root.from_snapshot:
        return await volumes.create_volume(context, base, size=root.size or None,
                                           snapshot_id=root.source_id, metadata=tags)
    if not root.from_image:
        existing = await volumes.get_volume(context, base, root.source_id)
        if existing["status"] != "available":
            raise BadRequest(f"Volume {root.source_id} is {existing['status']}, not available.")
        await volumes.add_metadata(context, base, root.source_id, tags)
        return existing
    return await volumes.create_volume(context, base, size=root.size,
                                       image_id=root.source_id, metadata=tags)


def _block_storage(context: RequestContext) -> str | None:
    try:
        return endpoint(context, "block-storage")
    except StratusError:
        return None  # a cloud without block storage: nothing to release


async def release_volumes(volumes: VolumeClient, context: RequestContext,
                          instance_uuid: str) -> None:
    """Release the volumes of a server deleted without a host: its attachments go, its
    root volume goes if it was to be deleted with it. Logs, never raises (the server is
    already deleted; the volumes stay visible to their owner)."""
    base = _block_storage(context)
    if base is None:
        return
    try:
        await volumes.release_instance(context, base, instance_uuid)
    except Exception:
        LOG.exception("could not release the volumes of deleted server %s", instance_uuid)


# Attachments --------------------------------------------------------------------------------

async def _server(rt: ComputeRuntime, caller: Caller, server_id: str,
                  rule: str, *, change: str | None = None) -> tuple[str, str | None, str]:
    """The server's (uuid, host, vm_state); ``change`` (the action's name): refused if it
    is locked or has a task."""
    uuid, host, vm_state, _, _ = await _server_and_tags(rt, caller, server_id, rule,
                                                        change=change)
    return uuid, host, vm_state


async def _server_and_tags(rt: ComputeRuntime, caller: Caller, server_id: str, rule: str,
                           *, change: str | None = None,
                           ) -> tuple[str, str | None, str, dict[str, str], dict[str, str]]:
    """The server's uuid, host and vm state, the tags its boot request gave devices, and
    (shelved offloaded) its volumes' devices (``shelved_volume_devices``);
    ``change`` (the action's name): refused if the server is locked, or with a task (409,
    as Nova: a volume attached or detached mid-move would be left on the host it left)."""
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize(rule, target(instance))
        if change is not None:
            refuse_if_locked(instance, caller)
            require(instance, (instance.vm_state,), change)  # the task state only
        tags = {str(d.get("device_name")): str(d["tag"])
                for d in instance.block_device_mapping or [] if d.get("tag")}
        return (instance.uuid, instance.host, instance.vm_state, tags,
                shelved_volume_devices(instance.system_metadata))


def _goes_with(volume: dict[str, Any], server_id: str) -> bool:
    """Whether the volume is deleted with the server (the tags boot set on it)."""
    meta = volume.get("metadata") or {}
    return meta.get(DELETE_ON_TERMINATION) == "true" and server_id in (
        meta.get(BOOT_FOR), meta.get(DATA_FOR))


async def _attachments(volumes: VolumeClient, context: RequestContext, base: str,
                       server_id: str, tags: dict[str, str] | None = None,
                       shelved: dict[str, str] | None = None) -> list[Attached]:
    """The server's attachments; ``shelved``: the devices of a shelved-offloaded server's
    volumes, which are reserved with no host (no device in the volume service)."""
    found = []
    for attachment in await volumes.attachments_of(context, base, server_id):
        volume = await volumes.get_volume(context, base, attachment["volume_id"])
        device = next((a.get("device") for a in volume.get("attachments") or []
                       if a.get("attachment_id") == attachment["id"]), None) or (
            shelved or {}).get(attachment["volume_id"])
        found.append(Attached(server_id, attachment["volume_id"], attachment["id"], device,
                              delete_on_termination=_goes_with(volume, server_id),
                              tag=(tags or {}).get(device or "")))
    return found


async def attachments(rt: ComputeRuntime, caller: Caller, server_id: str,
                      rule: str) -> list[Attached]:
    """The volumes attached to the server the caller may see (``rule`` authorizes)."""
    uuid, _, _, tags, shelved = await _server_and_tags(rt, caller, server_id, rule)
    base = endpoint(caller.context, "block-storage")
    return await _attachments(rt.clients.volumes, caller.context, base, uuid, tags, shelved)


async def attachment(rt: ComputeRuntime, caller: Caller, server_id: str, volume_id: str,
                     rule: str) -> Attached:
    for found in await attachments(rt, caller, server_id, rule):
        if found.volume_id == volume_id:
            return found
    raise NotFound(f"Volume {volume_id} is not attached to {server_id}.")


async def attach(rt: ComputeRuntime, caller: Caller, server_id: str, volume_id: str,
                 device: str | None) -> Attached:
    """Attach the volume at ``device`` (the first free ``/dev/vdX`` if None)."""
    context = caller.context
    uuid, host, vm_state = await _server(rt, caller, server_id,
                                         "os_compute_api:os-volumes-attachments:create",
                                         change="attach_volume")
    if vm_state not in (states.ACTIVE, states.STOPPED) or host is None:
        raise Conflict(f"Cannot 'attach_volume' instance {uuid} while it is in vm_state "
                       f"{vm_state}")
    base = endpoint(context, "block-storage")
    client = rt.clients.volumes
    try:
        await client.get_volume(context, base, volume_id)
    except NotFound as exc:
        raise NotFound(f"Volume {volume_id} could not be found.") from exc
    held = await _attachments(client, context, base, uuid)
    if any(a.volume_id == volume_id for a in held):
        # Asked here, not of the volume service: a moving server holds two attachments.
        raise BadRequest(f"Invalid volume: volume {volume_id} already attached to "
                         f"{uuid}.")
    used = {a.device for a in held}
    requested = device
    device = requested or next((f"/dev/vd{c}" for c in string.ascii_lowercase[1:]
                                if f"/dev/vd{c}" not in used), None)
    if device is None or device in used or not device.startswith("/dev/"):
        raise BadRequest(f"The supplied device path ({requested}) is invalid or in use.")
    reserved = await client.create_attachment(context, base, volume_id, uuid)
    try:
        await rt.clients.agents.attach_volume(
            context, host, uuid, reserved["id"], device,
            wait_for=float(rt.settings.compute.volume_attach_timeout))
    except Exception as exc:
        # Give the reservation back whatever happened on (or to) the host.
        await client.delete_attachment(context, base, reserved["id"])
        if isinstance(exc, RemoteError):
            raise BadRequest(f"The volume could not be attached: {exc.message}") from exc
        if isinstance(exc, MessagingError):
            raise Conflict(f"The server's host {host} did not attach the volume: "
                           f"{type(exc).__name__}.") from exc
        raise
    return Attached(uuid, volume_id, reserved["id"], device)


async def detach(rt: ComputeRuntime, caller: Caller, server_id: str, volume_id: str) -> None:
    context = caller.context
    uuid, host, _ = await _server(rt, caller, server_id,
                                  "os_compute_api:os-volumes-attachments:delete",
                                  change="detach_volume")
    base = endpoint(context, "block-storage")
    found = [a for a in await _attachments(rt.clients.volumes, context, base, uuid)
             if a.volume_id == volume_id]
    if not found:
        raise NotFound(f"Volume {volume_id} is not attached to {server_id}.")
    gone = found[0]
    if host is None:
        await rt.clients.volumes.delete_attachment(context, base, gone.attachment_id)
        return
    try:
        await rt.clients.agents.detach_volume(
            context, host, uuid, gone.attachment_id, gone.device or "",
            wait_for=float(rt.settings.compute.volume_attach_timeout))
    except RemoteError as exc:
        raise BadRequest(f"The volume could not be detached: {exc.message}") from exc
    except MessagingError as exc:
        raise Conflict(f"The server's host {host} did not detach the volume: "
                       f"{type(exc).__name__}.") from exc


async def volumes_attached(volumes: VolumeClient, context: RequestContext,
                           server_ids: list[str]) -> dict[str, list[str]]:
    """Server id → ids of its attached volumes, for the servers ``server_ids`` (a page):
    their attachments only, never the whole project's, by chunks of ``SERVERS_PER_REQUEST``
    asked at once. Empty without a reachable block storage service: a server shows without
    its volumes rather than failing."""
    try:
        base = endpoint(context, "block-storage")
        # Bounded: a block storage service that hangs must not hold up server views.
        async with asyncio.timeout(VIEW_TIMEOUT):
            chunks = await asyncio.gather(*(
                volumes.list_attachments(context, base,
                                         server_ids[start:start + SERVERS_PER_REQUEST])
                for start in range(0, len(server_ids), SERVERS_PER_REQUEST)))
        items = [item for chunk in chunks for item in chunk]
    except Exception as exc:  # the server view must not fail for want of volume details
        LOG.debug("volumes_attached left empty: %s", exc)
        return {}
    attached: dict[str, list[str]] = {}
    for item in items:
        # Reserved: a shelved-offloaded server's volumes are held with no host (as Nova's
        # block device mappings, they are still the server's). A moving server holds a
        # volume twice: listed once.
        if item.get("status") in ("attached", "reserved") and item.get("instance"):
            held = attached.setdefault(item["instance"], [])
            if item["volume_id"] not in held:
                held.append(item["volume_id"])
    return attached
