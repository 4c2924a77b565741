"""Block storage's runtime (flows across transactions and the bus) and its facade.

``VolumeService`` is one transaction and the parts that work inside it (``volumes``,
``snapshots``, ``attachments``, ``transfers``, ``types``, ``quotas``, ``hosts``), each built
with the session and its named collaborators. ``VolumeRuntime`` holds the operations that span a
transaction and the bus: a row is committed before the manager is told about it, so the
manager always finds it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from stratus.core.bus import MessagingError, RemoteError
from stratus.core.clients.image import ImageClient
from stratus.core.config import Settings, VolumeSettings
from stratus.core.context import RequestContext
from stratus.core.db import Database, Txn
from stratus.core.exceptions import BadRequest, ServiceUnavailable
from stratus.core.policy import Enforcer
from stratus.core.quotas import QuotaTable
from stratus.volume import states
from stratus.volume.attachments import Attachments
from stratus.volume.hosts import Hosts
from stratus.volume.migrations import HEAD, SCRIPT_LOCATION, VERSION_TABLE
from stratus.volume.models import Attachment, Snapshot, Volume
from stratus.volume.policy import RULES
from stratus.volume.quotas import Quotas, quota_table
from stratus.volume.rpcapi import VolumeManagerAPI
from stratus.volume.snapshots import Snapshots
from stratus.volume.transfers import Transfers
from stratus.volume.types import Types
from stratus.volume.uploads import ImageUpload, image_body
from stratus.volume.volumes import NewVolume, Volumes

LOG = logging.getLogger(__name__)


class VolumeService:
    """Block storage's parts within one database transaction."""

    def __init__(self, txn: Txn, options: VolumeSettings, quota_table: QuotaTable) -> None:
        session = txn.session
        self.txn = txn
        self.session = session
        self.options = options
        self.quotas = Quotas(txn, quota_table)
        self.hosts = Hosts(session, options)
        self.types = Types(session, options)
        self.snapshots = Snapshots(session, self.quotas)
        self.volumes = Volumes(session, options, types=self.types, snapshots=self.snapshots,
                               hosts=self.hosts, quotas=self.quotas)
        self.attachments = Attachments(session, self.volumes)
        self.transfers = Transfers(session, self.volumes, self.quotas)


class VolumeRuntime:
    """What volume-api and volume-managers keep for the life of the process."""

    def __init__(self, settings: Settings, db: Database | None = None,
                 manager_api: VolumeManagerAPI | None = None) -> None:
        self.settings = settings
        self.options = settings.volume
        self.db = db or Database(settings.database_url_for("volume",
                                                           settings.volume.database_url))
        self.enforcer = Enforcer(RULES, settings.policy_file)
        self.manager_api = manager_api
        self.quota_table = quota_table(settings.volume)

    async def start(self) -> None:
        """Bring the schema to head and make the default volume type on a new database."""
        await self.db.upgrade(SCRIPT_LOCATION, VERSION_TABLE, known_head=HEAD)
        async with self.service() as svc:
            await svc.types.ensure_default()

    async def stop(self) -> None:
        await self.db.dispose()

    @asynccontextmanager
    async def service(self) -> AsyncIterator[VolumeService]:
        async with self.db.transaction() as txn:
            yield VolumeService(txn, self.options, self.quota_table)

    def _managers(self) -> VolumeManagerAPI:
        if self.manager_api is None:
            raise RuntimeError("this process has no bus client of the volume-managers")
        return self.manager_api

    # Operations that end with a message to a manager -----------------------------------

    async def create_volume(self, ctx: RequestContext, request: NewVolume) -> Volume:
        """Check, count against the quota and record the volume, then have its host make
        it. No host up → the volume is ``error`` at once (it never waits in creating)."""
        project_id = ctx.require_project()
        async with self.service() as svc:
            await svc.quotas.lock(project_id)
            volume = await svc.volumes.new(ctx, request)
        if volume.host is None:
            return volume
        try:
            await self._managers().create_volume(ctx, volume.host, volume.id)
        except MessagingError as exc:
            LOG.error("volume %s: the volume-manager is unreachable: %s", volume.id, exc)
            async with self.service() as svc:
                await svc.volumes.set_status(volume.id, states.ERROR,
                                            reason="volume-manager unreachable")
                volume = await svc.volumes.get(volume.id)
        return volume

    async def delete_volume(self, ctx: RequestContext, volume_id: str,
                            project_id: str | None, *, cascade: bool = False,
                            force: bool = False,
                            authorize: Callable[[Volume], None] | None = None) -> None:
        """Mark the volume ``deleting`` and have its host remove it. ``authorize`` (the
        API's policy check) sees the volume in the same transaction: one transaction per
        delete, not a read before it (under a burst of deletes every round trip to the
        database counts: each waits its turn on the API process's busy event loop)."""
        async with self.service() as svc:
            volume = await svc.volumes.get_visible(ctx, volume_id) if authorize else \
                await svc.volumes.get(volume_id, project_id)
            if authorize is not None:
                authorize(volume)
            snapshots = await svc.snapshots.live(volume.id)
            if snapshots and not cascade:
                raise BadRequest(f"Invalid volume: Volume {volume.id} still has "
                                 f"{len(snapshots)} dependent snapshots.")
            allowed = states.ALL if force else states.DELETABLE
            if not await svc.volumes.transition(volume.id, allowed, states.DELETING,
                                        attach_status=None if force else states.DETACHED):
                current = await svc.volumes.get(volume.id)
                if current.attach_status != states.DETACHED or current.status == states.IN_USE:
                    raise BadRequest(f"Invalid volume: Volume {volume.id} is attached; "
                                     "detach it before deleting it.")
                raise BadRequest(f"Invalid volume: Volume status must be available or "
                                 f"error or error_restoring or error_extending or "
                                 f"error_managing and must not be migrating, attached, "
                                 f"belong to a group, have snapshots, awaiting a transfer, "
                                 f"or be disassociated from snapshots after volume "
                                 f"transfer (status {current.status}).")
            for snapshot in snapshots:
                snapshot.status = states.DELETING
            await svc.transfers.close_for(volume.id)
            host = volume.host
            snapshot_ids = [s.id for s in snapshots]
        if host is None:  # never reached a backend: nothing to remove
            async with self.service() as svc:
                await svc.volumes.mark_deleted(volume_id)
            return
        for snapshot_id in snapshot_ids:
            await self._managers().delete_snapshot(ctx, host, snapshot_id)
        await self._managers().delete_volume(ctx, host, volume_id)

    async def extend_volume(self, ctx: RequestContext, volume_id: str,
                            project_id: str | None, new_size: int) -> None:
        async with self.service() as svc:
            volume = await svc.volumes.get(volume_id, project_id)
        async with self.service() as svc:
            await svc.quotas.lock(volume.project_id)
            volume = await svc.volumes.get(volume_id, project_id)
            if volume.status != states.AVAILABLE:
                raise BadRequest(f"Invalid volume: Volume status must be 'available' to "
                                 f"extend, currently in '{volume.status}'.")
            if new_size <= volume.size:
                raise BadRequest(f"Invalid input received: New size for extend must be "
                                 f"greater than current size. (current: {volume.size}, "
                                 f"extended: {new_size}).")
            await svc.quotas.check(volume.project_id, gigabytes=new_size - volume.size,
                                   volume_size=new_size)
            old_size = volume.size
            if not await svc.volumes.transition(volume.id, (states.AVAILABLE,),
                                                states.EXTENDING):
                raise BadRequest("Invalid volume: the volume changed state; try again.")
            # The new size counts against the quota from now; a failed extend gives it back.
            volume.size = new_size
            host = volume.host
        assert host is not None
        await self._managers().extend_volume(ctx, host, volume_id, new_size, old_size)

    async def create_snapshot(self, ctx: RequestContext, volume_id: str, *,
                              name: str | None, description: str | None,
                              metadata: dict[str, str], force: bool) -> Snapshot:
        project_id = ctx.require_project()
        async with self.service() as svc:
            await svc.quotas.lock(project_id)
            volume = await svc.volumes.get(volume_id, project_id if not ctx.is_admin else None)
            snapshot = await svc.snapshots.create(ctx, volume, name=name,
                                                  description=description, metadata=metadata,
                                                  force=force)
            host = volume.host
        assert host is not None
        await self._managers().create_snapshot(ctx, host, snapshot.id)
        return snapshot

    async def delete_snapshot(self, ctx: RequestContext, snapshot_id: str,
                              project_id: str | None) -> None:
        async with self.service() as svc:
            snapshot = await svc.snapshots.start_delete(snapshot_id, project_id)
            volume = await svc.volumes.get(snapshot.volume_id, include_deleted=True)
            host = volume.host
        assert host is not None
        await self._managers().delete_snapshot(ctx, host, snapshot_id)

    async def upload_to_image(self, ctx: RequestContext, volume_id: str,
                              project_id: str | None, upload: ImageUpload,
                              images: ImageClient) -> tuple[Volume, dict[str, Any]]:
        """``os-volume_upload_image``: the volume ``uploading``, the caller's queued image
        made, the upload cast to the volume's host; the volume and the image. Any failure
        before the cast leaves the volume ``available`` and no image."""
        async with self.service() as svc:
            volume = await svc.volumes.get(volume_id, project_id)
            if volume.status == states.IN_USE and upload.force:
                raise BadRequest("Invalid volume: Unable to force upload an in-use volume: "
                                 "this cloud does not enable force upload.")
            if volume.status != states.AVAILABLE:
                raise BadRequest(f"Invalid volume: Volume {volume.id} status must be "
                                 f"available to upload it to an image, but its status is "
                                 f"{volume.status}.")
            host = await svc.hosts.require_up(volume.host, upload.disk_format)
            if not await svc.volumes.transition(volume.id, (states.AVAILABLE,),
                                                states.UPLOADING):
                raise BadRequest("Invalid volume: the volume changed state; try again.")
            body = image_body(volume, upload)
        try:
            image = await images.create(ctx, body)
        except Exception:
            await self._upload_ended(volume_id)
            raise
        try:
            await self._managers().upload_to_image(ctx, host, volume_id, str(image["id"]),
                                                   upload.disk_format)
        except MessagingError as exc:
            await images.delete(ctx, str(image["id"]))
            await self._upload_ended(volume_id)
            raise ServiceUnavailable(f"The volume's host {host} is unreachable.") from exc
        async with self.service() as svc:
            return await svc.volumes.get(volume_id), image

    async def _upload_ended(self, volume_id: str) -> None:
        async with self.service() as svc:
            await svc.volumes.transition(volume_id, (states.UPLOADING,), states.AVAILABLE)

    async def attach(self, ctx: RequestContext, volume_id: str, project_id: str | None, *,
                     instance_uuid: str | None, mode: str,
                     connector: dict[str, Any] | None) -> Attachment:
        """Reserve the volume for the instance and, given a connector, connect it at once;
        a failed connection gives the reservation back."""
        async with self.service() as svc:
            attachment = await svc.attachments.create(volume_id, project_id,
                                                      instance_uuid=instance_uuid, mode=mode)
        if connector is None:
            return attachment
        try:
            return await self.update_attachment(ctx, attachment.id, None, connector)
        except Exception:
            async with self.service() as svc:  # give the reservation back
                await svc.attachments.delete(attachment.id, None)
            raise

    async def update_attachment(self, ctx: RequestContext, attachment_id: str,
                                project_id: str | None,
                                connector: dict[str, Any]) -> Attachment:
        """Give the attachment a connector: the volume's host works out the connection
        info; the attachment (and volume) are then ``attaching``."""
        async with self.service() as svc:
            attachment = await svc.attachments.get(attachment_id, project_id)
            if attachment.attach_status not in (states.ATTACHMENT_RESERVED,
                                                states.ATTACHMENT_ATTACHING,
                                                states.ATTACHMENT_ATTACHED):
                raise BadRequest(f"Invalid attachment: status {attachment.attach_status}.")
            volume = await svc.volumes.get(attachment.volume_id)
            host = volume.host
        assert host is not None
        try:
            info = await self._managers().initialize_connection(ctx, host, volume.id,
                                                                connector)
        except RemoteError as exc:
            raise BadRequest(f"Invalid volume: {exc.message}") from exc
        except MessagingError as exc:
            raise ServiceUnavailable(f"The volume's host {host} is unreachable.") from exc
        async with self.service() as svc:
            return await svc.attachments.connect(attachment_id, project_id, connector, info)


__all__ = ["SCRIPT_LOCATION", "VERSION_TABLE", "NewVolume", "VolumeRuntime", "VolumeService"]
