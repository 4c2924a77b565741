"""Real guests: QEMU (KVM where the hardware allows, TCG otherwise) through libvirt.

Contracts beyond ``VirtDriver``'s:

- Every guest is a persistent libvirt domain named ``instance-<uuid>`` whose ``<metadata>``
  carries a ``stratus:instance`` element naming the instances directory; ``list_guests``
  reports exactly those of this directory (other deployments on the machine are not ours),
  so a new driver (the agent restarted) adopts the domains that kept running meanwhile.
- Its files live in ``<instances_dir>/<uuid>/``: ``disk`` (a qcow2 overlay, grown to the
  flavor's root disk, on ``base``: a hard link to the image cache's file, so eviction from
  the cache never pulls a guest's base from under it; with ``images_type = rbd`` the root
  disk is the RBD image ``vms/<uuid>_disk`` instead, see ``rbd_disks``), ``disk.eph<N>`` and
  ``disk.swap``
  (the ephemeral and swap disks, qcow2), ``disk.config`` (the config drive of a guest
  that has one: an ISO 9660 image labelled ``config-2``, a read-only cdrom; a rescue's is
  ``disk.config.rescue``) and ``console.log`` (the serial port,
  written by virtlogd, what ``get_console_output`` returns). ``destroy`` removes the domain
  and that directory; a failed ``spawn`` does the same before raising.
- ``snapshot`` copies ``disk`` (with its base) into one standalone qcow2 under
  ``<instances_dir>/snapshots/`` with ``qemu-img convert``. A running guest is paused for
  the copy and resumed after: pausing (QEMU's ``stop``) drains the guest's in-flight I/O
  and flushes QEMU's qcow2 caches to the file, so the copy is what the guest had written,
  as after a sudden power cut, and never a half-updated qcow2; ``-U`` reads the file QEMU
  still holds open. A whole memory save (Nova's "cold" snapshot) would cost as much again
  for no better disk; the guest is paused for the copy's length (seconds per GiB).
- QEMU runs as root for our domains (a static DAC label with relabelling off), so libvirt
  never chowns the shared base images (a second guest's stop would hand them back) and
  instance files may live under a private data directory.
- A build's root disk is made ahead (``prepare``, while the ports are made) and its guest
  started paused once its taps exist, resumed when its ports are wired (``spawn_when``):
  its vCPUs never run before network-vif-plugged.
- NICs are the taps the l2-agent made (``<interface type='ethernet'>``, ``managed='no'``):
  never QEMU user networking, never libvirt's networks. Volumes and NICs attached later are
  hot-plugged live and into the definition (``VIR_DOMAIN_AFFECT_LIVE|CONFIG``).

libvirt-python blocks, so each call runs in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from stratus.compute.console_types import ConsoleEndpoint, ConsoleKind, ConsoleUnavailable
from stratus.compute.virt.config_drive import write_iso
from stratus.compute.virt.driver import (
    AgentNotEnabled,
    DiskSnapshot,
    GuestInfo,
    GuestNotFound,
    GuestSpec,
    HostResources,
    HypervisorUnavailable,
    PowerState,
    ProgressCallback,
    RescueSpec,
    StoredSnapshot,
    VirtDriver,
    VirtError,
)
from stratus.compute.virt.libvirt import host as libvirt_host
from stratus.compute.virt.libvirt import moves
from stratus.compute.virt.libvirt.consoles import console_endpoint
from stratus.compute.virt.libvirt.guest_xml import (
    RbdSource,
    cpu_shares,
    domain_xml,
    interface_xml,
    rbd_source,
    rescue_domain_xml,
    root_volume,
    volume_file,
    volume_xml,
)
from stratus.compute.virt.libvirt.rbd_disks import RbdDisks, define_secret, require_qemu_rbd
from stratus.compute.virt.libvirt.tools import create_local_disk
from stratus.compute.virt.libvirt.tools import run_tool as _run_tool
from stratus.core.ceph import CephUnavailable
from stratus.core.tracing import span

LOG = logging.getLogger(__name__)

DOMAIN_PREFIX = "instance-"
METADATA_NS = "https://stratus.dev/xmlns/libvirt/instance/1.0"
#: What ``get_console_output`` returns at most: the end of the log, as Nova does.
MAX_CONSOLE_BYTES = 100 * 1024
#: The guest agent's virtio-serial channel, as Nova's libvirt driver names it.
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
_GIB = 1024**3
#: The config drive's image in the instance directory, and the rescue's (Nova's names).
CONFIG_DRIVE = "disk.config"
RESCUE_CONFIG_DRIVE = "disk.config.rescue"


#: How often a spawn looks for the guest's taps while their ports are being wired.
TAP_POLL_S = 0.005


def _taps_exist(taps: list[str]) -> bool:
    # A stat in sysfs, which never waits on a disk: no worker thread for it.
    return all(os.path.exists(f"/sys/class/net/{tap}") for tap in taps)


async def _taps_appear(taps: list[str], plugged: asyncio.Future[Any]) -> bool:
    """True once every tap in ``taps`` exists on this host; False if ``plugged`` is done
    first."""
    while not plugged.done():
        if _taps_exist(taps):
            return True
        await asyncio.wait([plugged], timeout=TAP_POLL_S)
    return False


def _succeeded(future: asyncio.Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


async def _finished(task: asyncio.Future[Any]) -> None:
    """Once ``task`` is done, however it ended (its error, if any, is no one's now)."""
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()


def _power_state(libvirt: Any, state: int) -> PowerState:
    return {
        libvirt.VIR_DOMAIN_NOSTATE: PowerState.NOSTATE,
        libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
        libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
        libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
        libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.RUNNING,  # still shutting down
        libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTDOWN,
        libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
        libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
    }.get(state, PowerState.NOSTATE)


class LibvirtDriver(VirtDriver):
    name = "libvirt"
    needs_image_file = True

    def __init__(self, instances_dir: Path, *, uri: str = libvirt_host.DEFAULT_URI,
                 virt_type: str | None = None,
                 start_daemons: bool = True, shutdown_timeout: float = 60.0,
                 migration_uri: str | None = None, ceph: RbdDisks | None = None,
                 images_type: str = "qcow2") -> None:
        """``virt_type`` None picks ``kvm`` when it really works, else ``qemu`` (TCG);
        ``shutdown_timeout`` is the ACPI grace of a stop or soft reboot not given one;
        ``migration_uri`` is how other hosts' libvirtd reach this one for a live migration
        (default ``uri``); ``ceph``: this host's Ceph, for RBD volumes and, with
        ``images_type`` ``rbd``, root disks."""
        if images_type == "rbd" and ceph is None:
            raise ValueError("images_type rbd needs the host's Ceph (ceph=RbdDisks(...))")
        self.instances_dir = instances_dir
        self.uri = uri
        self.virt_type = virt_type
        self.start_daemons = start_daemons
        self.shutdown_timeout = shutdown_timeout
        self.migration_uri = migration_uri or uri
        self.ceph = ceph
        self.images_type = images_type
        self.clones_images = images_type == "rbd"
        #: Guests whose live migration from here was aborted on request.
        self._aborted: set[str] = set()
        self.host = os.uname().nodename
        self._conn: Any = None
        self._libvirt: Any = None
        #: The host's cgroup version for the ``cpu`` controller (read by ``init_host``).
        self._cgroup_version: int | None = None
        #: Base images already inspected: (path, inode, size, mtime_ns, declared format) →
        #: qemu-img's description. A base file never changes in place (the image cache
        #: renames new data in), so each is read and checked once per process.
        self._inspected: dict[tuple[str, int, int, int, str | None], dict[str, Any]] = {}
        #: Root disks made ahead of their spawn (``prepare``), by guest: the task making the
        #: instance's directory and overlay, and the image file it is made from.
        self._ahead: dict[str, tuple[asyncio.Task[Path], Path]] = {}

    # Connection ---------------------------------------------------------------------------

    async def init_host(self, host: str) -> None:
        self.host = host
        if self._conn is not None:
            return  # already connected (init_host may be called again)
        try:
            self._libvirt = libvirt_host.libvirt_module()
        except ImportError as exc:
            raise HypervisorUnavailable("libvirt-python is not installed") from exc
        try:
            if self.start_daemons:
                await asyncio.to_thread(libvirt_host.ensure_daemons, self.uri)
            self._conn = await asyncio.to_thread(self._libvirt.open, self.uri)
        except (libvirt_host.DaemonError, self._libvirt.libvirtError) as exc:
            raise HypervisorUnavailable(f"libvirt is not usable: {exc}") from exc
        if self.virt_type is None:
            self.virt_type = await asyncio.to_thread(libvirt_host.virt_type)
        self._cgroup_version = await asyncio.to_thread(libvirt_host.cgroup_cpu_version)
        await asyncio.to_thread(self.instances_dir.mkdir, parents=True, exist_ok=True)
        LOG.info("libvirt driver on %s: %s, virt_type=%s (%s)", host, self.uri, self.virt_type,
                 "hardware virtualisation" if self.virt_type == "kvm"
                 else "QEMU TCG emulation: no usable KVM here")

    async def cleanup_host(self) -> None:
        if self.ceph is not None:
            await self.ceph.close()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await asyncio.to_thread(conn.close)

    def _c(self) -> Any:
        if self._conn is None:
            raise HypervisorUnavailable("the libvirt driver is not connected (init_host)")
        return self._conn

    async def _call(self, fn: Any, *args: Any) -> Any:
        """Run a blocking libvirt call in a thread; libvirt errors become VirtError."""
        try:
            return await asyncio.to_thread(fn, *args)
        except self._libvirt.libvirtError as exc:
            raise VirtError(without_secrets(str(exc))) from exc

    def _lookup(self, uuid: str) -> Any:
        try:
            return self._c().lookupByUUIDString(uuid)
        except self._libvirt.libvirtError as exc:
            if exc.get_error_code() == self._libvirt.VIR_ERR_NO_DOMAIN:
                raise GuestNotFound(f"Guest {uuid} not found on {self.host}.") from exc
            raise VirtError(str(exc)) from exc

    async def _domain(self, uuid: str) -> Any:
        return await asyncio.to_thread(self._lookup, uuid)

    def instance_dir(self, uuid: str) -> Path:
        return self.instances_dir / uuid

    async def make_instance_dir(self, uuid: str) -> Path:
        """The instance's directory, made now; a ``VirtError`` when it exists already (a
        guest of that uuid is, or was left, on this host)."""
        directory = self.instance_dir(uuid)
        try:
            await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=False)
        except FileExistsError as exc:
            raise VirtError(f"Instance directory of {uuid} exists already on "
                            f"{self.host}.") from exc
        return directory

    def console_log(self, uuid: str) -> Path:
        return self.instance_dir(uuid) / "console.log"

    # Host ---------------------------------------------------------------------------------

    async def get_available_resource(self) -> HostResources:
        conn = self._c()
        info = await self._call(conn.getInfo)
        version = await self._call(conn.getVersion)
        disk = await asyncio.to_thread(shutil.disk_usage, self.instances_dir)
        await asyncio.to_thread(self._weigh_guests)
        return HostResources(hostname=self.host, vcpus=int(info[2]), memory_mb=int(info[1]),
                             local_gb=max(1, disk.total // _GIB), hypervisor_type="QEMU",
                             hypervisor_version=int(version), cpu_arch=str(info[0]))

    def _ours(self) -> list[str]:
        found = []
        for dom in self._c().listAllDomains(0):
            if not dom.name().startswith(DOMAIN_PREFIX):
                continue
            try:
                meta = dom.metadata(self._libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)
            except self._libvirt.libvirtError:
                continue  # a name like ours, but not a domain we defined
            # libvirt hands the element back without its namespace.
            element = ET.fromstring(meta)
            owner = element.findtext("instances") or element.findtext(
                f"{{{METADATA_NS}}}instances")
            if owner is not None and owner != str(self.instances_dir):
                continue  # another deployment's guest on this machine
            found.append(dom.UUIDString())
        return found

    async def list_guests(self) -> list[str]:
        return list(await self._call(self._ours))

    # Spawn --------------------------------------------------------------------------------

    async def prepare(self, guest: GuestSpec) -> None:
        """The root disk's overlay (and the instance's directory), made now in the
        background: a build's ``qemu-img create`` then runs while the host makes and wires
        the guest's ports, not after. Only a file root disk made from the image is."""
        if (guest.image_path is None or self.images_type == "rbd"
                or root_volume(guest) is not None or guest.uuid in self._ahead):
            return
        self._ahead[guest.uuid] = (asyncio.create_task(self._root_disk_ahead(guest)),
                                   guest.image_path)

    async def _root_disk_ahead(self, guest: GuestSpec) -> Path:
        directory = await self.make_instance_dir(guest.uuid)
        with span("libvirt.root_disk", images_type=self.images_type, ahead=True):
            return await asyncio.to_thread(self._create_overlay, guest, directory)

    async def _taken_ahead(self, guest: GuestSpec, root: dict[str, Any] | None
                           ) -> asyncio.Task[Path] | None:
        """The making of the root disk ``prepare`` started for the guest, when it is the
        disk ``spawn`` needs now; one made for another boot is removed (directory and
        all) and None returned."""
        entry = self._ahead.pop(guest.uuid, None)
        if entry is None:
            return None
        task, image = entry
        if root is None and self.images_type != "rbd" and image == guest.image_path:
            return task
        await _finished(task)
        await asyncio.to_thread(shutil.rmtree, self.instance_dir(guest.uuid), True)
        return None

    async def spawn(self, guest: GuestSpec) -> None:
        await self._spawn(guest)

    async def spawn_when(self, guest: GuestSpec,
                         wired: Callable[[], Awaitable[None]]) -> None:
        """As Nova's libvirt driver: the guest is made and its QEMU started paused while its
        ports are being wired, then resumed once they are, so QEMU's start (most of a
        build's spawn) no longer follows the network-vif-plugged event's way back. QEMU
        opens the l2-agent's taps (``managed='no'``): the paused start waits until they
        exist on this host; when ``wired()`` returns first, or the taps are out of this
        process's sight (another network namespace than libvirtd's), the guest is spawned
        after it as before. Its vCPUs run only after ``wired()`` returned."""
        taps = [str(vif["devname"]) for vif in guest.network_info if vif.get("devname")]
        if not taps or not libvirt_host.in_host_netns():
            await super().spawn_when(guest, wired)
            return
        plugged = asyncio.ensure_future(wired())
        try:
            if not await _taps_appear(taps, plugged):
                await plugged  # its error is the spawn's
                await self._spawn(guest)
                return
            # Paused unless the ports are wired by the time QEMU starts (the disk and the
            # definition may take that long): a resume costs a call of its own. Ports that
            # failed to wire: paused too, and the build's failure removes it.
            paused = await self._spawn(guest, paused=lambda: not _succeeded(plugged))
            await plugged  # failing, the paused guest is left to destroy
            if paused:
                with span("libvirt.resume"):
                    await self._call(self._resume, guest.uuid)
        finally:
            if not plugged.done():
                plugged.cancel()
                await _finished(plugged)

    def _resume(self, uuid: str) -> None:
        self._lookup(uuid).resume()

    async def _spawn(self, guest: GuestSpec, *,
                     paused: Callable[[], bool] = lambda: False) -> bool:
        """Make and start the guest, paused when ``paused()`` says so as QEMU is about to
        start; True if it was."""
        root = root_volume(guest)
        if guest.image_path is None and root is None and guest.image_location is None:
            raise VirtError(f"No image file or root volume for {guest.name}: the libvirt "
                            "driver boots from a local copy of the image or from a volume.")
        try:
            await self._domain(guest.uuid)
        except GuestNotFound:
            pass
        else:
            raise VirtError(f"Guest {guest.uuid} already exists on {self.host}.")
        ahead = await self._taken_ahead(guest, root)
        directory = (self.instance_dir(guest.uuid) if ahead is not None
                     else await self.make_instance_dir(guest.uuid))
        try:
            disk: Path | RbdSource
            rbd_secret = await self._ceph_secret(guest)
            if ahead is not None:  # made by ``prepare``: its failure is the spawn's
                # The spawn's root-disk step is its wait for the disk made ahead: named as
                # the step (its error qemu-img's), so ``stratus why`` names that step, not
                # the spawn it unwound through.
                with span("libvirt.root_disk", images_type=self.images_type, waited=True):
                    disk, disk_format = await ahead, "qcow2"
            else:
                with span("libvirt.root_disk", images_type=self.images_type):
                    disk, disk_format = await self._root_disk(guest, root, directory,
                                                              rbd_secret)
            local: dict[str, Path] = {}
            if guest.local_disks:
                with span("libvirt.local_disks"):
                    local = {d.device: await asyncio.to_thread(create_local_disk, d,
                                                               directory, i)
                             for i, d in enumerate(guest.local_disks)}
            drive = None
            if guest.config_drive is not None:
                with span("libvirt.config_drive"):
                    drive = await self.write_config_drive(guest)
            xml = self.domain_xml(guest, disk, disk_format, local, rbd_secret, drive)
            started_paused = paused()
            await self._call(self._define_and_start, xml, started_paused)
        except BaseException as exc:
            try:
                # Ceph that did not answer would not answer the removal either (another
                # op_timeout to wait): the RBD disk is left to the destroy that follows a
                # failed build, or the server's delete.
                await self._remove(guest.uuid, rbd_disk=not isinstance(exc, CephUnavailable))
            except Exception:  # the spawn's own error is the one to report
                LOG.exception("could not clean up after the failed spawn of %s", guest.uuid)
            raise
        LOG.info("spawned %s (%s) on %s%s", guest.uuid, guest.name, self.host,
                 " (paused until its ports are wired)" if started_paused else "")
        return started_paused

    async def _root_disk(self, guest: GuestSpec, root: dict[str, Any] | None,
                         directory: Path, rbd_secret: str | None
                         ) -> tuple[Path | RbdSource, str]:
        """The guest's root disk (made now unless it is a volume) and its format."""
        if root is not None:  # boot from volume: the volume itself is vda
            if root.get("driver_volume_type") == "rbd":
                return rbd_source(root, rbd_secret), "raw"
            return volume_file(root)
        if self.images_type == "rbd":
            return await self._create_rbd_root(guest), "raw"
        return await asyncio.to_thread(self._create_overlay, guest, directory), "qcow2"

    def domain_xml(self, guest: GuestSpec, disk: Path | RbdSource, disk_format: str = "qcow2",
                   local_disks: dict[str, Path] | None = None,
                   rbd_secret: str | None = None, config_drive: Path | None = None) -> str:
        """The domain of ``guest`` on this host, booting ``disk`` (``local_disks``: the
        files of its ephemeral and swap disks by device; ``rbd_secret``: the libvirt secret
        of this host's Ceph user; ``config_drive``: its config drive's image)."""
        return domain_xml(guest, virt_type=self.virt_type or "qemu",
                          domain_name=DOMAIN_PREFIX + guest.uuid, disk_path=disk,
                          disk_format=disk_format, local_disks=local_disks,
                          console_log=self.console_log(guest.uuid),
                          metadata_ns=METADATA_NS, host=self.host,
                          instances_dir=self.instances_dir, rbd_secret=rbd_secret,
                          config_drive=config_drive,
                          cpu_shares=None if self._cgroup_version is None
                          else cpu_shares(guest.vcpus, self._cgroup_version))

    async def write_config_drive(self, guest: GuestSpec) -> Path | None:
        """The guest's config drive image (``disk.config`` in its directory, made now from
        ``guest.config_drive``); None for a guest without one."""
        if guest.config_drive is None:
            return None
        return await asyncio.to_thread(write_iso, guest.config_drive,
                                       self.instance_dir(guest.uuid) / CONFIG_DRIVE)

    # Ceph ---------------------------------------------------------------------------------

    async def can_clone_image(self, location: str | None, disk_format: str | None) -> bool:
        return (self.images_type == "rbd" and self.ceph is not None
                and await self.ceph.clones(location, disk_format))

    async def _ceph_secret(self, guest: GuestSpec | None = None,
                           connection_info: dict[str, Any] | None = None) -> str | None:
        """The uuid of this host's Ceph secret, (re)defined in libvirt now, when the guest
        (or the volume of ``connection_info``) has a disk in RBD; else None."""
        infos = [connection_info] if connection_info is not None else [
            d.get("connection_info") or {} for d in (guest.block_devices if guest else [])]
        wanted = (any(i.get("driver_volume_type") == "rbd" for i in infos)
                  or (guest is not None and self.images_type == "rbd"))
        if not wanted or self.ceph is None:
            return None
        return await self._define_ceph_secret()

    async def _ceph_secret_of_host(self) -> None:
        """(Re)define the Ceph secret when this host's root disks are in RBD (a guest
        brought back from a move; libvirtd may have restarted since it left)."""
        if self.images_type == "rbd" and self.ceph is not None:
            await self._define_ceph_secret()

    async def _define_ceph_secret(self) -> str:
        assert self.ceph is not None
        require_qemu_rbd()
        uuid, usage, key = await self.ceph.secret()
        await self._call(define_secret, self._c(), self._libvirt, uuid, usage, key)
        return uuid

    async def _create_rbd_root(self, guest: GuestSpec) -> RbdSource:
        """The root disk in RBD: a clone of the image where it lies, else the host's copy
        of it imported."""
        assert self.ceph is not None
        if await self.ceph.exists(guest.uuid):
            # Evacuated from a host that died: the disk the hosts share is the guest's, as
            # it was (Nova's evacuation on shared storage). A rebuild removed it first.
            LOG.info("%s: its RBD disk is there already; the guest boots from it", guest.uuid)
            return await self.ceph.grown(guest.uuid, guest.root_gb)
        if guest.image_location is not None and await self.ceph.clones(
                guest.image_location, guest.image_format):
            return await self.ceph.clone(guest.uuid, guest.image_location, guest.root_gb)
        if guest.image_path is None:
            raise VirtError(f"Image of {guest.name} cannot be cloned in Ceph and has no copy "
                            "on this host.")
        base = guest.image_path.resolve()
        fmt = await asyncio.to_thread(self._checked_base, guest, base)
        return await self.ceph.import_file(guest.uuid, base, fmt, guest.root_gb)

    def _define_and_start(self, xml: str, paused: bool = False) -> None:
        # In a worker thread: asyncio.to_thread carries the context, so these spans are the
        # children of the caller's (compute.spawn).
        with span("libvirt.define"):
            dom = self._c().defineXML(xml)
        try:
            with span("libvirt.start", paused=paused):
                dom.createWithFlags(self._libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)
        except self._libvirt.libvirtError:
            with contextlib.suppress(self._libvirt.libvirtError):
                dom.undefine()
            raise
        self._weigh_guests()

    def _weigh_guests(self) -> None:
        """The guests' partition weighs as the guests in it (``weigh_guest_partition``);
        a host where that cannot be done runs its guests as libvirt placed them."""
        if self._cgroup_version is None:
            return
        try:
            libvirt_host.weigh_guest_partition(self._cgroup_version)
        except OSError as exc:
            LOG.debug("the guests' cgroup partition keeps its weight: %s", exc)

    def _create_overlay(self, guest: GuestSpec, directory: Path) -> Path:
        assert guest.image_path is not None
        base = guest.image_path.resolve()
        fmt = self._checked_base(guest, base)
        virtual = int(self._inspect(base, guest.image_format).get("virtual-size", 0))
        wanted = guest.root_gb * _GIB
        # The overlay's backing file is a hard link in the instance's own directory: the
        # image cache may evict or replace its file, the guest keeps its base all the same.
        backing = directory / "base"
        try:
            os.link(base, backing)
        except OSError:  # another file system: the cache's file it is
            backing = base
        disk = directory / "disk"
        args = ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing), "-F", fmt,
                str(disk)]
        if wanted > virtual:
            args.append(str(wanted))
        _run_tool(args, f"Could not create the disk of {guest.name}")
        return disk

    def _checked_base(self, guest: GuestSpec, base: Path) -> str:
        """The format of the image file ``base`` once it is known to be bootable as the
        guest's root disk: what it says it is, without a backing file, intact, no larger
        than the flavor's root disk."""
        info = self._inspect(base, guest.image_format)
        fmt = str(info.get("format", ""))
        if guest.image_format and guest.image_format != fmt:
            raise VirtError(f"Image of {guest.name} is said to be {guest.image_format} but its "
                            f"data is {fmt or 'unreadable'}.")
        if fmt not in ("qcow2", "raw"):
            raise VirtError(f"Image format {fmt!r} cannot be booted here (qcow2 or raw).")
        if info.get("backing-filename") or info.get("full-backing-filename"):
            raise VirtError(f"Image of {guest.name} refers to a backing file; refused.")
        # QEMU would still run it, read-only under the overlay, and the guest would never
        # boot: say so now, as the build's fault.
        if ((info.get("format-specific") or {}).get("data") or {}).get("corrupt"):
            raise VirtError(f"Image of {guest.name} is marked corrupt in its qcow2 header; "
                            "it cannot be booted.")
        virtual = int(info.get("virtual-size", 0))
        wanted = guest.root_gb * _GIB
        if wanted and wanted < virtual:
            raise VirtError(f"The flavor's root disk ({guest.root_gb} GB) is smaller than the "
                            f"image ({virtual / _GIB:.1f} GB).")
        return fmt

    def _inspect(self, base: Path, declared: str | None) -> dict[str, Any]:
        try:
            st = base.stat()
        except FileNotFoundError as exc:
            raise VirtError(f"Image file {base.name} is missing on this host.") from exc
        key = (str(base), st.st_ino, st.st_size, st.st_mtime_ns, declared)
        info = self._inspected.get(key)
        if info is None:
            info = _qemu_img_info(base, declared)
            self._inspected[key] = info
        return info

    # Destroy ------------------------------------------------------------------------------

    async def destroy(self, uuid: str, *, keep_shared_disk: bool = False) -> None:
        await self._remove(uuid, rbd_disk=not keep_shared_disk)

    async def _remove(self, uuid: str, *, rbd_disk: bool = True) -> None:
        ahead = self._ahead.pop(uuid, None)
        if ahead is not None:  # a build that failed before its spawn: its disk goes too
            await _finished(ahead[0])
        await self._call(self._undefine, uuid)
        directory = self.instance_dir(uuid)
        await asyncio.to_thread(shutil.rmtree, directory, True)
        if rbd_disk and self.images_type == "rbd":
            assert self.ceph is not None
            await self.ceph.remove(uuid)

    def _undefine(self, uuid: str) -> None:
        libvirt = self._libvirt
        try:
            dom = self._lookup(uuid)
        except GuestNotFound:
            return
        try:
            if dom.isActive():
                dom.destroy()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_OPERATION_INVALID,
                                            libvirt.VIR_ERR_NO_DOMAIN):
                raise
        try:
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                              | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                              | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise

    # Power --------------------------------------------------------------------------------

    async def _state(self, dom: Any) -> int:
        state, _reason = await self._call(dom.state)
        return int(state)

    async def _shutdown(self, dom: Any, grace_period: float) -> bool:
        """ACPI power-off; True if the guest went off by itself within the grace period,
        False if it had to be destroyed (plug pulled)."""
        libvirt = self._libvirt
        if await self._state(dom) == libvirt.VIR_DOMAIN_SHUTOFF:
            return True
        if grace_period > 0:
            deadline = time.monotonic() + grace_period
            with contextlib.suppress(VirtError):
                await self._call(dom.shutdown)
            while time.monotonic() < deadline:
                if await self._state(dom) == libvirt.VIR_DOMAIN_SHUTOFF:
                    return True
                await asyncio.sleep(0.2)
        with contextlib.suppress(VirtError):
            await self._call(dom.destroy)
        return False

    async def power_off(self, uuid: str, grace_period: float | None = None) -> None:
        if grace_period is None:
            grace_period = self.shutdown_timeout
        dom = await self._domain(uuid)
        clean = await self._shutdown(dom, grace_period)
        if not clean and grace_period > 0:
            LOG.info("guest %s did not power off within %.0f s: pulled the plug", uuid,
                     grace_period)
        if await self._state(dom) != self._libvirt.VIR_DOMAIN_SHUTOFF:
            raise VirtError(f"Guest {uuid} could not be powered off.")

    async def power_on(self, uuid: str) -> None:
        dom = await self._domain(uuid)
        if await self._state(dom) in (self._libvirt.VIR_DOMAIN_SHUTOFF,
                                      self._libvirt.VIR_DOMAIN_CRASHED):
            await self._call(dom.create)
            await asyncio.to_thread(self._weigh_guests)

    async def reboot(self, uuid: str, *, hard: bool) -> None:
        """Hard: pull the plug and start again. Soft: ACPI power-off within
        ``shutdown_timeout``, then start; a guest that ignores it is rebooted hard."""
        dom = await self._domain(uuid)
        if not hard and await self._shutdown(dom, self.shutdown_timeout):
            await self._call(dom.create)
            return
        if await self._state(dom) != self._libvirt.VIR_DOMAIN_SHUTOFF:
            await self._call(dom.destroy)
        if await self._call(dom.hasManagedSaveImage, 0):
            # A hard reboot of a suspended guest boots it afresh, as Nova's does: the saved
            # memory goes, or ``create`` would restore it.
            await self._call(dom.managedSaveRemove, 0)
        await self._call(dom.create)

    # Info ---------------------------------------------------------------------------------

    async def get_info(self, uuid: str) -> GuestInfo:
        dom = await self._domain(uuid)
        state, _max_mem, mem_kib, vcpus, _cpu_time = await self._call(dom.info)
        power = _power_state(self._libvirt, int(state))
        # A domain saved by ``suspend`` is off with its memory on disk: suspended.
        if power == PowerState.SHUTDOWN and await self._call(dom.hasManagedSaveImage, 0):
            power = PowerState.SUSPENDED
        return GuestInfo(power_state=power, vcpus=int(vcpus), memory_mb=int(mem_kib) // 1024)

    async def get_console_output(self, uuid: str) -> str:
        await self._domain(uuid)
        return await asyncio.to_thread(_tail, self.console_log(uuid), MAX_CONSOLE_BYTES)

    async def get_console(self, uuid: str, kind: ConsoleKind) -> ConsoleEndpoint:
        dom = await self._domain(uuid)
        if not await self._call(dom.isActive):
            raise ConsoleUnavailable(f"Instance {uuid} is not ready.")
        return console_endpoint(await self._call(dom.XMLDesc, 0), kind, uuid)

    # Snapshot -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _held_still(self, uuid: str) -> AsyncIterator[None]:
        """The guest's vCPUs stopped for the body (a consistent disk), then running again
        if they were."""
        dom = await self._domain(uuid)
        paused_here = False
        if await self._state(dom) in (self._libvirt.VIR_DOMAIN_RUNNING,
                                      self._libvirt.VIR_DOMAIN_BLOCKED):
            await self._call(dom.suspend)
            paused_here = True
        try:
            yield
        finally:
            if paused_here:
                await self._call(dom.resume)

    async def direct_snapshot(self, uuid: str, image_id: str) -> StoredSnapshot | None:
        """RBD root disks cloned from the image store's pool (so the store is ``rbd`` in
        this cluster): an RBD snapshot taken while the guest is paused for an instant,
        cloned into the store's pool as the image and flattened, the disk's snapshot
        removed again, as Nova's direct snapshot."""
        if self.images_type != "rbd" or self.ceph is None:
            return None
        await self._domain(uuid)
        if not await self.ceph.exists(uuid):  # booted from a volume: ``snapshot`` says so
            return None
        pool = await self.ceph.image_pool(uuid)
        if pool is None:
            return None
        snapshot = f"snapshot-{secrets.token_hex(4)}"
        async with self._held_still(uuid):
            await self.ceph.create_snapshot(uuid, snapshot)
        try:
            location = await self.ceph.flat_clone(uuid, snapshot, pool, image_id)
            return StoredSnapshot(location=location, disk_format="raw")  # RBD disks are raw
        finally:
            await self.ceph.remove_snapshot(uuid, snapshot)

    async def remove_direct_snapshot(self, location: str) -> None:
        if self.ceph is not None:
            await self.ceph.remove_image(location)

    async def snapshot(self, uuid: str) -> DiskSnapshot:
        if self.images_type == "rbd":
            return await self._rbd_snapshot_file(uuid)
        await self._domain(uuid)
        disk = self.instance_dir(uuid) / "disk"
        if not await asyncio.to_thread(disk.is_file):
            raise VirtError(f"Guest {uuid} boots from a volume: it has no local disk to "
                            "snapshot.")
        scratch = self.instances_dir / "snapshots"
        await asyncio.to_thread(scratch.mkdir, exist_ok=True)
        target = scratch / f"{uuid}-{secrets.token_hex(4)}.qcow2"
        async with self._held_still(uuid):  # the overlay is copied whole, the guest paused
            try:
                await asyncio.to_thread(
                    _run_tool, ["qemu-img", "convert", "-U", "-O", "qcow2", str(disk),
                                str(target)], f"Could not copy the disk of {uuid}", None)
            except BaseException:
                await asyncio.to_thread(target.unlink, True)
                raise
        return DiskSnapshot(path=target, disk_format="qcow2")

    async def _rbd_snapshot_file(self, uuid: str) -> DiskSnapshot:
        """An RBD root disk copied out of an RBD snapshot (the guest paused only while it is
        taken) into a qcow2 file, for an image store outside this cluster."""
        assert self.ceph is not None
        await self._domain(uuid)
        if not await self.ceph.exists(uuid):
            raise VirtError(f"Guest {uuid} boots from a volume: it has no local disk to "
                            "snapshot.")
        scratch = self.instances_dir / "snapshots"
        await asyncio.to_thread(scratch.mkdir, exist_ok=True)
        target = scratch / f"{uuid}-{secrets.token_hex(4)}.qcow2"
        snapshot = f"snapshot-{secrets.token_hex(4)}"
        async with self._held_still(uuid):
            await self.ceph.create_snapshot(uuid, snapshot)
        try:
            await asyncio.to_thread(
                _run_tool, ["qemu-img", "convert", "-f", "raw", "-O", "qcow2",
                            self.ceph.snapshot_target(uuid, snapshot), str(target)],
                f"Could not copy the disk of {uuid}", None)
        except BaseException:
            await asyncio.to_thread(target.unlink, True)
            raise
        finally:
            await self.ceph.remove_snapshot(uuid, snapshot)
        return DiskSnapshot(path=target, disk_format="qcow2")

    # Pause, suspend, rescue, NMI, password -----------------------------------------------

    async def pause(self, uuid: str) -> None:
        """virDomainSuspend: the vCPUs stop, memory stays (libvirt's ``paused``)."""
        dom = await self._domain(uuid)
        await self._call(dom.suspend)

    async def unpause(self, uuid: str) -> None:
        dom = await self._domain(uuid)
        await self._call(dom.resume)

    async def suspend(self, uuid: str) -> None:
        """A managed save: memory to a file libvirt keeps, the domain off; the next start
        restores it where it was."""
        dom = await self._domain(uuid)
        await self._call(dom.managedSave, 0)

    async def resume(self, uuid: str) -> None:
        dom = await self._domain(uuid)
        if not await self._call(dom.hasManagedSaveImage, 0):
            raise VirtError(f"Guest {uuid} has no saved state to resume from.")
        await self._call(dom.create)

    def rescue_disk(self, uuid: str) -> Path:
        return self.instance_dir(uuid) / "disk.rescue"

    def _unrescue_xml(self, uuid: str) -> Path:
        return self.instance_dir(uuid) / "unrescue.xml"

    async def rescue(self, uuid: str, rescue: RescueSpec) -> None:
        """Nova's libvirt rescue: a fresh overlay of the rescue image (``disk.rescue``) boots
        as ``vda``; the guest's own disk comes second. The domain as it was is kept in
        ``unrescue.xml`` for ``unrescue``.

        ``rescue.admin_password`` reaches the guest as Nova's libvirt driver gives it: on a
        config drive of the rescue's own (``disk.config.rescue``, ``admin_pass`` in its
        ``meta_data.json``) when ``rescue.config_drive`` is given (the guest has a config
        drive), attached instead of the guest's. Without one it reaches no guest: the
        metadata service serves no ``admin_pass`` (nor does Nova's), and Stratus does not
        write it into the rescue disk (Nova's ``inject_password``, off by default). It is
        never logged, and written nowhere but that drive (mode 0600, removed by
        ``unrescue`` and with the guest)."""
        if rescue.image_path is None:
            raise VirtError("The libvirt driver rescues from a local copy of an image.")
        dom = await self._domain(uuid)
        saved = self._unrescue_xml(uuid)
        original = (await asyncio.to_thread(saved.read_text) if saved.exists() else
                    await self._call(dom.XMLDesc, self._libvirt.VIR_DOMAIN_XML_INACTIVE))
        disk = await asyncio.to_thread(self._create_rescue_disk, uuid, rescue)
        drive = None
        if rescue.config_drive is not None:
            try:
                drive = await asyncio.to_thread(
                    write_iso, rescue.config_drive,
                    self.instance_dir(uuid) / RESCUE_CONFIG_DRIVE)
            except BaseException:
                await asyncio.to_thread(self._drop_rescue_files, uuid, saved.exists())
                raise
        xml = rescue_domain_xml(original, disk, METADATA_NS, drive)
        await asyncio.to_thread(saved.write_text, original)
        try:
            await self._call(self._redefine_and_start, uuid, xml)
        except BaseException:
            # Back as it was: the guest's own domain, its own disk.
            with contextlib.suppress(Exception):
                await self._call(self._redefine_and_start, uuid, original)
                await asyncio.to_thread(self._drop_rescue_files, uuid)
            raise
        LOG.info("rescued %s on %s from %s", uuid, self.host, rescue.image_path.name)

    async def unrescue(self, uuid: str) -> None:
        saved = self._unrescue_xml(uuid)
        if not saved.exists():
            raise VirtError(f"Guest {uuid} is not in rescue mode.")
        original = await asyncio.to_thread(saved.read_text)
        await self._call(self._redefine_and_start, uuid, original)
        await asyncio.to_thread(self._drop_rescue_files, uuid)

    def _create_rescue_disk(self, uuid: str, rescue: RescueSpec) -> Path:
        assert rescue.image_path is not None
        base = rescue.image_path.resolve()
        fmt = str(self._inspect(base, rescue.image_format).get("format", ""))
        if fmt not in ("qcow2", "raw"):
            raise VirtError(f"Rescue image format {fmt!r} cannot be booted here.")
        directory = self.instance_dir(uuid)
        backing = directory / "rescue-base"
        disk = self.rescue_disk(uuid)
        for stale in (backing, disk):
            stale.unlink(missing_ok=True)
        try:
            os.link(base, backing)
        except OSError:
            backing = base
        _run_tool(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing), "-F", fmt,
                   str(disk)], f"Could not create the rescue disk of {uuid}")
        return disk

    def _drop_rescue_files(self, uuid: str, keep_saved: bool = False) -> None:
        """The rescue's files gone (``keep_saved``: but ``unrescue.xml``, the guest's own
        domain while it is still rescued)."""
        directory = self.instance_dir(uuid)
        for name in ("disk.rescue", "rescue-base", RESCUE_CONFIG_DRIVE,
                     *(() if keep_saved else ("unrescue.xml",))):
            (directory / name).unlink(missing_ok=True)

    def _redefine_and_start(self, uuid: str, xml: str) -> None:
        dom = self._lookup(uuid)
        if dom.isActive():
            dom.destroy()
        self._c().defineXML(xml)
        self._lookup(uuid).create()
        self._weigh_guests()

    async def trigger_crash_dump(self, uuid: str) -> None:
        dom = await self._domain(uuid)
        await self._call(dom.injectNMI, 0)

    async def set_admin_password(self, uuid: str, password: str) -> None:
        """Through the QEMU guest agent, as Nova does; a guest without its channel cannot
        take a password (Nova's 409 "QEMU guest agent is not enabled")."""
        dom = await self._domain(uuid)
        current = ET.fromstring(await self._call(dom.XMLDesc, 0))
        channels = {t.get("name") for t in current.iterfind("./devices/channel/target")}
        if GUEST_AGENT_CHANNEL not in channels:
            raise AgentNotEnabled("QEMU guest agent is not enabled")
        try:
            await asyncio.to_thread(dom.setUserPassword, "root", password, 0)
        except self._libvirt.libvirtError as exc:
            # libvirt's message never holds the password; say only that it failed.
            raise VirtError(f"The guest agent could not set the password: "
                            f"{exc.get_error_message()}") from exc

    # Volumes ------------------------------------------------------------------------------

    async def attach_volume(self, uuid: str, connection_info: dict[str, Any],
                            mountpoint: str) -> None:
        dom = await self._domain(uuid)
        xml = volume_xml(connection_info, mountpoint,
                         await self._ceph_secret(connection_info=connection_info))
        await self._call(dom.attachDeviceFlags, xml, await self._device_flags(dom))

    async def detach_volume(self, uuid: str, connection_info: dict[str, Any],
                            mountpoint: str) -> None:
        try:
            dom = await self._domain(uuid)
        except GuestNotFound:
            return
        target = mountpoint.rsplit("/", 1)[-1]
        current = ET.fromstring(await self._call(dom.XMLDesc, 0))
        for disk in current.iterfind("./devices/disk"):
            node = disk.find("target")
            if node is not None and node.get("dev") == target:
                await self._call(dom.detachDeviceFlags, ET.tostring(disk, encoding="unicode"),
                                 await self._device_flags(dom))
                return

    # Interfaces ---------------------------------------------------------------------------

    async def attach_interface(self, uuid: str, vif: dict[str, Any]) -> None:
        dom = await self._domain(uuid)
        xml = interface_xml(vif, uuid)
        await self._call(dom.attachDeviceFlags, xml, await self._device_flags(dom))

    async def detach_interface(self, uuid: str, vif: dict[str, Any]) -> None:
        try:
            dom = await self._domain(uuid)
        except GuestNotFound:
            return
        mac = str(vif.get("address", "")).lower()
        current = ET.fromstring(await self._call(dom.XMLDesc, 0))
        for iface in current.iterfind("./devices/interface"):
            node = iface.find("mac")
            if node is not None and (node.get("address") or "").lower() == mac:
                await self._call(dom.detachDeviceFlags, ET.tostring(iface, encoding="unicode"),
                                 await self._device_flags(dom))
                return

    async def _device_flags(self, dom: Any) -> int:
        libvirt = self._libvirt
        flags = int(libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        if await self._call(dom.isActive):
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        return flags


    # Moves (see stratus.compute.virt.libvirt.moves) ----------------------------------------

    async def migrate_disk_and_power_off(self, uuid: str, dest_host: str) -> dict[str, Any]:
        return await moves.migrate_disk_and_power_off(self, uuid, dest_host)

    async def finish_migration(self, guest: GuestSpec, disk_info: dict[str, Any], *,
                               power_on: bool) -> None:
        await moves.finish_migration(self, guest, disk_info, power_on=power_on)

    async def confirm_migration(self, uuid: str) -> None:
        await moves.confirm_migration(self, uuid)

    async def finish_revert_migration(self, uuid: str, *, power_on: bool) -> None:
        await moves.finish_revert_migration(self, uuid, power_on=power_on)

    async def live_migration_source_data(self, uuid: str) -> dict[str, Any]:
        return await moves.live_migration_source_data(self, uuid)

    async def pre_live_migration(self, guest: GuestSpec,
                                 source_data: dict[str, Any]) -> dict[str, Any]:
        return await moves.pre_live_migration(self, guest, source_data)

    async def live_migration(self, uuid: str, dest_host: str, migrate_data: dict[str, Any],
                             on_progress: ProgressCallback | None = None) -> None:
        await moves.live_migration(self, uuid, dest_host, migrate_data, on_progress,
                                   metadata_ns=METADATA_NS)

    async def post_live_migration_at_destination(self, uuid: str) -> None:
        await moves.post_live_migration_at_destination(self, uuid)

    async def rollback_live_migration_at_destination(self, uuid: str) -> None:
        await moves.rollback_live_migration_at_destination(self, uuid)

    async def live_migration_abort(self, uuid: str) -> None:
        await moves.live_migration_abort(self, uuid)

    async def live_migration_force_complete(self, uuid: str) -> None:
        await moves.live_migration_force_complete(self, uuid)


#: A QEMU that fails to start shows its command line in libvirt's error, with the RBD
#: disks' keys as ``secret`` objects (encrypted with the guest's master key, but secret
#: material all the same).
_SECRET_DATA = re.compile(r'("data":\s*")[^"]*(")')


def without_secrets(message: str) -> str:
    """A libvirt error as a fault or a log line may show it."""
    return _SECRET_DATA.sub(r"\1<hidden>\2", message)


def _qemu_img_info(path: Path, declared: str | None) -> dict[str, Any]:
    """What qemu-img reads in the image (read as ``declared`` when the image service says)."""
    if not path.is_file():
        raise VirtError(f"Image file {path.name} is missing on this host.")
    args = ["qemu-img", "info", "--output=json"]
    if declared in ("qcow2", "raw"):
        args += ["-f", declared]
    out = _run_tool([*args, str(path)], "The image is not a usable disk image")
    try:
        info: dict[str, Any] = json.loads(out)
    except ValueError as exc:
        raise VirtError("qemu-img gave no readable description of the image.") from exc
    if declared == "qcow2":
        # A readable header is not enough: the tables must hold together too.
        check = subprocess.run(["qemu-img", "check", "-q", "-f", "qcow2", str(path)],
                               capture_output=True, text=True, check=False, timeout=120)
        if check.returncode not in (0, 3):  # 3: leaked clusters only, harmless
            raise VirtError("The image is a damaged qcow2 file: "
                            f"{check.stderr.strip()[-200:] or 'qemu-img check failed'}")
    return info


def _tail(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - limit))
            data = handle.read()
    except FileNotFoundError:
        return ""
    return data.decode("utf-8", errors="replace")
