"""The libvirt driver on the machine's real libvirtd and QEMU, booting the project's test guest.

One guest at a time, under TCG here (KVM where the machine has it); each test cleans up after
itself and checks that nothing (domain, overlay, console log, directory) is left.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratus.compute.virt.driver import (
    GuestNotFound,
    GuestSpec,
    LocalDisk,
    PowerState,
    VirtError,
)
from stratus.compute.virt.libvirt import LibvirtDriver
from stratus.compute.virt.libvirt import host as libvirt_host
from stratus.network.agents import linux
from tests.realvm import guest_image, libvirt_ready, wait_console

pytestmark = [pytest.mark.realvm, pytest.mark.serial]


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[LibvirtDriver]:
    libvirt_ready()
    instance = LibvirtDriver(tmp_path / "instances")
    await instance.init_host("realvm-host")
    made: list[str] = []
    instance.made = made  # type: ignore[attr-defined]
    try:
        yield instance
    finally:
        for uuid_ in made:
            await instance.destroy(uuid_)
        await instance.cleanup_host()


def spec(driver: LibvirtDriver, image: Path, **kwargs: object) -> GuestSpec:
    guest = GuestSpec(**{"uuid": str(uuid.uuid4()), "name": "realvm-guest", "vcpus": 1,
                         "memory_mb": 256, "root_gb": 1, "image_path": image,
                         "image_format": "qcow2", **kwargs})  # type: ignore[arg-type]
    driver.made.append(guest.uuid)  # type: ignore[attr-defined]
    return guest


def domain_names() -> set[str]:
    libvirt = libvirt_host.libvirt_module()
    conn = libvirt.open(libvirt_host.DEFAULT_URI)
    try:
        return {d.name() for d in conn.listAllDomains(0)}
    finally:
        conn.close()


async def test_guest_life_cycle_and_adoption_by_a_new_driver(driver: LibvirtDriver,
                                                              tmp_path: Path) -> None:
    image = guest_image()
    guest = spec(driver, image)
    await driver.spawn(guest)
    directory = driver.instance_dir(guest.uuid)
    assert (directory / "disk").is_file() and (directory / "console.log").exists()

    def console() -> asyncio.Future[str]:
        return asyncio.ensure_future(driver.get_console_output(guest.uuid))

    text = await wait_console(console, r"^STRATUS-READY")
    # SMBIOS as cloud-init's OpenStack data source expects it, serial = the instance.
    assert 'STRATUS-INIT uptime=' in text
    assert f'product="OpenStack Nova" serial={guest.uuid}' in text
    assert f"uuid={guest.uuid}" in text
    assert "STRATUS-NET none" in text  # no NIC: no QEMU user networking sneaked in
    assert "STRATUS-DISK name=vda size=1073741824" in text  # the overlay, grown to root_gb
    info = await driver.get_info(guest.uuid)
    assert (info.power_state, info.vcpus, info.memory_mb) == (PowerState.RUNNING, 1, 256)

    # The disk is an overlay on the cached base image (hard-linked into the instance's
    # directory, so evicting it from the cache cannot pull it from under the guest).
    assert (directory / "base").stat().st_ino == image.stat().st_ino
    backing = await asyncio.create_subprocess_exec(
        "qemu-img", "info", "-U", "--output=json", str(directory / "disk"),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await backing.communicate()
    assert json.loads(out)["backing-filename"] == str(directory / "base")

    # The agent restarts: a new driver finds the running domain and drives it.
    adopted = LibvirtDriver(driver.instances_dir)
    await adopted.init_host("realvm-host")
    try:
        assert guest.uuid in await adopted.list_guests()
        assert (await adopted.get_info(guest.uuid)).power_state == PowerState.RUNNING
        assert "STRATUS-READY" in await adopted.get_console_output(guest.uuid)

        # Soft power off: the guest sees the ACPI power button and powers itself off.
        await adopted.power_off(guest.uuid, grace_period=30)
        assert (await adopted.get_info(guest.uuid)).power_state == PowerState.SHUTDOWN
        assert "STRATUS-POWEROFF" in await adopted.get_console_output(guest.uuid)
    finally:
        await adopted.cleanup_host()

    await driver.power_on(guest.uuid)
    assert (await driver.get_info(guest.uuid)).power_state == PowerState.RUNNING
    await wait_console(console, r"^STRATUS-READY", count=2)  # the log is appended to

    # A volume attached live appears in the guest as a hot-plugged virtio disk.
    volume = tmp_path / "volume.raw"
    volume.write_bytes(b"\0" * (8 * 1024 * 1024))
    connection = {"driver_volume_type": "file", "data": {"path": str(volume)}}
    await driver.attach_volume(guest.uuid, connection, "/dev/vdb")
    await wait_console(console, r"^STRATUS-DISK-ADDED name=vdb size=8388608")
    await driver.detach_volume(guest.uuid, connection, "/dev/vdb")
    await wait_console(console, r"^STRATUS-DISK-REMOVED name=vdb")

    await driver.reboot(guest.uuid, hard=True)
    assert (await driver.get_info(guest.uuid)).power_state == PowerState.RUNNING
    await wait_console(console, r"^STRATUS-READY", count=3)

    # Soft: the guest powers itself off on ACPI, and is started again.
    await driver.reboot(guest.uuid, hard=False)
    assert (await driver.get_info(guest.uuid)).power_state == PowerState.RUNNING
    text = await wait_console(console, r"^STRATUS-INIT", count=4)
    assert text.count("STRATUS-POWEROFF") == 2

    # No grace: the plug is pulled at once.
    await driver.power_off(guest.uuid, grace_period=0)
    assert (await driver.get_info(guest.uuid)).power_state == PowerState.SHUTDOWN

    await driver.destroy(guest.uuid)
    assert guest.uuid not in await driver.list_guests()
    assert f"instance-{guest.uuid}" not in domain_names()
    assert not directory.exists()
    with pytest.raises(GuestNotFound):
        await driver.get_info(guest.uuid)
    await driver.destroy(guest.uuid)  # idempotent


async def test_domain_definition(driver: LibvirtDriver, tmp_path: Path) -> None:
    """What libvirt holds for a guest: our marker, sysinfo, disks (the overlay, then the
    ephemeral and swap files), console log, root DAC; a NIC hot-plugged on a tap and
    unplugged again."""
    guest = spec(driver, guest_image(), vcpus=2, memory_mb=192, local_disks=[
        LocalDisk(kind="ephemeral", device="/dev/vdb", size_mb=64),
        LocalDisk(kind="swap", device="/dev/vdc", size_mb=32, guest_format="swap")])
    await driver.spawn(guest)
    # Another deployment on the same machine (its own instances directory) does not own it.
    other = LibvirtDriver(tmp_path / "other-instances")
    await other.init_host("other-host")
    try:
        assert guest.uuid not in await other.list_guests()
        assert guest.uuid in await driver.list_guests()
    finally:
        await other.cleanup_host()
    libvirt = libvirt_host.libvirt_module()
    conn = libvirt.open(libvirt_host.DEFAULT_URI)
    try:
        live = conn.lookupByUUIDString(guest.uuid)
        dom = ET.fromstring(live.XMLDesc(0))
        shares = live.schedulerParameters()["cpu_shares"]
    finally:
        conn.close()
    # Two vCPUs and the emulator weigh as three host tasks, and so much at least weighs
    # the partition libvirt puts guests in (other tests' guests may add to it).
    version = libvirt_host.cgroup_cpu_version()
    assert shares == 3 * libvirt_host.CPU_TASK_WEIGHT[version]
    weight = libvirt_host.guest_partition(version) / libvirt_host.cpu_weight_file(version)
    assert not weight.exists() or int(weight.read_text()) >= shares  # set by the spawn
    assert dom.get("type") == driver.virt_type == ("kvm" if libvirt_host.kvm_usable()
                                                   else "qemu")
    assert dom.findtext("name") == f"instance-{guest.uuid}"
    assert dom.findtext("vcpu") == "2"
    assert dom.find("memory") is not None and dom.findtext("memory") == str(192 * 1024)
    entries = {e.get("name"): e.text for e in dom.iterfind("./sysinfo/system/entry")}
    assert entries["product"] == "OpenStack Nova"
    assert entries["serial"] == guest.uuid
    assert entries["manufacturer"]
    assert dom.find("./devices/interface") is None
    log = dom.find("./devices/serial/log")
    assert log is not None and log.get("file") == str(driver.console_log(guest.uuid))
    directory = driver.instance_dir(guest.uuid)
    assert [(d.find("target").get("dev"), d.find("source").get("file"))  # type: ignore[union-attr]
            for d in dom.iterfind("./devices/disk")] == [
        ("vda", str(directory / "disk")), ("vdb", str(directory / "disk.eph0")),
        ("vdc", str(directory / "disk.swap"))]
    await _hot_plug_a_nic(driver, guest.uuid)
    await driver.destroy(guest.uuid)
    assert not directory.exists()


def _live_interfaces(uuid_: str) -> list[tuple[str | None, str | None]]:
    libvirt = libvirt_host.libvirt_module()
    conn = libvirt.open(libvirt_host.DEFAULT_URI)
    try:
        dom = ET.fromstring(conn.lookupByUUIDString(uuid_).XMLDesc(0))
    finally:
        conn.close()
    return [(i.find("mac").get("address"), i.find("target").get("dev"))  # type: ignore[union-attr]
            for i in dom.iterfind("./devices/interface")]


async def _hot_plug_a_nic(driver: LibvirtDriver, uuid_: str) -> None:
    """A tap in a bridge, as the l2-agent makes them (names unique to this test)."""
    # A guest still booting ignores the unplug request: hot-plug into a booted one.
    await wait_console(lambda: driver.get_console_output(uuid_), r"^STRATUS-READY")
    suffix = uuid.uuid4().hex[:6]
    bridge, tap = f"brqbd{suffix}", f"tapbd{suffix}"
    # pyroute2's synchronous IPRoute runs its own loop: off this one, in a thread.
    await asyncio.to_thread(linux.ensure_bridge, bridge)
    try:
        await asyncio.to_thread(linux.ensure_tap, tap, bridge, 1500)
        vif = {"id": "p-hotplug", "address": "fa:16:3e:bd:00:01", "devname": tap,
               "bridge": bridge, "type": "bridge", "mtu": 1500}
        await driver.attach_interface(uuid_, vif)
        assert _live_interfaces(uuid_) == [("fa:16:3e:bd:00:01", tap)]
        await driver.detach_interface(uuid_, vif)
        for _ in range(100):  # the guest acknowledges the unplug (ACPI) in its own time
            if not _live_interfaces(uuid_):
                break
            await asyncio.sleep(0.2)
        assert _live_interfaces(uuid_) == []
    finally:
        await asyncio.to_thread(linux.delete_link, tap)
        await asyncio.to_thread(linux.delete_link, bridge)


async def test_started_paused_while_its_ports_are_wired(driver: LibvirtDriver) -> None:
    """``spawn_when``: once the guest's tap exists, QEMU starts paused (the guest's code does
    not run: nothing on its console) and the guest runs once its ports are wired."""
    suffix = uuid.uuid4().hex[:6]
    bridge, tap = f"brqpw{suffix}", f"tappw{suffix}"
    await asyncio.to_thread(linux.ensure_bridge, bridge)
    try:
        await asyncio.to_thread(linux.ensure_tap, tap, bridge, 1500)
        guest = spec(driver, guest_image(), network_info=[{
            "id": "p-paused", "address": "fa:16:3e:70:00:01", "devname": tap,
            "bridge": bridge, "type": "bridge", "mtu": 1500}])
        while_wiring: list[tuple[PowerState, str]] = []

        async def wired() -> None:
            for _ in range(600):  # the spawn makes the disk and starts QEMU meanwhile
                if guest.uuid in await driver.list_guests():
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # a guest let run would print by now
            while_wiring.append(((await driver.get_info(guest.uuid)).power_state,
                                 await driver.get_console_output(guest.uuid)))

        await driver.spawn_when(guest, wired)
        assert while_wiring == [(PowerState.PAUSED, "")]
        assert (await driver.get_info(guest.uuid)).power_state == PowerState.RUNNING
        await wait_console(lambda: driver.get_console_output(guest.uuid), r"^STRATUS-INIT")
    finally:
        await asyncio.to_thread(linux.delete_link, tap)
        await asyncio.to_thread(linux.delete_link, bridge)


async def test_corrupt_image_fails_cleanly(driver: LibvirtDriver, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.qcow2"
    garbage.write_bytes(b"QFI\xfb" + bytes(range(256)) * 64)
    raw = tmp_path / "plain.raw"
    raw.write_bytes(b"\0" * 65536)
    tried: list[str] = []
    for image, fmt, words in ((garbage, "qcow2", "not a usable disk image"),
                              (raw, "qcow2", "not a usable disk image"),
                              (tmp_path / "missing", "qcow2", "missing")):
        guest = spec(driver, image, image_format=fmt)
        tried.append(f"instance-{guest.uuid}")
        with pytest.raises(VirtError, match=words):
            await driver.spawn(guest)
        assert not driver.instance_dir(guest.uuid).exists()
        assert guest.uuid not in await driver.list_guests()
    # No domain of theirs is left defined (other tests' guests may come and go meanwhile).
    assert not domain_names() & set(tried)


async def test_spawn_without_image_file_or_twice(driver: LibvirtDriver) -> None:
    with pytest.raises(VirtError, match="No image file"):
        await driver.spawn(GuestSpec(uuid=str(uuid.uuid4()), name="x", vcpus=1,
                                     memory_mb=128, root_gb=1))
    guest = spec(driver, guest_image())
    await driver.spawn(guest)
    with pytest.raises(VirtError, match="already exists"):
        await driver.spawn(guest)
    # The failed second spawn did not remove the first guest's files.
    assert (driver.instance_dir(guest.uuid) / "disk").is_file()
    assert (await driver.get_info(guest.uuid)).power_state == PowerState.RUNNING


@pytest.mark.exclusive  # kills the machine's virtlogd: no guest beside it could start
def test_a_dead_virtlogd_is_started_again_while_libvirtd_answers(tmp_path: Path) -> None:
    """libvirtd answering is not enough: without virtlogd no guest can start (stale socket)."""
    import os
    import signal
    import subprocess

    libvirt_ready()
    assert libvirt_host._virtlogd_answers()
    pids = subprocess.run(["pgrep", "-x", "virtlogd"], capture_output=True, text=True,
                          check=False).stdout.split()
    assert pids, "virtlogd is not a process of its own here"
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)
    deadline = 50
    while libvirt_host._virtlogd_answers() and deadline:
        deadline -= 1
        subprocess.run(["sleep", "0.1"], check=False)
    assert not libvirt_host._virtlogd_answers()

    libvirt_host.ensure_daemons()

    assert libvirt_host._virtlogd_answers()
    # Its pid file is the machine's, not the caller's: the daemon outlives every test.
    pid = int((libvirt_host.DAEMON_DIR / "virtlogd.pid").read_text().strip())
    os.kill(pid, 0)


@pytest.mark.exclusive  # the machine's libvirtd's cache, which no test beside it may touch
def test_libvirt_keeps_its_probe_of_qemu_between_calls() -> None:
    """libvirt caches what QEMU can do and must trust that cache from one call to the next.

    With /dev/kvm root's alone (no udev) libvirt 9 threw it away at nearly every call and
    probed QEMU again (each define, start or ``getVersion`` waited; a build took 76 s):
    ``ensure_daemons`` gives the device udev's group and mode, so the cache file stays put.
    """
    libvirt_ready()
    assert libvirt_host.kvm_device_problem() is None
    libvirt = libvirt_host.libvirt_module()
    conn = libvirt.open(libvirt_host.DEFAULT_URI)
    try:
        conn.getDomainCapabilities("/usr/bin/qemu-system-x86_64", "x86_64", None, "qemu")
        cached = [path for path in Path("/var/cache/libvirt/qemu/capabilities").glob("*.xml")
                  if "<emulator>/usr/bin/qemu-system-x86_64<" in path.read_text()]
        assert len(cached) == 1, cached
        written = cached[0].stat().st_mtime_ns
        for _ in range(3):
            conn.getVersion()
            conn.getDomainCapabilities("/usr/bin/qemu-system-x86_64", "x86_64", None, "qemu")
        assert cached[0].exists() and cached[0].stat().st_mtime_ns == written
    finally:
        conn.close()
