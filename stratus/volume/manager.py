"""volume-manager: one per storage host, serving ``volume.<host>`` on the bus.

It does the backend work volume-api asks for and records the outcome in the volume's row:
``creating`` → ``available`` or ``error`` (a failed create leaves no data: the backend's
contract), ``deleting`` → deleted, ``extending`` → ``available`` (or ``error_extending``
with the old size back), ``uploading`` → ``available`` (the volume read out into a file of
the image's format under ``scratch``, streamed into the queued image, the file removed; a
failed upload deletes the image, and the volume is ``available`` again either way, as
Cinder's). Every handler is idempotent: it acts only while the row is in the
status the request left it in, so a redelivered cast is a no-op. It heartbeats into
``volume_services`` so volume-api knows which hosts can take new volumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select

from stratus.core import hosttools
from stratus.core.clients.image import ImageClient
from stratus.core.context import RequestContext
from stratus.core.db import utcnow
from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.metrics import VOLUME_BYTES
from stratus.core.periodic import Periodic
from stratus.volume import states
from stratus.volume.backends.base import BackendError, MissingTool, VolumeBackend
from stratus.volume.hosts import HostCapabilities
from stratus.volume.models import Volume
from stratus.volume.service import VolumeRuntime

LOG = logging.getLogger(__name__)


class ImageSource(Protocol):
    """Gets an image's data onto this host (``stratus.core.images_cache.HostImages``)."""

    async def local_image(self, ctx: RequestContext, image_id: str) -> Any:
        """An object with ``path`` and ``disk_format``."""


class VolumeManager:
    METHODS = ("create_volume", "delete_volume", "extend_volume", "create_snapshot",
               "delete_snapshot", "upload_to_image", "initialize_connection")

    def __init__(self, host: str, runtime: VolumeRuntime, backend: VolumeBackend, *,
                 images: ImageSource | None = None, image_service: ImageClient | None = None,
                 scratch: Path | None = None) -> None:
        """``images`` brings images' data to this host (volumes from images);
        ``image_service`` uploads into images (``os-volume_upload_image``), through
        files under ``scratch``."""
        self.host = host
        self.runtime = runtime
        self.backend = backend
        self.images = images
        self.image_service = image_service
        self.scratch = scratch or runtime.settings.data_dir / "volume-uploads"
        self._heartbeat = Periodic(f"volume-manager {host}: heartbeat",
                                   runtime.options.report_interval, self.report)

    # Life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Report in, settle what a crash left (partial files, volumes stuck mid-create),
        then keep reporting."""
        await self.backend.start()
        await self.report()
        # Files of uploads a crash interrupted (their volumes are settled by recover()).
        await asyncio.to_thread(shutil.rmtree, self.scratch, True)
        remove = getattr(self.backend, "remove_partials", None)
        if remove is not None:
            for path in await asyncio.to_thread(remove):
                LOG.warning("removed partial volume data %s", path)
        await self.recover()
        self._heartbeat.start()

    async def stop(self) -> None:
        await self._heartbeat.stop()
        await self.backend.stop()

    async def report(self) -> None:
        async with self.runtime.service() as svc:
            await svc.hosts.report(self.host, self.backend.name,
                                   self.runtime.options.availability_zone,
                                   self.capabilities())

    def capabilities(self) -> HostCapabilities:
        """What this host's backend can do now (reported with every heartbeat)."""
        return HostCapabilities(image_formats=list(self.backend.image_formats()),
                                missing_tools=list(self.backend.missing_tools()))

    async def recover(self) -> list[str]:
        """Volumes of this host left in ``creating`` by a crash become ``error`` (their
        data, if any, is removed); ones left ``deleting`` are deleted; ones left
        ``uploading`` are ``available`` again (their image stays queued: the upload had
        the user's token, which this restart does not)."""
        settled = []
        async with self.runtime.service() as svc:
            stuck = list(await svc.session.scalars(select(Volume).where(
                Volume.host == self.host, Volume.deleted_at.is_(None),
                Volume.status.in_([states.CREATING, states.DELETING, states.UPLOADING]))))
        for volume in stuck:
            if volume.status == states.CREATING:
                await self._fail_create(volume.id, "the volume-manager restarted mid-create")
            elif volume.status == states.UPLOADING:
                async with self.runtime.service() as svc:
                    await svc.volumes.transition(volume.id, (states.UPLOADING,),
                                                 states.AVAILABLE)
            else:
                await self.delete_volume(RequestContext.for_service("volume-manager"), volume.id)
            settled.append(volume.id)
        return settled

    # Bus methods ---------------------------------------------------------------------------

    async def create_volume(self, ctx: RequestContext, volume_id: str) -> None:
        async with self.runtime.service() as svc:
            try:
                volume = await svc.volumes.get(volume_id)
            except NotFound:
                return
            if volume.status != states.CREATING or volume.host != self.host:
                return
            size, snapshot_id, source_id, image_id = (volume.size, volume.snapshot_id,
                                                      volume.source_volid, volume.image_id)
        image_metadata: dict[str, str] = {}
        bootable = None
        try:
            if snapshot_id is not None:
                await self.backend.create_volume_from_snapshot(volume_id, size, snapshot_id)
            elif source_id is not None:
                await self.backend.clone_volume(volume_id, size, source_id)
            elif image_id is not None:
                image_metadata = await self._create_from_image(ctx, volume_id, size, image_id)
                bootable = True
            else:
                await self.backend.create_volume(volume_id, size)
        except Exception as exc:
            LOG.error("volume %s: create failed: %s", volume_id, exc)
            await self._fail_create(volume_id, str(exc))
            return
        async with self.runtime.service() as svc:
            extra: dict[str, Any] = ({"bootable": True, "image_metadata": image_metadata}
                                     if bootable else {})
            ok = await svc.volumes.transition(volume_id, (states.CREATING,), states.AVAILABLE,
                                      **extra)
        if not ok:  # deleted or reset while we worked: the data must not outlive the row
            LOG.warning("volume %s: no longer creating; removing its new data", volume_id)
            with contextlib.suppress(BackendError):
                await self.backend.delete_volume(volume_id)

    async def _create_from_image(self, ctx: RequestContext, volume_id: str, size: int,
                                 image_id: str) -> dict[str, str]:
        if self.images is None:
            raise BackendError("this volume-manager cannot reach the image service")
        image_info = getattr(self.images, "image_info", None)
        if image_info is not None:
            # Where the image's data lies (direct_url, shown to services): a backend in the
            # same store clones it instead of fetching it.
            image = await image_info(ctx, image_id)
            location, disk_format = image.get("direct_url"), image.get("disk_format")
            if location and await self.backend.clone_image(volume_id, size, str(location),
                                                           disk_format):
                return {"image_id": image_id, "disk_format": str(disk_format)}
        cached = await self.images.local_image(ctx, image_id)
        disk_format = cached.disk_format or "raw"
        try:
            await self.backend.create_volume_from_image(volume_id, size, cached.path,
                                                        disk_format)
        except MissingTool as exc:  # volume-api refuses these; this host changed since
            raise BackendError(hosttools.missing(exc.command, self.host)) from exc
        with contextlib.suppress(OSError):  # the image's bytes, written into the volume
            VOLUME_BYTES.labels("from_image").inc(
                (await asyncio.to_thread(cached.path.stat)).st_size)
        return {"image_id": image_id, "disk_format": disk_format}

    async def _fail_create(self, volume_id: str, reason: str) -> None:
        with contextlib.suppress(BackendError):
            await self.backend.delete_volume(volume_id)
        async with self.runtime.service() as svc:
            await svc.volumes.transition(volume_id, (states.CREATING,), states.ERROR,
                                 error_reason=reason[:1000])

    async def _volume_is(self, volume_id: str, status: str) -> bool:
        """Whether the volume is still in ``status``, the state volume-api set before the
        cast. Anything else (gone, reset, already done) means the work is no longer ours."""
        async with self.runtime.service() as svc:
            try:
                volume = await svc.volumes.get(volume_id)
            except NotFound:
                return False
            return volume.status == status

    async def _snapshot_is(self, snapshot_id: str, status: str) -> str | None:
        """The snapshot's volume id while the snapshot is still in ``status`` (as
        :meth:`_volume_is`); None when the work is no longer ours."""
        async with self.runtime.service() as svc:
            try:
                snapshot = await svc.snapshots.get(snapshot_id)
            except NotFound:
                return None
            return snapshot.volume_id if snapshot.status == status else None

    @staticmethod
    async def _succeeds(work: Awaitable[None], what: str) -> bool:
        """Whether the backend's ``work`` succeeded; a failure is logged as ``what`` failed
        and left to the caller to record on its row (a manager's cast has no one to raise
        to)."""
        try:
            await work
        except Exception as exc:
            LOG.error("%s failed: %s", what, exc)
            return False
        return True

    async def delete_volume(self, ctx: RequestContext, volume_id: str) -> None:
        if not await self._volume_is(volume_id, states.DELETING):
            return
        if not await self._succeeds(self.backend.delete_volume(volume_id),
                                    f"volume {volume_id}: delete"):
            async with self.runtime.service() as svc:
                await svc.volumes.transition(volume_id, (states.DELETING,), states.ERROR_DELETING)
            return
        async with self.runtime.service() as svc:
            await svc.volumes.mark_deleted(volume_id)

    async def extend_volume(self, ctx: RequestContext, volume_id: str, new_size: int,
                            old_size: int) -> None:
        if not await self._volume_is(volume_id, states.EXTENDING):
            return
        if not await self._succeeds(self.backend.extend_volume(volume_id, new_size),
                                    f"volume {volume_id}: extend"):
            async with self.runtime.service() as svc:
                await svc.volumes.transition(volume_id, (states.EXTENDING,), states.ERROR_EXTENDING,
                                     size=old_size)
            return
        async with self.runtime.service() as svc:
            await svc.volumes.transition(volume_id, (states.EXTENDING,), states.AVAILABLE,
                                 size=new_size)

    async def upload_to_image(self, ctx: RequestContext, volume_id: str, image_id: str,
                              disk_format: str) -> None:
        if not await self._volume_is(volume_id, states.UPLOADING):
            return
        try:
            await self._upload(ctx, volume_id, image_id, disk_format)
        except Exception as exc:
            LOG.error("volume %s: upload to image %s failed: %s", volume_id, image_id, exc)
            if self.image_service is not None:
                await self.image_service.discard(ctx, image_id)
        async with self.runtime.service() as svc:
            await svc.volumes.transition(volume_id, (states.UPLOADING,), states.AVAILABLE)

    async def _upload(self, ctx: RequestContext, volume_id: str, image_id: str,
                      disk_format: str) -> None:
        if self.image_service is None:
            raise BackendError("this volume-manager cannot reach the image service")
        await asyncio.to_thread(self.scratch.mkdir, parents=True, exist_ok=True)
        path = self.scratch / f"{volume_id}.{image_id}"
        try:
            await self.backend.copy_to_image_file(volume_id, disk_format, path)
            await self.image_service.upload_file(ctx, image_id, path)
            VOLUME_BYTES.labels("to_image").inc((await asyncio.to_thread(path.stat)).st_size)
        finally:
            await asyncio.to_thread(path.unlink, True)

    async def create_snapshot(self, ctx: RequestContext, snapshot_id: str) -> None:
        volume_id = await self._snapshot_is(snapshot_id, states.CREATING)
        if volume_id is None:
            return
        try:
            await self.backend.create_snapshot(snapshot_id, volume_id)
            status = states.AVAILABLE
        except Exception as exc:
            LOG.error("snapshot %s: create failed: %s", snapshot_id, exc)
            with contextlib.suppress(BackendError):
                await self.backend.delete_snapshot(snapshot_id)
            status = states.ERROR
        async with self.runtime.service() as svc:
            snapshot = await svc.snapshots.get(snapshot_id)
            if snapshot.status == states.CREATING:
                snapshot.status = status

    async def delete_snapshot(self, ctx: RequestContext, snapshot_id: str) -> None:
        if await self._snapshot_is(snapshot_id, states.DELETING) is None:
            return
        if not await self._succeeds(self.backend.delete_snapshot(snapshot_id),
                                    f"snapshot {snapshot_id}: delete"):
            async with self.runtime.service() as svc:
                (await svc.snapshots.get(snapshot_id)).status = "error_deleting"
            return
        async with self.runtime.service() as svc:
            snapshot = await svc.snapshots.get(snapshot_id, include_deleted=True)
            snapshot.status = states.DELETED
            snapshot.deleted_at = utcnow()

    async def initialize_connection(self, ctx: RequestContext, volume_id: str,
                                    connector: dict[str, Any]) -> dict[str, Any]:
        if not await self.backend.volume_exists(volume_id):
            raise BadRequest(f"Volume {volume_id} has no data on host {self.host}.")
        return self.backend.connection_info(volume_id, connector)
