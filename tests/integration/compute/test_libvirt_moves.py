"""Moving real guests (libvirt/QEMU) between two "hosts" on this machine: two libvirt drivers
with their own instance directories, each on its own libvirtd.

libvirt will not migrate a guest to the daemon it runs on, so the second host's libvirtd
runs in a mount namespace of its own (``tests.realvm.second_libvirtd``), QEMU's migration
stream on the loopback. The guest keeps running through the live migration: it never boots
again on the destination, and answers a disk hot-plug there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.compute.agent.manager import ComputeAgentManager
from stratus.compute.placement import Placement, provider_uuid
from stratus.compute.rpcapi import ComputeAgentAPI, ConductorAPI
from stratus.compute.units import serve_agent
from stratus.compute.virt.driver import GuestSpec, MigrationProgress, PowerState
from stratus.compute.virt.libvirt import LibvirtDriver
from stratus.compute.virt.libvirt.rbd_disks import RbdDisks
from stratus.core.config import CephSettings, Settings
from stratus.guest_image.upload import publish
from stratus.stack import Stack
from stratus.units import root_app, run_bootstrap
from tests.conftest import backend_unavailable
from tests.integration.asgi import LateASGITransport
from tests.integration.clouds import auth_body
from tests.integration.compute.conftest import ADMIN_PASSWORD, ROOT
from tests.integration.compute.test_boot_flow import UNITS, Cloud
from tests.integration.compute.test_libvirt_flow import wait_status
from tests.realvm import (
    SecondLibvirtdError,
    destroy_leftovers,
    guest_image,
    libvirt_ready,
    wait_console,
)
from tests.realvm import second_libvirtd as start_second_libvirtd

pytestmark = [pytest.mark.realvm, pytest.mark.serial]

TICK = re.compile(r"^STRATUS-TICK uptime=([\d.]+)", re.MULTILINE)

@pytest.fixture
def second_libvirtd() -> Iterator[str]:
    """A second libvirtd on this machine (``tests.realvm.second_libvirtd``); its URI."""
    libvirt_ready()
    try:
        with start_second_libvirtd() as uri:
            yield uri
    except SecondLibvirtdError as exc:
        backend_unavailable(str(exc))


def cdrom_sources(driver: LibvirtDriver, uuid_: str) -> list[str | None]:
    """The files of the guest's cdroms as its running domain has them."""
    dom = driver._lookup(uuid_)
    found = ET.fromstring(dom.XMLDesc(0)).iterfind("./devices/disk[@device='cdrom']/source")
    return [source.get("file") for source in found]


@pytest.fixture
async def two_hosts(tmp_path: Path,
                    second_libvirtd: str) -> AsyncIterator[tuple[LibvirtDriver, LibvirtDriver]]:
    a = LibvirtDriver(tmp_path / "a" / "instances")
    b = LibvirtDriver(tmp_path / "b" / "instances", uri=second_libvirtd, start_daemons=False,
                      migration_uri=second_libvirtd)
    await a.init_host("host-a")
    await b.init_host("host-b")
    try:
        yield a, b
    finally:
        for driver in (a, b):
            for guest in await driver.list_guests():
                await driver.destroy(guest)
            await driver.cleanup_host()


async def test_live_migration_keeps_the_guest_running_then_a_cold_resize(
        two_hosts: tuple[LibvirtDriver, LibvirtDriver], tmp_path: Path) -> None:
    a, b = two_hosts
    # A data volume (a file both hosts reach, as the file volume backend's) moves along,
    # not copied: the guest on host-b has it at the same device.
    data = tmp_path / "volume-data"
    data.write_bytes(b"\0" * (8 * 1024 * 1024))
    volumes = [{"mountpoint": "/dev/vdb", "connection_info": {
        "driver_volume_type": "file", "data": {"path": str(data), "format": "raw"}}}]
    # A config drive too: made again on each host the guest moves to (libvirt copies vda
    # only), its cdrom re-pointed there.
    drive = {"openstack/latest/meta_data.json": json.dumps(
        {"uuid": "mover", "admin_pass": "M0ver-pass"}).encode()}
    guest = GuestSpec(uuid=str(uuid.uuid4()), name="mover", vcpus=1, memory_mb=256,
                      root_gb=1, image_path=guest_image(), image_format="qcow2",
                      block_devices=volumes, config_drive=drive)
    await a.spawn(guest)
    password_line = ("STRATUS-PASSWORD user=root "
                     f"sha256={hashlib.sha256(b'M0ver-pass').hexdigest()} shadow=ok")

    def console(driver: LibvirtDriver) -> asyncio.Future[str]:
        return asyncio.ensure_future(driver.get_console_output(guest.uuid))

    booted = await wait_console(lambda: console(a), r"^STRATUS-READY")
    assert "STRATUS-DISK name=vdb size=8388608" in booted
    assert password_line in booted

    progress: list[MigrationProgress] = []

    async def seen(p: MigrationProgress) -> None:
        progress.append(p)

    migrate_data = await b.pre_live_migration(guest, await a.live_migration_source_data(
        guest.uuid))
    await a.live_migration(guest.uuid, "host-b", migrate_data, seen)
    await b.post_live_migration_at_destination(guest.uuid)

    assert guest.uuid in await b.list_guests()
    assert guest.uuid not in await a.list_guests()
    assert not a.instance_dir(guest.uuid).exists()
    assert (await b.get_info(guest.uuid)).power_state == PowerState.RUNNING
    assert cdrom_sources(b, guest.uuid) == [str(b.instance_dir(guest.uuid) / "disk.config")]
    # The same guest, still running: it did not boot again on host-b, and it sees a disk
    # plugged in there.
    volume = b.instance_dir(guest.uuid) / "extra.raw"
    volume.write_bytes(b"\0" * (8 * 1024 * 1024))
    await b.attach_volume(guest.uuid, {"driver_volume_type": "file",
                                       "data": {"path": str(volume)}}, "/dev/vdc")
    there = await wait_console(lambda: console(b), r"^STRATUS-DISK-ADDED name=vdc")
    assert "STRATUS-INIT" not in there
    await b.detach_volume(guest.uuid, {"driver_volume_type": "file",
                                       "data": {"path": str(volume)}}, "/dev/vdc")

    # A cold resize on host-b itself: stopped, kept aside, started with more memory from its
    # own disk; confirmed, nothing is left aside.
    disk_info = await b.migrate_disk_and_power_off(guest.uuid, "host-b")
    bigger = GuestSpec(uuid=guest.uuid, name="mover", vcpus=1, memory_mb=384, root_gb=2,
                       image_path=guest.image_path, image_format="qcow2",
                       block_devices=volumes, config_drive=drive)
    await b.finish_migration(bigger, disk_info, power_on=True)
    info = await b.get_info(guest.uuid)
    assert (info.power_state, info.memory_mb) == (PowerState.RUNNING, 384)
    booted = await wait_console(lambda: console(b), r"^STRATUS-READY")
    assert "STRATUS-DISK name=vda size=2147483648" in booted
    assert "STRATUS-DISK name=vdb size=8388608" in booted
    assert password_line in booted.rsplit("STRATUS-INIT", 1)[1]  # the resized boot's
    await b.confirm_migration(guest.uuid)
    assert not (b.instances_dir / f"{guest.uuid}_resize").exists()


# Through the compute API: two compute agents, one on each libvirtd ----------------------------

@pytest.fixture
async def two_agent_cloud(db_url: str, tmp_path: Path,
                          second_libvirtd: str) -> AsyncIterator[Cloud]:
    """The in-process cloud with its libvirt agent (``realvm-a``, on the machine's libvirtd),
    and a second agent (``realvm-b``) on the second libvirtd, serving on the same bus."""
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url=ROOT,
                        admin_password=ADMIN_PASSWORD, identity={"bcrypt_rounds": 4},
                        network={"backend": "noop"},
                        compute={"virt_driver": "libvirt", "host": "realvm-a",
                                 "shutdown_timeout": 30})
    transport = LateASGITransport()
    stack = Stack(settings, http_transport=transport)
    second: ComputeAgentManager | None = None
    try:
        await run_bootstrap(stack)
        app = await root_app(stack, UNITS)
        transport.app = app
        first = stack.agents[0]
        bus = await stack.transport()
        driver = LibvirtDriver(tmp_path / "b-instances", uri=second_libvirtd,
                               start_daemons=False, migration_uri=second_libvirtd)
        second = ComputeAgentManager("realvm-b", driver, ConductorAPI(bus), first.options,
                                     first.network, first.images, None,
                                     peers=ComputeAgentAPI(bus))
        await serve_agent(stack, second)
        await second.start()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=ROOT, timeout=60) as client:
            response = await client.post("/identity/v3/auth/tokens",
                                         json=auth_body("admin", ADMIN_PASSWORD, "admin"))
            yield Cloud(client, response.headers["X-Subject-Token"], stack)
    finally:
        if second is not None:
            for guest in await second.driver.list_guests():
                await second.driver.destroy(guest)
            await second.stop()
        await stack.aclose()
        await destroy_leftovers(tmp_path / "instances")  # only if the test failed midway


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_live_migration_of_a_real_guest_through_the_api(two_agent_cloud: Cloud) -> None:
    cloud = two_agent_cloud
    image_id = await publish(f"{ROOT}/identity/v3", "admin", ADMIN_PASSWORD, guest_image(),
                             client=cloud.client)
    created = await cloud.compute("POST", "/servers", json={"server": {
        "name": "real-mover", "imageRef": image_id, "flavorRef": "1", "networks": "none"}})
    assert created.status_code == 202, created.text
    server_id = created.json()["server"]["id"]
    server = await wait_status(cloud, server_id, "ACTIVE", within=180)
    source = server["OS-EXT-SRV-ATTR:host"]
    dest = {"realvm-a": "realvm-b", "realvm-b": "realvm-a"}[source]

    async def console() -> str:
        response = await cloud.compute("POST", f"/servers/{server_id}/action",
                                       json={"os-getConsoleOutput": {"length": None}})
        assert response.status_code == 200, response.text
        return str(response.json()["output"])

    ticked = await wait_console(console, r"^STRATUS-TICK")
    uptime_before = max(float(u) for u in TICK.findall(ticked))
    moved = await cloud.compute("POST", f"/servers/{server_id}/action", json={
        "os-migrateLive": {"host": dest, "block_migration": "auto"}})
    assert moved.status_code == 202, moved.text
    deadline = time.monotonic() + 180
    while True:
        shown = (await cloud.compute("GET", f"/servers/{server_id}")).json()["server"]
        assert shown["status"] in ("ACTIVE", "MIGRATING"), shown
        if shown["status"] == "ACTIVE" and shown["OS-EXT-SRV-ATTR:host"] == dest:
            break
        assert time.monotonic() < deadline, shown
        await asyncio.sleep(0.2)
    rows = (await cloud.compute("GET", f"/os-migrations?instance_uuid={server_id}")).json()[
        "migrations"]
    assert [(r["migration_type"], r["status"], r["source_compute"], r["dest_compute"])
            for r in rows] == [("live-migration", "completed", source, dest)]
    runtime = cloud.stack.compute
    assert runtime is not None
    async with runtime.db.session() as session:
        held = await Placement(session).allocations_of(server_id)
        assert held == {provider_uuid(dest): {"VCPU": 1, "MEMORY_MB": 512, "DISK_GB": 1}}
        assert await Placement(session).allocations_of(rows[0]["uuid"]) == {}
    # The guest kept running over there: no boot on the destination's console, its clock
    # counting on from where it was, and it powers itself off there on ACPI (a soft
    # reboot), then boots there.
    there = await wait_console(console, r"^STRATUS-TICK")
    assert "STRATUS-INIT" not in there
    assert min(float(u) for u in TICK.findall(there)) > uptime_before, there[-500:]
    rebooted = await cloud.compute("POST", f"/servers/{server_id}/action",
                                   json={"reboot": {"type": "SOFT"}})
    assert rebooted.status_code == 202
    text = await wait_console(console, r"^STRATUS-READY", within=180)
    assert text.index("STRATUS-POWEROFF") < text.index("STRATUS-INIT")


async def test_a_volume_backed_guest_with_a_data_volume_resizes_on_its_volumes(
        tmp_path: Path) -> None:
    """A cold resize of a guest booted from a volume, with a data volume: the new domain
    boots the same root volume (there is no disk of its own to copy) with the data volume at
    its device again, and the new flavor's memory."""
    libvirt_ready()
    root, data = tmp_path / "volume-root", tmp_path / "volume-data"
    await asyncio.to_thread(subprocess.run, ["qemu-img", "convert", "-O", "raw",
                                             str(guest_image()), str(root)], check=True)
    data.write_bytes(b"\0" * (8 * 1024 * 1024))
    volumes = [{"mountpoint": device, "connection_info": {
        "driver_volume_type": "file", "data": {"path": str(path), "format": "raw"}}}
        for device, path in (("/dev/vda", root), ("/dev/vdb", data))]
    driver = LibvirtDriver(tmp_path / "instances")
    await driver.init_host("realvm-host")
    guest = GuestSpec(uuid=str(uuid.uuid4()), name="bfv", vcpus=1, memory_mb=256, root_gb=0,
                      block_devices=volumes)

    def console() -> asyncio.Future[str]:
        return asyncio.ensure_future(driver.get_console_output(guest.uuid))

    try:
        await driver.spawn(guest)
        text = await wait_console(console, r"^STRATUS-READY")
        assert "STRATUS-DISK name=vdb size=8388608" in text
        disk_info = await driver.migrate_disk_and_power_off(guest.uuid, "realvm-host")
        bigger = GuestSpec(uuid=guest.uuid, name="bfv", vcpus=1, memory_mb=384, root_gb=0,
                           block_devices=volumes)
        await driver.finish_migration(bigger, disk_info, power_on=True)
        assert (await driver.get_info(guest.uuid)).memory_mb == 384
        text = await wait_console(console, r"^STRATUS-READY")
        assert "STRATUS-DISK name=vdb size=8388608" in text
        assert not (driver.instance_dir(guest.uuid) / "disk").exists()  # vda: the volume
        await driver.confirm_migration(guest.uuid)
    finally:
        await driver.destroy(guest.uuid)
        await driver.cleanup_host()
    assert root.exists() and data.exists()  # volumes outlive the guest


# Root disks in RBD: the hosts share them, so nothing is copied --------------------------------

@pytest.fixture
async def two_rbd_hosts(tmp_path: Path, second_libvirtd: str,
                        ceph_cluster: Any) -> AsyncIterator[tuple[LibvirtDriver, LibvirtDriver]]:
    settings = CephSettings(conf=ceph_cluster.conf, user="stratus",
                            keyring=ceph_cluster.stratus_keyring)
    a = LibvirtDriver(tmp_path / "a" / "instances", ceph=RbdDisks(settings), images_type="rbd")
    b = LibvirtDriver(tmp_path / "b" / "instances", uri=second_libvirtd, start_daemons=False,
                      migration_uri=second_libvirtd, ceph=RbdDisks(settings),
                      images_type="rbd")
    await a.init_host("host-a")
    await b.init_host("host-b")
    try:
        yield a, b
    finally:
        for driver in (a, b):
            for guest in await driver.list_guests():
                await driver.destroy(guest)
            await driver.cleanup_host()


def _rbd_disk(cluster: Any, uuid_: str) -> tuple[int, list[str]] | None:
    """(size, snapshot names) of the guest's disk in ``vms``, None when there is none."""
    import rbd

    from tests.ceph_cluster import admin_connection

    with admin_connection(cluster) as conn, conn.open_ioctx("vms") as vms:
        try:
            with rbd.Image(vms, f"{uuid_}_disk", read_only=True) as disk:
                return disk.size(), [s["name"] for s in disk.list_snaps()]
        except rbd.ImageNotFound:
            return None


@pytest.mark.timeout(900)
async def test_an_rbd_backed_guest_live_migrates_resizes_and_reverts_on_its_one_disk(
        two_rbd_hosts: tuple[LibvirtDriver, LibvirtDriver], ceph_cluster: Any) -> None:
    a, b = two_rbd_hosts
    guest = GuestSpec(uuid=str(uuid.uuid4()), name="rbd-mover", vcpus=1, memory_mb=256,
                      root_gb=1, image_path=guest_image(), image_format="qcow2")
    await a.spawn(guest)

    def console(driver: LibvirtDriver) -> asyncio.Future[str]:
        return asyncio.ensure_future(driver.get_console_output(guest.uuid))

    await wait_console(lambda: console(a), r"^STRATUS-READY")
    assert _rbd_disk(ceph_cluster, guest.uuid) == (1 << 30, [])

    # Live: no disk copied (no block migration), the same RBD disk opened on host-b by its
    # own libvirtd with its own Ceph secret; the guest never boots again.
    source_data = await a.live_migration_source_data(guest.uuid)
    assert source_data["rbd_disk"] is True
    migrate_data = await b.pre_live_migration(guest, source_data)
    assert migrate_data["disk"] is None
    await a.live_migration(guest.uuid, "host-b", migrate_data)
    await b.post_live_migration_at_destination(guest.uuid)
    assert guest.uuid in await b.list_guests()
    assert guest.uuid not in await a.list_guests()
    assert (await b.get_info(guest.uuid)).power_state == PowerState.RUNNING
    assert not a.instance_dir(guest.uuid).exists()
    assert _rbd_disk(ceph_cluster, guest.uuid) == (1 << 30, [])  # left where it is
    assert "STRATUS-INIT" not in await b.get_console_output(guest.uuid)

    # Cold to host-a with a larger flavor: the disk grows in place; a revert (host-a's
    # guest destroyed keeping the shared disk, host-b's brought back) rolls it back.
    disk_info = await b.migrate_disk_and_power_off(guest.uuid, "host-a")
    assert _rbd_disk(ceph_cluster, guest.uuid) == (1 << 30, ["stratus-resize"])
    bigger = GuestSpec(uuid=guest.uuid, name="rbd-mover", vcpus=1, memory_mb=384, root_gb=2,
                       image_path=guest.image_path, image_format="qcow2")
    await a.finish_migration(bigger, disk_info, power_on=True)
    booted = await wait_console(lambda: console(a), r"^STRATUS-READY")
    assert "STRATUS-DISK name=vda size=2147483648" in booted
    await a.destroy(guest.uuid, keep_shared_disk=True)
    assert _rbd_disk(ceph_cluster, guest.uuid) == (2 << 30, ["stratus-resize"])
    await b.finish_revert_migration(guest.uuid, power_on=True)
    assert _rbd_disk(ceph_cluster, guest.uuid) == (1 << 30, [])
    info = await b.get_info(guest.uuid)
    assert (info.power_state, info.memory_mb) == (PowerState.RUNNING, 256)
    # Back on host-b it boots its own disk (its console log there kept, the power-off of
    # the move in it). Powered off only once it is up: a guest still booting has no ACPI
    # handler yet and would sit out the whole grace period before the plug is pulled.
    reverted = await wait_console(lambda: console(b),
                                  r"(?s)STRATUS-POWEROFF.*STRATUS-INIT.*^STRATUS-READY")
    assert "STRATUS-DISK name=vda size=1073741824" in reverted.rsplit("STRATUS-INIT", 1)[1]

    # Again, confirmed this time: the grown disk stays, its snapshot goes.
    disk_info = await b.migrate_disk_and_power_off(guest.uuid, "host-a")
    await a.finish_migration(bigger, disk_info, power_on=True)
    await b.confirm_migration(guest.uuid)
    assert _rbd_disk(ceph_cluster, guest.uuid) == (2 << 30, [])
    assert (await a.get_info(guest.uuid)).power_state == PowerState.RUNNING
    await wait_console(lambda: console(a), r"^STRATUS-READY")

    # host-a dies (its guest gone, the disk in Ceph); evacuated to host-b, the guest boots
    # from that disk, as it was, not from a new copy of its image.
    await a.power_off(guest.uuid, grace_period=30)
    assert "STRATUS-POWEROFF" in await a.get_console_output(guest.uuid)  # on ACPI, itself
    await a._call(a._undefine, guest.uuid)
    _write_at_end(ceph_cluster, guest.uuid, b"written before the evacuation")
    await b.spawn(bigger)
    await wait_console(lambda: console(b), r"^STRATUS-READY")
    assert _read_at_end(ceph_cluster, guest.uuid, 29) == b"written before the evacuation"
    await b.destroy(guest.uuid)
    assert _rbd_disk(ceph_cluster, guest.uuid) is None


def _write_at_end(cluster: Any, uuid_: str, data: bytes) -> None:
    import rbd

    from tests.ceph_cluster import admin_connection

    with admin_connection(cluster) as conn, conn.open_ioctx("vms") as vms, \
            rbd.Image(vms, f"{uuid_}_disk") as disk:
        disk.write(data, disk.size() - len(data))


def _read_at_end(cluster: Any, uuid_: str, length: int) -> bytes:
    import rbd

    from tests.ceph_cluster import admin_connection

    with admin_connection(cluster) as conn, conn.open_ioctx("vms") as vms, \
            rbd.Image(vms, f"{uuid_}_disk", read_only=True) as disk:
        return bytes(disk.read(disk.size() - length, length))
