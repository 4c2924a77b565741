"""Guests' root disks in RBD (``compute.images_type = rbd``), Nova's ``Rbd`` image backend.

The root disk of instance ``<uuid>`` is the RBD image ``<uuid>_disk`` in the pool
``images_rbd_pool`` (``vms``):

- a copy-on-write clone of the image's protected snapshot when the image lies in the ``rbd``
  store of the same cluster and is raw (its ``direct_url`` ``rbd://<fsid>/images/<id>/snap``):
  no byte of the image moves, and the host's image cache is never used (the seed's steps
  21-25 happen on the OSDs);
- else the image as this host's cache holds it, written in raw with ``qemu-img convert``
  through QEMU's librbd (rbd disks are raw);

then grown to the flavor's root disk. QEMU opens it itself (``<disk type='network'>``): it
gets the monitors from the cluster map and the user's key from a libvirt secret (see
``define_secret``). ``remove`` deletes it, retrying while QEMU still holds it open.

The connection to Ceph is made on first use, not when the agent starts: a host whose
cluster is down keeps running, and each build that needs Ceph fails with a fault naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from stratus.compute.virt.driver import VirtError
from stratus.compute.virt.libvirt.guest_xml import RbdSource
from stratus.compute.virt.libvirt.tools import run_tool
from stratus.core import ceph as core_ceph
from stratus.core import hosttools
from stratus.core.ceph import Ceph, Monitor
from stratus.core.config import CephSettings

LOG = logging.getLogger(__name__)

_GIB = 1 << 30
#: QEMU's block driver for RBD (librbd), a module of its own on Debian.
QEMU_RBD_MODULE = Path("/usr/lib/x86_64-linux-gnu/qemu/block-rbd.so")
#: The snapshot an image store's RBD image is read from (as the image service's rbd store).
IMAGE_SNAPSHOT = "snap"
#: Tries, one second apart, to remove a disk QEMU has not let go of yet (a guest that was
#: just destroyed).
REMOVE_TRIES = 10


class RbdDisks:
    def __init__(self, settings: CephSettings, *, pool: str = "vms",
                 secret_uuid: str | None = None) -> None:
        self.settings = settings
        self.pool = pool
        self._secret_uuid = secret_uuid
        self._ceph: Ceph | None = None
        self._monitors: list[Monitor] = []
        self._lock = asyncio.Lock()

    async def ceph(self) -> Ceph:
        """The process's connection to the cluster, made now on first use; raises
        ``CephUnavailable`` (naming Ceph) when it cannot be reached."""
        async with self._lock:
            if self._ceph is None:
                ceph = await core_ceph.acquire(self.settings)
                try:
                    self._monitors = await ceph.monitors()
                    await ceph.run(ceph.ioctx, self.pool)
                except BaseException:
                    await core_ceph.release(ceph)
                    raise
                self._ceph = ceph
            return self._ceph

    async def close(self) -> None:
        async with self._lock:
            ceph, self._ceph = self._ceph, None
        if ceph is not None:
            await core_ceph.release(ceph)

    @staticmethod
    def disk_name(uuid: str) -> str:
        return f"{uuid}_disk"

    async def secret_uuid(self) -> str:
        if self._secret_uuid is not None:
            return self._secret_uuid
        return core_ceph.secret_uuid((await self.ceph()).fsid, self.settings.user)

    async def source(self, name: str) -> RbdSource:
        """How QEMU reaches image ``name`` of our pool in this cluster."""
        await self.ceph()
        return RbdSource(f"{self.pool}/{name}", tuple((m.host, m.port) for m in self._monitors),
                         self.settings.user, await self.secret_uuid())

    async def secret(self) -> tuple[str, str, bytes]:
        """The libvirt secret of our user: its uuid, its usage name (one per cluster and
        user: libvirt allows one secret per usage) and the key's raw bytes."""
        ceph = await self.ceph()
        key = await ceph.run(ceph.client_key)
        return (await self.secret_uuid(), f"ceph client.{self.settings.user} of {ceph.fsid}",
                key)

    async def clones(self, location: str | None, disk_format: str | None) -> bool:
        """Whether an image at ``location`` (its ``direct_url``) is cloned rather than
        fetched: raw, in RBD, in this cluster."""
        source = core_ceph.rbd_location(location)
        if source is None or disk_format != "raw":
            return False
        return source.fsid == (await self.ceph()).fsid

    async def clone(self, uuid: str, location: str, root_gb: int) -> RbdSource:
        """``<uuid>_disk``: a clone of the image's snapshot at ``location``, grown to
        ``root_gb``; nothing is left when it fails."""
        source = core_ceph.rbd_location(location)
        assert source is not None
        ceph = await self.ceph()
        name = self.disk_name(uuid)

        def clone() -> None:
            rbd = ceph.rbd
            rbd.RBD().clone(ceph.ioctx(source.pool), source.image, source.snapshot,
                            ceph.ioctx(self.pool), name, features=ceph.features())
            try:
                self._fit(ceph, name, root_gb)
            except BaseException:
                self._remove(ceph, name, tries=1)
                raise

        await ceph.run(clone)
        return await self.source(name)

    async def import_file(self, uuid: str, path: Path, image_format: str,
                          root_gb: int) -> RbdSource:
        """``<uuid>_disk``: the image file ``path`` written in raw, grown to ``root_gb``;
        nothing is left when it fails."""
        ceph = await self.ceph()
        name = self.disk_name(uuid)
        target = core_ceph.qemu_target(self.settings, self.pool, name)
        try:
            await asyncio.to_thread(
                run_tool, ["qemu-img", "convert", "-q", "-f", image_format, "-O", "raw",
                           "-W", str(path), target],
                f"Could not write the image into RBD {self.pool}/{name}", None)
            await ceph.run(self._fit, ceph, name, root_gb)
        except BaseException:
            await ceph.run(self._remove, ceph, name, tries=1)
            raise
        return await self.source(name)

    def _fit(self, ceph: Ceph, name: str, root_gb: int) -> None:
        with ceph.rbd.Image(ceph.ioctx(self.pool), name) as image:
            size, wanted = image.size(), root_gb * _GIB
            if wanted and wanted < size:
                raise VirtError(f"The flavor's root disk ({root_gb} GB) is smaller than the "
                                f"image ({size / _GIB:.1f} GB).")
            if wanted > size:
                image.resize(wanted)

    # Snapshots ----------------------------------------------------------------------------

    async def image_pool(self, uuid: str) -> str | None:
        """The pool of the image ``<uuid>_disk`` was cloned from (the image store's, in
        this cluster), or None when the disk is no clone (imported from the host's copy)."""
        ceph = await self.ceph()

        def parent() -> str | None:
            with ceph.rbd.Image(ceph.ioctx(self.pool), self.disk_name(uuid),
                                read_only=True) as disk:
                try:
                    return str(disk.get_parent_image_spec()["pool_name"])
                except ceph.rbd.ImageNotFound:  # librbd's answer for "no parent"
                    return None

        return await ceph.run(parent)

    async def create_snapshot(self, uuid: str, snapshot: str) -> None:
        ceph = await self.ceph()

        def create() -> None:
            with ceph.rbd.Image(ceph.ioctx(self.pool), self.disk_name(uuid)) as disk:
                disk.create_snap(snapshot)

        await ceph.run(create)

    async def remove_snapshot(self, uuid: str, snapshot: str) -> None:
        """Remove the disk's ``snapshot`` (unprotected first; gone already is fine)."""
        ceph = await self.ceph()
        await ceph.run(self._remove_snapshot, ceph, self.disk_name(uuid), snapshot)

    def _remove_snapshot(self, ceph: Ceph, name: str, snapshot: str) -> None:
        rbd = ceph.rbd
        try:
            with rbd.Image(ceph.ioctx(self.pool), name) as disk:
                if snapshot not in {s["name"] for s in disk.list_snaps()}:
                    return
                if disk.is_protected_snap(snapshot):
                    disk.unprotect_snap(snapshot)
                disk.remove_snap(snapshot)
        except rbd.ImageNotFound:
            return

    async def roll_back(self, uuid: str, snapshot: str) -> None:
        """The disk back to ``snapshot`` (its data and size), which is then removed; no
        error when there is no such snapshot (the disk is left as it is)."""
        ceph = await self.ceph()

        def roll_back() -> None:
            with ceph.rbd.Image(ceph.ioctx(self.pool), self.disk_name(uuid)) as disk:
                if snapshot in {s["name"] for s in disk.list_snaps()}:
                    disk.rollback_to_snap(snapshot)
            self._remove_snapshot(ceph, self.disk_name(uuid), snapshot)

        await ceph.run(roll_back)

    async def grown(self, uuid: str, root_gb: int) -> RbdSource:
        """The existing ``<uuid>_disk`` grown to ``root_gb`` (a move to a larger flavor)."""
        ceph = await self.ceph()
        await ceph.run(self._fit, ceph, self.disk_name(uuid), root_gb)
        return await self.source(self.disk_name(uuid))

    def snapshot_target(self, uuid: str, snapshot: str) -> str:
        """QEMU's name of the disk's ``snapshot`` (``qemu-img convert`` reads it)."""
        return core_ceph.qemu_target(self.settings, self.pool,
                                     f"{self.disk_name(uuid)}@{snapshot}")

    async def flat_clone(self, uuid: str, snapshot: str, pool: str, image_id: str) -> str:
        """The disk's ``snapshot`` as image ``image_id`` of the image store's ``pool``, as
        that store writes images: a clone made independent of the disk (flattened: the
        server may go, the image stays), with its protected snapshot ``snap``; its
        ``rbd://`` location. Nothing is left when it fails."""
        ceph = await self.ceph()
        rbd = ceph.rbd

        def clone() -> str:
            source, target = ceph.ioctx(self.pool), ceph.ioctx(pool)
            with rbd.Image(source, self.disk_name(uuid)) as disk:
                disk.protect_snap(snapshot)
            try:
                rbd.RBD().clone(source, self.disk_name(uuid), snapshot, target, image_id,
                                features=ceph.features())
                try:
                    with rbd.Image(target, image_id) as made:
                        made.flatten()
                        made.create_snap(IMAGE_SNAPSHOT)
                        made.protect_snap(IMAGE_SNAPSHOT)
                except BaseException:
                    with contextlib.suppress(rbd.Error), rbd.Image(target, image_id) as made:
                        if IMAGE_SNAPSHOT in {s["name"] for s in made.list_snaps()}:
                            made.unprotect_snap(IMAGE_SNAPSHOT)
                            made.remove_snap(IMAGE_SNAPSHOT)
                    with contextlib.suppress(rbd.ImageNotFound):
                        rbd.RBD().remove(target, image_id)
                    raise
            finally:
                with contextlib.suppress(rbd.Error), rbd.Image(source,
                                                               self.disk_name(uuid)) as disk:
                    disk.unprotect_snap(snapshot)  # refused while a clone still needs it
            return str(core_ceph.RbdLocation(ceph.fsid, pool, image_id, IMAGE_SNAPSHOT))

        return await ceph.run(clone)

    async def remove_image(self, location: str) -> None:
        """Remove what ``flat_clone`` made at ``location`` (an image store's RBD image)."""
        parsed = core_ceph.rbd_location(location)
        if parsed is None:
            return
        ceph = await self.ceph()
        rbd = ceph.rbd

        def remove() -> None:
            ioctx = ceph.ioctx(parsed.pool)
            with contextlib.suppress(rbd.ImageNotFound):
                with rbd.Image(ioctx, parsed.image) as image:
                    for snap in list(image.list_snaps()):
                        if image.is_protected_snap(snap["name"]):
                            image.unprotect_snap(snap["name"])
                        image.remove_snap(snap["name"])
                rbd.RBD().remove(ioctx, parsed.image)

        await ceph.run(remove)

    async def exists(self, uuid: str) -> bool:
        ceph = await self.ceph()
        name = self.disk_name(uuid)

        def present() -> bool:
            try:
                with ceph.rbd.Image(ceph.ioctx(self.pool), name, read_only=True):
                    return True
            except ceph.rbd.ImageNotFound:
                return False

        return await ceph.run(present)

    async def remove(self, uuid: str) -> None:
        """Delete ``<uuid>_disk`` (absent is fine), retrying while QEMU holds it."""
        ceph = await self.ceph()
        await ceph.run(self._remove, ceph, self.disk_name(uuid))

    def _remove(self, ceph: Ceph, name: str, *, tries: int = REMOVE_TRIES) -> None:
        rbd = ceph.rbd
        busy, purged = 0, False
        while True:
            try:
                rbd.RBD().remove(ceph.ioctx(self.pool), name)
                return
            except rbd.ImageNotFound:
                return
            except rbd.ImageHasSnapshots:
                if purged:
                    raise VirtError(f"RBD image {self.pool}/{name} keeps snapshots that are "
                                    "in use; it was not removed") from None
                # Snapshots an interrupted createImage or move left: nothing else takes them.
                with rbd.Image(ceph.ioctx(self.pool), name) as disk:
                    names = [snap["name"] for snap in disk.list_snaps()]
                for snapshot in names:
                    with contextlib.suppress(rbd.ImageBusy):  # a clone needs it: said above
                        self._remove_snapshot(ceph, name, snapshot)
                purged = True
            except rbd.ImageBusy:
                busy += 1
                if busy >= tries:
                    raise VirtError(f"RBD image {self.pool}/{name} is still in use; it "
                                    "was not removed") from None
                time.sleep(1)


def require_qemu_rbd(module: Path = QEMU_RBD_MODULE) -> None:
    """A ``VirtError`` saying how to add it when QEMU cannot open RBD disks on this host
    (it would fail the guest's start with "Unknown driver 'rbd'")."""
    if not module.exists():
        raise VirtError("QEMU cannot open RBD disks on this host: "
                        f"{hosttools.install_command('qemu-block-extra')}")


def secret_xml(uuid: str, usage: str) -> str:
    """A libvirt secret that lives in libvirtd's memory only (``ephemeral``: never written
    to /etc/libvirt/secrets) and whose value no client can read back (``private``)."""
    secret = ET.Element("secret", ephemeral="yes", private="yes")
    ET.SubElement(secret, "uuid").text = uuid
    ET.SubElement(ET.SubElement(secret, "usage", type="ceph"), "name").text = usage
    return ET.tostring(secret, encoding="unicode")


def define_secret(conn: Any, libvirt: Any, uuid: str, usage: str, key: bytes) -> None:
    """Define (or refresh) the secret and set its value (blocking). Done before each guest
    that needs it: ephemeral secrets are gone when libvirtd restarts."""
    try:
        secret = conn.secretDefineXML(secret_xml(uuid, usage), 0)
    except libvirt.libvirtError as exc:
        raise VirtError(f"libvirt refused the Ceph secret {uuid}: "
                        f"{exc.get_error_message()}") from exc
    secret.setValue(key, 0)
