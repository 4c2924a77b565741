"""The compute host's side of volume attachments.

``attach``: give the volume service this host's connector (with the guest device), get the
connection info back, have the driver attach it, then mark the attachment complete; a
failure after the driver attached detaches again, so the guest never keeps a volume the
volume service does not show as attached. ``detach``: the driver detaches, then the
attachment is deleted (the volume is ``available`` again). The block storage endpoint comes
from the host's service catalog, made project-specific for the user's project.

A build's data volumes (``connect_data_volumes``): the blank ones and those from images and
snapshots are made here (tagged ``DATA_FOR`` the instance, with ``DELETE_ON_TERMINATION`` as
asked), existing ones are used as they are (tagged only when they go with the instance);
each is attached at its device as root volumes are. A build that fails gives back every
attachment of the instance and deletes the volumes it made (``undo_build``): nothing of a
failed build is left in the volume service, and a reschedule starts afresh.

Shelve offload (``reserve_hostless``): each volume stays the instance's, reserved with no
host as Nova keeps it, until the unshelve connects it on the new host at its device
(``connect_reserved``).

Moves (resize, migrations, evacuation): the host a guest arrives on
connects each of the instance's volumes again with its own connector, at the device the
volume has (``take_over``: the instance then holds two attachments of the volume, which the
volume service allows for one instance, as Cinder does); once the guest runs on one host,
the others' attachments go (``keep_only``), and a host that gave up a guest it was to
receive gives up what it connected (``let_go``).
"""

from __future__ import annotations

import asyncio
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stratus.compute.objects import BlockDevice
from stratus.compute.virt.driver import VirtDriver, VirtError
from stratus.core.clients.volume import (
    BOOT_FOR,
    DATA_FOR,
    DELETE_ON_TERMINATION,
    MADE_FOR,
    VolumeClient,
)
from stratus.core.context import RequestContext
from stratus.core.exceptions import NotFound
from stratus.core.service_auth import ServiceAuth

LOG = logging.getLogger(__name__)


@dataclass
class Held:
    """One of an instance's attachments: the host connected and the guest device."""

    attachment_id: str
    host: str | None
    device: str | None
    connection_info: dict[str, Any]


@dataclass
class HostVolumes:
    """A compute host's side of volume attachments: the volume service, then the driver."""

    host: str
    driver: VirtDriver
    service_auth: ServiceAuth
    client: VolumeClient

    async def _base(self, ctx: RequestContext, project_id: str | None = None) -> str:
        url = await self.service_auth.endpoint("block-storage")
        root = url.split("/v3/", 1)[0] if "/v3/" in url else url
        return f"{root}/v3/{project_id or ctx.project_id}"

    def connector(self, mountpoint: str) -> dict[str, Any]:
        return {"host": self.host, "mountpoint": mountpoint, "mode": "rw", "initiator": None,
                "ip": None, "platform": platform.machine(), "os_type": "linux",
                "multipath": False}

    async def attach(self, ctx: RequestContext, instance_uuid: str, attachment_id: str,
                     mountpoint: str) -> None:
        base = await self._base(ctx)
        token = await self.service_auth.token()
        attachment = await self.client.update_attachment(
            ctx, base, attachment_id, self.connector(mountpoint), service_token=token)
        info = attachment["connection_info"]
        await self.driver.attach_volume(instance_uuid, info, mountpoint)
        try:
            await self.client.complete_attachment(ctx, base, attachment_id,
                                                  service_token=token)
        except Exception:
            LOG.exception("instance %s: completing attachment %s failed; detaching",
                          instance_uuid, attachment_id)
            await self.driver.detach_volume(instance_uuid, info, mountpoint)
            raise

    async def detach(self, ctx: RequestContext, instance_uuid: str, attachment_id: str,
                     mountpoint: str) -> None:
        base = await self._base(ctx)
        token = await self.service_auth.token()
        attachment = await self.client.get_attachment(ctx, base, attachment_id,
                                                      service_token=token)
        info = attachment.get("connection_info") or {}
        if info:
            await self.driver.detach_volume(instance_uuid, info, mountpoint)
        await self.client.delete_attachment(ctx, base, attachment_id, service_token=token)

    async def release_all(self, ctx: RequestContext, project_id: str,
                          instance_uuid: str, *, owned_volumes: bool = True) -> None:
        """The guest is gone: delete every attachment it held, so its volumes are
        ``available`` again, then the root and data volumes made for it to be deleted with
        it (``owned_volumes=False``: its boot request had none, so none are looked for).
        Raises when the volume service cannot be reached or refuses: the delete then ends
        in ERROR and deleting again retries, rather than leaving volumes attached to a
        server that no longer exists. A cloud without block storage (none in the catalog,
        or nothing serving it there: 404) has nothing to release."""
        if await self.service_auth.find_endpoint("block-storage") is None:
            return
        base = await self._base(ctx, project_id)
        token = await self.service_auth.token()
        try:
            await self.client.release_instance(ctx, base, instance_uuid, service_token=token,
                                               owned_volumes=owned_volumes)
        except NotFound:
            LOG.debug("no block storage answers at %s: no volumes to release", base)

    async def connect_boot_volumes(self, ctx: RequestContext, project_id: str,
                                   instance_uuid: str, wait_for: float = 600.0,
                                   ) -> list[dict[str, Any]]:
        """Attach the root volume compute-api asked for (see
        ``stratus.compute.volume_attach``) as ``/dev/vda``, once it is ``available``;
        returns the block devices for the driver (``{"mountpoint", "connection_info"}``).
        On failure nothing stays attached; the volume is left for a retry or the delete."""
        base = await self._base(ctx, project_id)
        token = await self.service_auth.token()
        volumes = await self.client.volumes_with_metadata(ctx, base, BOOT_FOR, instance_uuid,
                                                          service_token=token)
        if not volumes:
            raise VirtError(f"Instance {instance_uuid} has neither an image nor a root "
                            "volume.")
        deadline = time.monotonic() + wait_for
        devices: list[dict[str, Any]] = []
        for volume in volumes:
            volume = await self._available(ctx, base, volume, token, deadline,
                                           what="Root volume")
            info = await self._attach_at(ctx, base, token, instance_uuid, volume["id"],
                                         "/dev/vda")
            devices.append({"mountpoint": "/dev/vda", "connection_info": info})
        return devices

    # Shelved offloaded: reserved with no host -------------------------------------------

    async def reserve_hostless(self, ctx: RequestContext, project_id: str,
                               instance_uuid: str) -> dict[str, str]:
        """The guest runs on no host any more (shelve offload, or an unshelve that failed):
        as Nova, each of its volumes stays the instance's, reserved with no host (a new
        attachment without a connector), and every attachment that named a host goes, its
        connection with it. Volume id → the device it had, for the unshelve to attach it
        there again (``connect_reserved``)."""
        if await self.service_auth.find_endpoint("block-storage") is None:
            return {}
        base = await self._base(ctx, project_id)
        token = await self.service_auth.token()
        devices: dict[str, str] = {}
        for volume_id, attachments in (await self._held(ctx, base, token,
                                                         instance_uuid)).items():
            device = next((a.device for a in attachments if a.device), None)
            if device:
                devices[volume_id] = device
            # Reserved first: the volume is never free for another server in between.
            await self.client.create_attachment(ctx, base, volume_id, instance_uuid,
                                                service_token=token)
            for gone in attachments:
                await self.client.delete_attachment(ctx, base, gone.attachment_id,
                                                    service_token=token)
        return devices

    async def connect_reserved(self, ctx: RequestContext, project_id: str,
                               instance_uuid: str, devices: dict[str, str]) -> set[str]:
        """Unshelve: the instance's reservations with no host (``reserve_hostless``) are
        connected to this host, each at the device its volume had; the devices connected."""
        if await self.service_auth.find_endpoint("block-storage") is None:
            return set()
        base = await self._base(ctx, project_id)
        token = await self.service_auth.token()
        connected: set[str] = set()
        try:
            found = await self.client.attachments_of(ctx, base, instance_uuid,
                                                     service_token=token)
        except NotFound:
            LOG.debug("no block storage answers at %s: no volumes to connect", base)
            return connected
        for attachment in found:
            if attachment.get("status") != "reserved":
                continue
            device = devices.get(attachment["volume_id"])
            if device is None:
                raise VirtError(f"Volume {attachment['volume_id']} of {instance_uuid} has no "
                                "device to be attached at.")
            await self.client.update_attachment(ctx, base, attachment["id"],
                                                self.connector(device), service_token=token)
            await self.client.complete_attachment(ctx, base, attachment["id"],
                                                  service_token=token)
            connected.add(device)
        return connected

    # Moves (see stratus.compute.agent.moves) ---------------------------------------------

    async def _held(self, ctx: RequestContext, base: str, token: str,
                    instance_uuid: str) -> dict[str, list[Held]]:
        """The instance's attached volumes: volume id → its attachments of the instance
        (one, or one per host while the instance moves). None where no block storage
        service answers at its endpoint (404)."""
        held: dict[str, list[Held]] = {}
        try:
            found = await self.client.attachments_of(ctx, base, instance_uuid,
                                                     service_token=token)
        except NotFound:
            LOG.debug("no block storage answers at %s: no volumes to move", base)
            return held
        for attachment in found:
            if attachment.get("status") == "attached":
                held.setdefault(attachment["volume_id"], []).append(Held(
                    attachment["id"], None, None, dict(attachment.get("connection_info")
                                                       or {})))
        for volume_id, attachments in held.items():
            volume = await self.client.get_volume(ctx, base, volume_id, service_token=token)
            where = {a.get("attachment_id"): a for a in volume.get("attachments") or []}
            for item in attachments:
                item.host = where.get(item.attachment_id, {}).get("host_name")
                item.device = where.get(item.attachment_id, {}).get("device")
        return held

    async def take_over(self, ctx: RequestContext, project_id: str,
                        instance_uuid: str) -> list[dict[str, Any]]:
        """A move brings the instance here: each of its volumes is connected to this host at
        the device it has (a new attachment with this host's connector, beside the one its
        other host holds until the move is settled: ``keep_only``); the driver's block
        devices. Volumes already connected here are used as they are."""
        if await self.service_auth.find_endpoint("block-storage") is None:
            return []
        base = await self._base(ctx, project_id)
        token = await self.service_auth.token()
        devices: list[dict[str, Any]] = []
        for volume_id, attachments in (await self._held(ctx, base, token,
                                                         instance_uuid)).items():
            here = next((a for a in attachments if a.host == self.host), None)
            device = (here or attachments[0]).device
            if not device:
                raise VirtError(f"Volume {volume_id} of {instance_uuid} has no device.")
            info = here.connection_info if here is not None else await self._attach_at(
                ctx, base, token, instance_uuid, volume_id, device)
            devices.append({"mountpoint": device, "connection_info": info,
                            "volume_id": volume_id})
        return sorted(devices, key=lambda d: str(d["mountpoint"]))

    async def keep_only(self, ctx: RequestContext, project_id: str, instance_uuid: str,
                        host: str) -> None:
        """The instance runs on ``host``: of each volume ``host`` holds for it, the
        instance's attachments on other hosts go."""
        await self._drop(ctx, project_id, instance_uuid, lambda a: a.host != host, host)

    async def let_go(self, ctx: RequestContext, project_id: str, instance_uuid: str,
                     host: str) -> None:
        """``host`` does not have the instance: its attachments of each volume another
        host holds for the instance go."""
        await self._drop(ctx, project_id, instance_uuid, lambda a: a.host == host, None)

    async def _drop(self, ctx: RequestContext, project_id: str, instance_uuid: str,
                    goes: Callable[[Held], bool], holder: str | None) -> None:
        """Delete the instance's attachments that ``goes``, of each volume that keeps one
        that does not (held by ``holder``, when named): never is a volume left without the
        instance's attachment by a move."""
        if await self.service_auth.find_endpoint("block-storage") is None:
            return
        base = await self._base(ctx, project_id)
        token = await self.service_auth.token()
        for attachments in (await self._held(ctx, base, token, instance_uuid)).values():
            kept = [a for a in attachments if not goes(a)]
            if not kept or (holder is not None and all(a.host != holder for a in kept)):
                continue
            for gone in (a for a in attachments if goes(a)):
                await self.client.delete_attachment(ctx, base, gone.attachment_id,
                                                    service_token=token)

    async def _available(self, ctx: RequestContext, base: str, volume: dict[str, Any],
                         token: str, deadline: float, *,
                         what: str = "Volume") -> dict[str, Any]:
        """``volume`` once it is available (polled until ``deadline``); a ``VirtError``
        naming it as ``what`` when it errs or is late."""
        while volume["status"] != "available":
            if volume["status"] == "error" or time.monotonic() > deadline:
                raise VirtError(f"{what} {volume['id']} is {volume['status']}; it did not "
                                "become available.")
            await asyncio.sleep(0.2)
            volume = await self.client.get_volume(ctx, base, volume["id"],
                                                  service_token=token)
        return volume

    async def _attach_at(self, ctx: RequestContext, base: str, token: str,
                         instance_uuid: str, volume_id: str,
                         device: str) -> dict[str, Any]:
        attachment = await self.client.create_attachment(ctx, base, volume_id, instance_uuid,
                                                         service_token=token)
        try:
            updated = await self.client.update_attachment(ctx, base, attachment["id"],
                                                          self.connector(device),
                                                          service_token=token)
            await self.client.complete_attachment(ctx, base, attachment["id"],
                                                  service_token=token)
        except Exception:
            await self.client.delete_attachment(ctx, base, attachment["id"],
                                                service_token=token)
            raise
        return dict(updated.get("connection_info") or {})

    async def connect_data_volumes(self, ctx: RequestContext, project_id: str,
                                   instance_uuid: str, disks: list[BlockDevice],
                                   made: list[str], wait_for: float = 600.0,
                                   ) -> list[dict[str, Any]]:
        """Make (blank, image, snapshot) or take (existing) each data volume and attach it at
        its device; returns the driver's block devices. ``made`` gets the id of each volume
        made here as soon as it exists, so ``undo_build`` can delete it whatever fails."""
        base = await self._base(ctx, project_id)
        token = await self.service_auth.token()
        deadline = time.monotonic() + wait_for
        devices: list[dict[str, Any]] = []
        for disk in disks:
            if disk.kind != "volume":
                continue
            goes = "true" if disk.delete_on_termination else "false"
            tags = {DATA_FOR: instance_uuid, DELETE_ON_TERMINATION: goes}
            if disk.source_type == "volume":
                assert disk.source_id is not None
                volume = await self.client.get_volume(ctx, base, disk.source_id,
                                                      service_token=token)
                if disk.delete_on_termination:
                    await self.client.add_metadata(ctx, base, volume["id"], tags,
                                                   service_token=token)
            else:
                volume = await self.client.create_volume(
                    ctx, base, size=disk.size, name=f"{instance_uuid}-{disk.source_type}-vol",
                    image_id=disk.source_id if disk.source_type == "image" else None,
                    snapshot_id=disk.source_id if disk.source_type == "snapshot" else None,
                    volume_type=disk.volume_type, metadata={**tags, MADE_FOR: instance_uuid},
                    service_token=token)
                made.append(volume["id"])
            volume = await self._available(ctx, base, volume, token, deadline)
            info = await self._attach_at(ctx, base, token, instance_uuid, volume["id"],
                                         disk.device_name)
            devices.append({"mountpoint": disk.device_name, "connection_info": info,
                            "volume_id": volume["id"], "tag": disk.tag})
        return devices

    async def undo_build(self, ctx: RequestContext, project_id: str, instance_uuid: str,
                         made: list[str], settle_within: float = 600.0) -> None:
        """After a failed build: every attachment of the instance goes (its volumes are
        ``available`` again), then the volumes the build made are deleted: those in ``made``
        and those tagged ``MADE_FOR`` the instance (a build cut short by a restart)."""
        if await self.service_auth.find_endpoint("block-storage") is None:
            return
        base = await self._base(ctx, project_id)
        token = await self.service_auth.token()
        for attachment in await self.client.attachments_of(ctx, base, instance_uuid,
                                                           service_token=token):
            await self.client.delete_attachment(ctx, base, attachment["id"],
                                                service_token=token)
        deadline = time.monotonic() + settle_within
        tagged = await self.client.volumes_with_metadata(ctx, base, MADE_FOR, instance_uuid,
                                                         service_token=token)
        for volume_id in dict.fromkeys([*made, *(v["id"] for v in tagged)]):
            try:
                volume = await self.client.get_volume(ctx, base, volume_id,
                                                      service_token=token)
            except NotFound:
                continue
            await self.client.delete_when_settled(ctx, base, volume, deadline=deadline,
                                                  service_token=token)
