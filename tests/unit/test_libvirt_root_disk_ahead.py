"""The libvirt driver makes a build's root disk ahead of its spawn (``prepare``), while the
host makes and wires the guest's ports: the spawn boots that very overlay, waits for it when
it is not made yet, reports its failure as its own, and a build that fails before its spawn
leaves nothing behind.

libvirt's own ``test:///default`` hypervisor holds the domains (no QEMU is started); the
overlays are made by the real ``qemu-img``.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from stratus.compute.virt.driver import GuestSpec, VirtError
from stratus.compute.virt.libvirt import LibvirtDriver

#: How long a step may take before the test fails (a guard, never a measured time).
GUARD_S = 30


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "image.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[LibvirtDriver]:
    made = LibvirtDriver(tmp_path / "instances", uri="test:///default", virt_type="qemu",
                         start_daemons=False)
    await made.init_host("host-1")
    try:
        yield made
    finally:
        await made.cleanup_host()  # the test hypervisor's domains go with its connection


def guest(image: Path) -> GuestSpec:
    return GuestSpec(uuid=str(uuid.uuid4()), name="vm", vcpus=1, memory_mb=128, root_gb=1,
                     image_path=image, image_format="qcow2")


async def until(check: Callable[[], bool]) -> None:
    for _ in range(int(GUARD_S / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{check} still false after {GUARD_S} s")


def vda_source(driver: LibvirtDriver, uuid_: str) -> str:
    dom = driver._c().lookupByUUIDString(uuid_)
    disk = ET.fromstring(dom.XMLDesc(0)).find("devices/disk[@device='disk']")
    assert disk is not None
    source = disk.find("source")
    assert source is not None
    return str(source.get("file"))


async def test_the_root_disk_is_made_before_the_spawn_and_booted(driver: LibvirtDriver,
                                                                 image: Path) -> None:
    spec = guest(image)
    disk = driver.instance_dir(spec.uuid) / "disk"
    await driver.prepare(spec)
    await until(disk.exists)  # made with no spawn asked for yet
    made = disk.stat().st_ino
    await driver.spawn(spec)
    assert disk.stat().st_ino == made  # the same overlay, not made again
    assert vda_source(driver, spec.uuid) == str(disk)
    assert (await driver.get_info(spec.uuid)).power_state.name == "RUNNING"


async def test_a_spawn_right_after_prepare_waits_for_the_disk(driver: LibvirtDriver,
                                                              image: Path) -> None:
    spec = guest(image)
    await driver.prepare(spec)
    await driver.spawn(spec)  # no wait in between: the spawn waits for qemu-img
    assert vda_source(driver, spec.uuid) == str(driver.instance_dir(spec.uuid) / "disk")


async def test_a_build_failing_before_its_spawn_leaves_nothing(driver: LibvirtDriver,
                                                               image: Path) -> None:
    spec = guest(image)
    await driver.prepare(spec)
    await driver.destroy(spec.uuid)  # at once: qemu-img may still be making the disk
    assert not driver.instance_dir(spec.uuid).exists()
    await asyncio.sleep(0.2)  # nothing made late either
    assert not driver.instance_dir(spec.uuid).exists()
    assert driver._ahead == {}


async def test_the_disk_made_ahead_failing_is_the_spawns_failure(driver: LibvirtDriver,
                                                                 tmp_path: Path) -> None:
    raw = tmp_path / "not-qcow2.img"
    raw.write_bytes(b"\0" * 65536)
    spec = guest(raw)  # said to be qcow2, which it is not: refused
    await driver.prepare(spec)
    with pytest.raises(VirtError, match="not in qcow2 format"):
        await driver.spawn(spec)
    assert not driver.instance_dir(spec.uuid).exists()
    assert await driver.list_guests() == []


async def test_a_root_volume_or_a_spawn_without_prepare_is_as_before(driver: LibvirtDriver,
                                                                     image: Path) -> None:
    volume = {"mountpoint": "/dev/vda", "connection_info": {
        "driver_volume_type": "file", "data": {"path": str(image), "format": "qcow2"}}}
    booted = GuestSpec(**{**guest(image).__dict__, "block_devices": [volume]})
    await driver.prepare(booted)
    assert not driver.instance_dir(booted.uuid).exists()  # nothing to make: vda is the volume
    await driver.spawn(booted)
    assert vda_source(driver, booted.uuid) == str(image)
    plain = guest(image)
    await driver.spawn(plain)
    assert vda_source(driver, plain.uuid) == str(driver.instance_dir(plain.uuid) / "disk")


# ``spawn_when``: started paused while the ports are wired once the taps exist (libvirt's
# test hypervisor has no paused start: that is tests/integration/compute/test_libvirt_driver's)


def wired_guest(image: Path, tap: str) -> GuestSpec:
    vif = {"id": "port-1", "address": "fa:16:3e:00:00:01", "type": "bridge",
           "devname": tap, "mtu": 1500}
    return GuestSpec(**{**guest(image).__dict__, "network_info": [vif]})


def state(driver: LibvirtDriver, uuid_: str) -> str:
    return str(driver._c().lookupByUUIDString(uuid_).state()[0])


async def test_without_its_taps_the_guest_is_made_once_the_ports_are_wired(
        driver: LibvirtDriver, image: Path) -> None:
    spec = wired_guest(image, "tapnosuchport")  # not made here yet (or out of sight)
    made_before: list[bool] = []

    async def ports_wired() -> None:
        await asyncio.sleep(0.05)  # the spawn looks for the tap meanwhile
        made_before.append(driver.instance_dir(spec.uuid).joinpath("disk").exists()
                           and spec.uuid in [d.UUIDString()
                                             for d in driver._c().listAllDomains()])

    await driver.spawn_when(spec, ports_wired)
    assert made_before == [False]
    assert state(driver, spec.uuid) == str(driver._libvirt.VIR_DOMAIN_RUNNING)
