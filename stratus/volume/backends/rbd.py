"""The ``rbd`` backend: each volume an RBD image ``volume-<id>`` in a Ceph pool (``volumes``),
Cinder's layout.

* Empty volumes are thin RBD images (4 MiB objects, Cinder's order 22).
* From an image: a copy-on-write clone of the image's protected snapshot when the image is
  in the ``rbd`` store of the same cluster and raw (``clone_image``: no bytes copied, seconds
  for any size); else the image file fetched to this host is written in with ``qemu-img
  convert -O raw`` through QEMU's librbd (``qemu-block-extra``).
* Snapshots are protected RBD snapshots ``snapshot-<id>`` of the volume's image; a volume
  from a snapshot is a clone of it, flattened when the chain would be deeper than
  ``max_clone_depth``; deleting a snapshot flattens its clones first (they keep their data).
* A clone of a volume is a full copy (clone of a temporary snapshot, flattened, the snapshot
  removed): the two volumes never depend on each other.
* Uploads to the image service (``copy_to_image_file``) read the volume out with ``qemu-img
  convert`` through librbd into a file of the image's format.
* ``connection_info`` is Cinder's ``rbd`` form with the monitors from the cluster map.

A create that fails removes what it made. Every librbd call runs on the process's Ceph thread
pool (``stratus.core.ceph``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from stratus.core import ceph as core_ceph
from stratus.core import hosttools
from stratus.core.ceph import Ceph, CephUnavailable, Monitor
from stratus.core.config import CephSettings
from stratus.volume.backends.base import (
    IMAGE_DISK_FORMATS,
    BackendError,
    MissingTool,
    VolumeBackend,
)

LOG = logging.getLogger(__name__)

GIB = 1 << 30
ORDER = 22
_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z-]{0,63}$")
_QEMU_FORMAT = {"vhd": "vpc"}
#: Tries, one second apart, to remove an image a client (QEMU) still has open.
REMOVE_TRIES = 10


def _name(kind: str, item_id: str) -> str:
    if not _ID_RE.match(item_id):
        raise BackendError(f"Not a valid {kind} id: {item_id!r}")
    return f"{kind}-{item_id}"


class RbdBackend(VolumeBackend):
    name = "rbd"

    def __init__(self, ceph: CephSettings, *, pool: str = "volumes",
                 qemu_img: str = "qemu-img", max_clone_depth: int = 5,
                 secret_uuid: str | None = None) -> None:
        self.settings = ceph
        self.pool = pool
        self.qemu_img = qemu_img
        self.max_clone_depth = max_clone_depth
        self.secret_uuid = secret_uuid
        self._ceph: Ceph | None = None
        self.monitors: list[Monitor] = []

    @property
    def ceph(self) -> Ceph:
        if self._ceph is None:
            raise CephUnavailable("Ceph: the rbd volume backend is not started")
        return self._ceph

    async def start(self) -> None:
        self._ceph = await core_ceph.acquire(self.settings)
        try:
            self.monitors = await self.ceph.monitors()
            await self.ceph.run(self.ceph.ioctx, self.pool)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        ceph, self._ceph = self._ceph, None
        if ceph is not None:
            await core_ceph.release(ceph)

    # Capabilities ---------------------------------------------------------------------------

    def image_formats(self) -> tuple[str, ...]:
        return IMAGE_DISK_FORMATS if hosttools.find(self.qemu_img) else ()

    def missing_tools(self) -> tuple[str, ...]:
        return () if hosttools.find(self.qemu_img) else (self.qemu_img,)

    # Blocking helpers (run on the Ceph pool) --------------------------------------------

    def _ioctx(self) -> Any:
        return self.ceph.ioctx(self.pool)

    def _create(self, name: str, size: int) -> None:
        self.ceph.rbd.RBD().create(self._ioctx(), name, size, order=ORDER, old_format=False,
                                   features=self._features())

    def _features(self) -> int:
        return self.ceph.features()

    def _grow(self, name: str, size: int) -> None:
        with self.ceph.rbd.Image(self._ioctx(), name) as image:
            if image.size() < size:
                image.resize(size)

    def _depth(self, image: Any) -> int:
        """How many parents the image has (1 for a clone of a non-clone)."""
        rbd = self.ceph.rbd
        depth = 0
        current = image
        opened: list[Any] = []
        try:
            while True:
                try:
                    parent = current.get_parent_image_spec()
                except rbd.ImageNotFound:
                    return depth
                depth += 1
                ioctx = self.ceph.ioctx(parent["pool_name"])
                current = rbd.Image(ioctx, parent["image_name"], read_only=True)
                opened.append(current)
        finally:
            for item in opened:
                item.close()

    def _clone(self, parent_pool: str, parent: str, snapshot: str, name: str,
               size: int) -> None:
        rbd = self.ceph.rbd
        # (A clone keeps its parent's object size: librbd refuses another order.)
        rbd.RBD().clone(self.ceph.ioctx(parent_pool), parent, snapshot, self._ioctx(), name,
                        features=self._features())
        try:
            with rbd.Image(self._ioctx(), name) as image:
                if image.size() < size:
                    image.resize(size)
                if self.max_clone_depth and self._depth(image) > self.max_clone_depth:
                    image.flatten()
        except BaseException:
            self._remove(name, tries=1)
            raise

    def _remove(self, name: str, *, tries: int = REMOVE_TRIES) -> None:
        """Remove the image and its snapshots; absent is fine. Retries while a client has
        it open (a guest being torn down)."""
        rbd = self.ceph.rbd
        for attempt in range(tries):
            try:
                with rbd.Image(self._ioctx(), name) as image:
                    for snap in list(image.list_snaps()):
                        if image.is_protected_snap(snap["name"]):
                            self._flatten_children(image, snap["name"])
                            image.unprotect_snap(snap["name"])
                        image.remove_snap(snap["name"])
                rbd.RBD().remove(self._ioctx(), name)
                return
            except rbd.ImageNotFound:
                return
            except rbd.ImageBusy:
                if attempt + 1 == tries:
                    raise BackendError(f"RBD image {self.pool}/{name} is still in use") from None
                time.sleep(1)

    def _flatten_children(self, image: Any, snapshot: str) -> None:
        rbd = self.ceph.rbd
        image.set_snap(snapshot)
        try:
            children = list(image.list_children())
        finally:
            image.set_snap(None)
        for pool, child in children:
            with rbd.Image(self.ceph.ioctx(pool), child) as clone:
                clone.flatten()

    def _find_snapshot(self, snapshot_id: str) -> str | None:
        """The volume image holding snapshot ``snapshot-<id>`` (a scan of the pool)."""
        rbd = self.ceph.rbd
        wanted = _name("snapshot", snapshot_id)
        for name in rbd.RBD().list(self._ioctx()):
            if not name.startswith("volume-"):
                continue
            try:
                with rbd.Image(self._ioctx(), name, read_only=True) as image:
                    if any(s["name"] == wanted for s in image.list_snaps()):
                        return str(name)
            except rbd.ImageNotFound:
                continue
        return None

    # Volumes ------------------------------------------------------------------------------

    async def _guarded(self, name: str, work: Any, *args: Any) -> None:
        """Run ``work``; on any failure remove the half-made ``name``."""
        try:
            await self.ceph.run(work, *args)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.ceph.run(self._remove, name, tries=1)
            raise

    async def create_volume(self, volume_id: str, size_gb: int) -> None:
        name = _name("volume", volume_id)
        await self._guarded(name, self._create, name, size_gb * GIB)

    async def clone_image(self, volume_id: str, size_gb: int, location: str,
                          disk_format: str | None) -> bool:
        """A copy-on-write clone of the image's data when it is a raw image in this cluster
        (``rbd://<our fsid>/pool/image/snap``); False (nothing made) otherwise."""
        source = core_ceph.rbd_location(location)
        if disk_format != "raw" or source is None or source.fsid != self.ceph.fsid:
            return False
        name = _name("volume", volume_id)
        await self._guarded(name, self._clone, source.pool, source.image, source.snapshot,
                            name, size_gb * GIB)
        return True

    async def create_volume_from_image(self, volume_id: str, size_gb: int, image: Any,
                                       image_format: str) -> None:
        name = _name("volume", volume_id)
        try:
            await self._convert("-f", _QEMU_FORMAT.get(image_format, image_format), "-O",
                                "raw", "-W", str(image), self._qemu_name(name),
                                failure=f"write the image into {self.pool}/{name}")
            await self.ceph.run(self._grow, name, size_gb * GIB)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.ceph.run(self._remove, name, tries=1)
            raise

    async def copy_to_image_file(self, volume_id: str, image_format: str,
                                 target: Path) -> None:
        if image_format not in IMAGE_DISK_FORMATS:
            raise BackendError(f"a volume cannot be read out as disk format {image_format}")
        name = _name("volume", volume_id)
        try:
            await self._convert("-f", "raw", "-O",
                                _QEMU_FORMAT.get(image_format, image_format),
                                self._qemu_name(name), str(target),
                                failure=f"read {self.pool}/{name} out")
        except BaseException:
            await asyncio.to_thread(target.unlink, True)
            raise

    def _qemu_name(self, name: str) -> str:
        """The volume's image as QEMU's librbd driver names it (our cluster and user)."""
        return core_ceph.qemu_target(self.settings, self.pool, name)

    async def _convert(self, *args: str, failure: str) -> None:
        """``qemu-img convert ARGS``; ``failure`` says what could not be done."""
        qemu_img = hosttools.find(self.qemu_img)
        if qemu_img is None:
            raise MissingTool(self.qemu_img)
        process = await asyncio.create_subprocess_exec(
            qemu_img, "convert", *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, err = await process.communicate()
        if process.returncode != 0:
            raise BackendError(f"qemu-img could not {failure}: "
                               f"{err.decode(errors='replace').strip()[-300:]}")

    async def create_volume_from_snapshot(self, volume_id: str, size_gb: int,
                                          snapshot_id: str) -> None:
        name = _name("volume", volume_id)
        source = await self.ceph.run(self._find_snapshot, snapshot_id)
        if source is None:
            raise BackendError(f"snapshot {snapshot_id} has no data in {self.pool}")
        await self._guarded(name, self._clone, self.pool, source,
                            _name("snapshot", snapshot_id), name, size_gb * GIB)

    async def clone_volume(self, volume_id: str, size_gb: int, source_id: str) -> None:
        name = _name("volume", volume_id)
        source = _name("volume", source_id)
        temporary = f"{name}.clone_snap"

        def copy() -> None:
            rbd = self.ceph.rbd
            with rbd.Image(self._ioctx(), source) as image:
                image.create_snap(temporary)
                try:
                    image.protect_snap(temporary)
                    self._clone(self.pool, source, temporary, name, size_gb * GIB)
                    with rbd.Image(self._ioctx(), name) as clone:
                        clone.flatten()
                finally:
                    with contextlib.suppress(rbd.Error):
                        image.unprotect_snap(temporary)
                    image.remove_snap(temporary)

        await self._guarded(name, copy)

    async def extend_volume(self, volume_id: str, new_size_gb: int) -> None:
        await self.ceph.run(self._grow, _name("volume", volume_id), new_size_gb * GIB)

    async def delete_volume(self, volume_id: str) -> None:
        await self.ceph.run(self._remove, _name("volume", volume_id))

    async def volume_exists(self, volume_id: str) -> bool:
        name = _name("volume", volume_id)

        def present() -> bool:
            rbd = self.ceph.rbd
            try:
                with rbd.Image(self._ioctx(), name, read_only=True):
                    return True
            except rbd.ImageNotFound:
                return False

        return await self.ceph.run(present)

    # Snapshots ----------------------------------------------------------------------------

    async def create_snapshot(self, snapshot_id: str, volume_id: str) -> None:
        volume, snapshot = _name("volume", volume_id), _name("snapshot", snapshot_id)

        def make() -> None:
            rbd = self.ceph.rbd
            with rbd.Image(self._ioctx(), volume) as image:
                image.create_snap(snapshot)
                try:
                    image.protect_snap(snapshot)
                except BaseException:
                    image.remove_snap(snapshot)
                    raise

        await self.ceph.run(make)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        snapshot = _name("snapshot", snapshot_id)

        def remove() -> None:
            rbd = self.ceph.rbd
            volume = self._find_snapshot(snapshot_id)
            if volume is None:
                return
            with rbd.Image(self._ioctx(), volume) as image:
                if image.is_protected_snap(snapshot):
                    self._flatten_children(image, snapshot)  # its clones keep their data
                    image.unprotect_snap(snapshot)
                image.remove_snap(snapshot)

        await self.ceph.run(remove)

    # Attachments --------------------------------------------------------------------------

    def connection_info(self, volume_id: str, connector: dict[str, Any]) -> dict[str, Any]:
        """Cinder's rbd connection info (the monitors as the cluster map had them at
        start-up)."""
        return {"driver_volume_type": "rbd", "data": {
            "name": f"{self.pool}/{_name('volume', volume_id)}",
            "hosts": [m.host for m in self.monitors],
            "ports": [str(m.port) for m in self.monitors],
            "cluster_name": "ceph",
            "auth_enabled": True,
            "auth_username": self.settings.user,
            "secret_type": "ceph",
            "secret_uuid": self.secret_uuid or core_ceph.secret_uuid(self.ceph.fsid,
                                                                    self.settings.user),
            "volume_id": volume_id,
            "discard": True,
        }}
