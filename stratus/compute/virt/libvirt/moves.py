"""The libvirt driver's moves: cold (resize, migration) and live migration.

Cold: the source powers the guest off, undefines its domain (its XML kept as
``domain.xml``) and renames ``<uuid>/`` to ``<uuid>_resize/``; the destination (perhaps the
same host) makes ``<uuid>/`` from that: ``base`` linked, ``disk`` copied and re-pointed at
it (``qemu-img rebase -u``), grown to the new flavor's root disk, then defines and starts
the domain of the new flavor. Confirm removes ``<uuid>_resize/``; revert renames it back
(the overlay names ``<uuid>/base`` again) and defines the kept XML. ``disk_info`` names
files on the source, so the destination reads them there: hosts on one machine, or sharing
the instances' file system, as in a test of two agents here (a copy over the network, as
Nova does with ssh, is not done).

Live: peer to peer (the source libvirtd calls the destination's), the disk copied along
(``VIR_MIGRATE_NON_SHARED_INC``: the overlay, the base being linked on the destination
beforehand), the domain's files re-pointed at the destination's instance directory
(``VIR_MIGRATE_PARAM_DEST_XML``) and QEMU's migration stream on the loopback. libvirt
refuses a migration between two daemons with the same host UUID, so two agents on one
machine need two libvirtd (each its own ``host_uuid``, state directories and socket); the
destination tells the source the URI of its daemon (``migration_uri``).

Root disks in RBD (``images_type = rbd``) are shared by the hosts and never copied either:
a cold move keeps the disk where it is, taking an RBD snapshot (``stratus-resize``) first,
grows it for a larger flavor, and a revert rolls it back to that snapshot (size included;
the destination drops its guest keeping the disk), a confirm removes the snapshot; a live
migration is a plain one (no block migration), the destination's libvirtd given the Ceph
secret beforehand.

Volumes (``GuestSpec.block_devices``, connected on the destination by the agent) are never
copied: a moved guest's domain names the same volume files, and a guest booted from a
volume has no disk of its own to copy (its ``vda`` is the volume, in both directions).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Protocol

from stratus.compute.virt.driver import (
    GuestNotFound,
    GuestSpec,
    MigrationAborted,
    MigrationProgress,
    ProgressCallback,
    VirtError,
)
from stratus.compute.virt.libvirt.guest_xml import (
    RbdSource,
    is_config_drive,
    rbd_source,
    root_volume,
    volume_file,
)
from stratus.compute.virt.libvirt.rbd_disks import RbdDisks
from stratus.compute.virt.libvirt.tools import create_local_disk, local_disk_name, run_tool

LOG = logging.getLogger(__name__)

_GIB = 1024**3
#: The RBD snapshot a cold move of an RBD-backed guest takes of its disk: a revert rolls
#: the disk back to it (the new flavor may have grown it), a confirm removes it.
RESIZE_SNAPSHOT = "stratus-resize"
#: Seconds between reads of a live migration's progress.
PROGRESS_INTERVAL = 0.5


class LibvirtDriver(Protocol):
    """What of the libvirt driver the moves use."""

    instances_dir: Path
    host: str
    migration_uri: str
    images_type: str
    _libvirt: Any
    _aborted: set[str]

    ceph: RbdDisks | None

    def _c(self) -> Any: ...
    async def _call(self, fn: Any, *args: Any) -> Any: ...
    async def _domain(self, uuid: str) -> Any: ...
    async def _remove(self, uuid: str, *, rbd_disk: bool = True) -> None: ...
    async def _ceph_secret(self, guest: GuestSpec | None = None,
                           connection_info: dict[str, Any] | None = None) -> str | None: ...
    async def _ceph_secret_of_host(self) -> None: ...
    def _undefine(self, uuid: str) -> None: ...
    def _define_and_start(self, xml: str) -> None: ...
    async def write_config_drive(self, guest: GuestSpec) -> Path | None: ...
    def domain_xml(self, guest: GuestSpec, disk: Path | RbdSource, disk_format: str = "qcow2",
                   local_disks: dict[str, Path] | None = None,
                   rbd_secret: str | None = None,
                   config_drive: Path | None = None) -> str: ...
    def instance_dir(self, uuid: str) -> Path: ...
    async def make_instance_dir(self, uuid: str) -> Path: ...
    def console_log(self, uuid: str) -> Path: ...
    async def power_off(self, uuid: str, grace_period: float | None = None) -> None: ...


def aside_dir(driver: LibvirtDriver, uuid: str) -> Path:
    return driver.instances_dir / f"{uuid}_resize"


def _qemu_img(args: list[str], what: str) -> str:
    return run_tool(["qemu-img", *args], what)


def _disk_format_of_base(base: Path) -> str:
    info = json.loads(_qemu_img(["info", "-U", "--output=json", str(base)],
                                "Could not read the base image"))
    return str(info.get("format", "raw"))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


# Cold moves ------------------------------------------------------------------------------

async def _has_rbd_disk(driver: LibvirtDriver, uuid: str) -> bool:
    """Whether the guest's root disk is an RBD image (``images_type = rbd``, not booted
    from a volume): the hosts share it, so a move copies nothing."""
    return (driver.images_type == "rbd" and driver.ceph is not None
            and await driver.ceph.exists(uuid))


async def migrate_disk_and_power_off(driver: LibvirtDriver, uuid: str,
                                     dest_host: str) -> dict[str, Any]:
    dom = await driver._domain(uuid)
    directory, aside = driver.instance_dir(uuid), aside_dir(driver, uuid)
    if aside.exists():
        raise VirtError(f"A move of {uuid} is already under way on {driver.host}.")
    if await driver._call(dom.isActive):
        await driver.power_off(uuid)
    xml = await driver._call(dom.XMLDesc, 0)
    rbd_disk = await _has_rbd_disk(driver, uuid)
    if rbd_disk:
        assert driver.ceph is not None
        # The disk stays where it is for the destination; a revert goes back to this.
        await driver.ceph.remove_snapshot(uuid, RESIZE_SNAPSHOT)
        await driver.ceph.create_snapshot(uuid, RESIZE_SNAPSHOT)
    await driver._call(dom.undefine)
    await asyncio.to_thread(directory.rename, aside)
    await asyncio.to_thread((aside / "domain.xml").write_text, xml)
    return {"source_host": driver.host, "directory": str(aside), "rbd_disk": rbd_disk}


def _make_moved_disk(disk_info: dict[str, Any], directory: Path, root_gb: int) -> Path:
    source = Path(disk_info["directory"])
    base, disk = directory / "base", directory / "disk"
    if (source / "base").exists():
        _link_or_copy(source / "base", base)
        shutil.copy2(source / "disk", disk)
        fmt = _disk_format_of_base(base)
        _qemu_img(["rebase", "-u", "-f", "qcow2", "-b", str(base), "-F", fmt, str(disk)],
                  "Could not re-point the moved disk at its base")
    else:  # a disk without a base of its own (a cache on another file system): as it is
        shutil.copy2(source / "disk", disk)
    if root_gb:
        info = json.loads(_qemu_img(["info", "-U", "--output=json", str(disk)],
                                    "Could not read the moved disk"))
        if int(info.get("virtual-size", 0)) < root_gb * _GIB:
            _qemu_img(["resize", "-q", str(disk), str(root_gb * _GIB)],
                      "Could not grow the disk to the new flavor")
    return disk


def _move_local_disks(guest: GuestSpec, disk_info: dict[str, Any],
                      directory: Path) -> dict[str, Path]:
    """The guest's ephemeral and swap disks in ``directory``: copies of the source's (what
    the guest wrote on them moves with it), or new ones where the source has none."""
    source = Path(disk_info["directory"])
    made = {}
    for index, local in enumerate(guest.local_disks):
        name = local_disk_name(local, index)
        if (source / name).exists():
            shutil.copy2(source / name, directory / name)
            made[local.device] = directory / name
        else:
            made[local.device] = create_local_disk(local, directory, index)
    return made


async def finish_migration(driver: LibvirtDriver, guest: GuestSpec,
                           disk_info: dict[str, Any], *, power_on: bool) -> None:
    directory = await driver.make_instance_dir(guest.uuid)
    root = root_volume(guest)
    try:
        rbd_secret = await driver._ceph_secret(guest)
        disk: Path | RbdSource
        if root is not None:  # booted from a volume: vda is the volume, connected here
            if root.get("driver_volume_type") == "rbd":
                disk, disk_format = rbd_source(root, rbd_secret), "raw"
            else:
                disk, disk_format = volume_file(root)
        elif disk_info.get("rbd_disk"):  # the same RBD disk, grown to the new flavor
            assert driver.ceph is not None
            disk, disk_format = await driver.ceph.grown(guest.uuid, guest.root_gb), "raw"
        else:
            disk = await asyncio.to_thread(_make_moved_disk, disk_info, directory,
                                           guest.root_gb)
            disk_format = "qcow2"
        local = await asyncio.to_thread(_move_local_disks, guest, disk_info, directory)
        drive = await driver.write_config_drive(guest)  # made afresh here, as at a spawn
        xml = driver.domain_xml(guest, disk, disk_format, local, rbd_secret, drive)
        if power_on:
            await driver._call(driver._define_and_start, xml)
        else:
            await driver._call(driver._c().defineXML, xml)
    except BaseException:
        with contextlib.suppress(Exception):
            await driver._remove(guest.uuid, rbd_disk=False)  # the source's, for a revert
        raise


async def confirm_migration(driver: LibvirtDriver, uuid: str) -> None:
    await asyncio.to_thread(shutil.rmtree, aside_dir(driver, uuid), True)
    if driver.images_type == "rbd" and driver.ceph is not None:
        await driver.ceph.remove_snapshot(uuid, RESIZE_SNAPSHOT)


async def finish_revert_migration(driver: LibvirtDriver, uuid: str, *,
                                  power_on: bool) -> None:
    aside, directory = aside_dir(driver, uuid), driver.instance_dir(uuid)
    if not aside.exists():
        raise GuestNotFound(f"Guest {uuid} was not kept aside on {driver.host}.")
    with contextlib.suppress(GuestNotFound):
        await driver._call(driver._undefine, uuid)  # what a destination here left
    await asyncio.to_thread(shutil.rmtree, directory, True)
    await asyncio.to_thread(aside.rename, directory)
    if await _has_rbd_disk(driver, uuid):
        assert driver.ceph is not None
        # Back to the disk as it was when the move began (its size too).
        await driver.ceph.roll_back(uuid, RESIZE_SNAPSHOT)
        await driver._ceph_secret_of_host()
    xml = await asyncio.to_thread((directory / "domain.xml").read_text)
    if power_on:
        await driver._call(driver._define_and_start, xml)
    else:
        await driver._call(driver._c().defineXML, xml)
    await asyncio.to_thread((directory / "domain.xml").unlink)


# Live migration ----------------------------------------------------------------------------

async def live_migration_source_data(driver: LibvirtDriver, uuid: str) -> dict[str, Any]:
    await driver._domain(uuid)
    directory = driver.instance_dir(uuid)
    return {"source_host": driver.host, "directory": str(directory),
            "rbd_disk": await _has_rbd_disk(driver, uuid)}


def _prepare_disk(source_data: dict[str, Any], directory: Path) -> Path:
    """An empty overlay on the same base, as large as the source's: what an incremental
    block migration copies the source's overlay into."""
    source = Path(source_data["directory"])
    info = json.loads(_qemu_img(["info", "-U", "--output=json", str(source / "disk")],
                                "Could not read the source's disk"))
    disk = directory / "disk"
    args = ["create", "-q", "-f", "qcow2"]
    if (source / "base").exists():
        base = directory / "base"
        _link_or_copy(source / "base", base)
        args += ["-b", str(base), "-F", _disk_format_of_base(base)]
    _qemu_img([*args, str(disk), str(int(info["virtual-size"]))],
              "Could not create the disk the guest moves into")
    return disk


async def pre_live_migration(driver: LibvirtDriver, guest: GuestSpec,
                             source_data: dict[str, Any]) -> dict[str, Any]:
    directory = await driver.make_instance_dir(guest.uuid)
    disk: Path | None = None
    try:
        # QEMU there opens RBD disks (the root or volumes) with this host's Ceph secret.
        await driver._ceph_secret(guest)
        # Neither a volume root nor an RBD disk is copied: both hosts open the same one.
        if root_volume(guest) is None and not source_data.get("rbd_disk"):
            disk = await asyncio.to_thread(_prepare_disk, source_data, directory)
        # The config drive is made afresh here (libvirt copies only vda): the cdrom is
        # re-pointed at it.
        drive = await driver.write_config_drive(guest)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, directory, True)
        raise
    return {"uri": driver.migration_uri, "host": driver.host,
            "disk": str(disk) if disk is not None else None,
            "volumes": [str(d.get("mountpoint")) for d in guest.block_devices],
            "console_log": str(driver.console_log(guest.uuid)),
            "config_drive": str(drive) if drive is not None else None,
            "instances_dir": str(driver.instances_dir)}


def destination_xml(xml: str, migrate_data: dict[str, Any], metadata_ns: str) -> str:
    """The domain as the destination runs it: its disk, console log and owner there."""
    root = ET.fromstring(xml)
    for disk in root.iterfind("./devices/disk"):
        target, source = disk.find("target"), disk.find("source")
        if target is not None and target.get("dev") == "vda" and source is not None \
                and source.get("file") and migrate_data.get("disk"):
            source.set("file", migrate_data["disk"])
            backing = disk.find("backingStore")
            if backing is not None:
                disk.remove(backing)
        if is_config_drive(disk) and source is not None and migrate_data.get("config_drive"):
            source.set("file", migrate_data["config_drive"])
    for log in root.iterfind("./devices/serial/log"):
        log.set("file", migrate_data["console_log"])
    instance = root.find(f"./metadata/{{{metadata_ns}}}instance")
    if instance is not None:
        for name, value in (("host", migrate_data["host"]),
                            ("instances", migrate_data["instances_dir"])):
            node = instance.find(f"{{{metadata_ns}}}{name}")
            if node is not None:
                node.text = value
    return ET.tostring(root, encoding="unicode")


async def live_migration(driver: LibvirtDriver, uuid: str, dest_host: str,
                         migrate_data: dict[str, Any],
                         on_progress: ProgressCallback | None = None, *,
                         metadata_ns: str) -> None:
    libvirt = driver._libvirt
    dom = await driver._domain(uuid)
    dest_uri = str(migrate_data.get("uri") or "")
    if not dest_uri:
        raise VirtError(f"{dest_host} gave no libvirt URI to migrate to.")
    xml = await driver._call(dom.XMLDesc, libvirt.VIR_DOMAIN_XML_MIGRATABLE)
    # The definition kept there (what a restart of the guest uses) is re-pointed too.
    persistent = await driver._call(dom.XMLDesc, libvirt.VIR_DOMAIN_XML_MIGRATABLE
                                    | libvirt.VIR_DOMAIN_XML_INACTIVE)
    params: dict[str, Any] = {
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: destination_xml(xml, migrate_data, metadata_ns),
        libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: destination_xml(persistent, migrate_data,
                                                               metadata_ns),
        # QEMU's stream stays on the loopback: both hosts are on this machine.
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://127.0.0.1",
        libvirt.VIR_MIGRATE_PARAM_LISTEN_ADDRESS: "127.0.0.1",
    }
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
             | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
    if migrate_data.get("disk"):  # the guest's own disk is copied along; volumes are not
        params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = ["vda"]
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_INC
    if migrate_data.get("volumes"):
        # Both hosts open the very same volume files (the file backend's, on a file system
        # the hosts share, as they must to attach them at all); libvirt cannot tell a local
        # file system is shared between two daemons and would refuse them as unsafe.
        flags |= libvirt.VIR_MIGRATE_UNSAFE
    driver._aborted.discard(uuid)
    migration = asyncio.ensure_future(asyncio.to_thread(dom.migrateToURI3, dest_uri, params,
                                                        flags))
    try:
        while not migration.done():
            await asyncio.wait({migration}, timeout=PROGRESS_INTERVAL)
            if migration.done() or on_progress is None:
                continue
            with contextlib.suppress(libvirt.libvirtError):
                stats = await asyncio.to_thread(dom.jobStats)
                await on_progress(MigrationProgress(
                    memory_total=int(stats.get("memory_total", 0)),
                    memory_processed=int(stats.get("memory_processed", 0)),
                    memory_remaining=int(stats.get("memory_remaining", 0)),
                    disk_total=int(stats.get("disk_total", 0)),
                    disk_processed=int(stats.get("disk_processed", 0)),
                    disk_remaining=int(stats.get("disk_remaining", 0))))
        migration.result()
    except libvirt.libvirtError as exc:
        if uuid in driver._aborted:
            raise MigrationAborted(f"The live migration of {uuid} was aborted.") from exc
        raise VirtError(f"The live migration of {uuid} failed: {exc}") from exc
    finally:
        driver._aborted.discard(uuid)
    # The domain runs there and is undefined here: its files here go.
    await asyncio.to_thread(shutil.rmtree, driver.instance_dir(uuid), True)


async def post_live_migration_at_destination(driver: LibvirtDriver, uuid: str) -> None:
    dom = await driver._domain(uuid)
    state, _reason = await driver._call(dom.state)
    if state == driver._libvirt.VIR_DOMAIN_PAUSED:  # paused to converge (force complete)
        await driver._call(dom.resume)


async def rollback_live_migration_at_destination(driver: LibvirtDriver, uuid: str) -> None:
    await driver._remove(uuid, rbd_disk=False)  # an RBD disk is the source's, in use there


async def live_migration_abort(driver: LibvirtDriver, uuid: str) -> None:
    dom = await driver._domain(uuid)
    driver._aborted.add(uuid)
    await driver._call(dom.abortJob)


async def live_migration_force_complete(driver: LibvirtDriver, uuid: str) -> None:
    """Pause the guest so that its memory stops changing and the copy converges; the
    destination resumes it (``post_live_migration_at_destination``)."""
    dom = await driver._domain(uuid)
    await driver._call(dom.suspend)
