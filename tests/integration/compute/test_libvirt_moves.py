"""Moving real guests (libvirt/QEMU) between two "hosts" on this machine: two libvirt drivers
with their own instance directories, each on its own libvirtd.

libvirt will not migrate a guest to the daemon it runs on (nor to one with the same host
UUID), so the second host's libvirtd runs in a mount namespace of its own (its state,
configuration, logs and pid files private, its own ``host_uuid`` and socket; QEMU writing
its own logs, as the machine's virtlogd holds the first daemon's), QEMU's migration
stream on the loopback. The guest keeps running through the live migration: it never boots
again on the destination, and answers a disk hot-plug there.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from stratus.compute.virt.driver import GuestSpec, MigrationProgress, PowerState
from stratus.compute.virt.libvirt import LibvirtDriver
from stratus.compute.virt.libvirt import host as libvirt_host
from tests.conftest import backend_unavailable
from tests.realvm import guest_image, libvirt_ready, wait_console

pytestmark = [pytest.mark.realvm, pytest.mark.serial]

START = """#!/bin/sh
set -e
mount --make-rprivate /
mount --bind {root}/etc /etc/libvirt
mount --bind {root}/run /run/libvirt
mount --bind {root}/lib /var/lib/libvirt
mount --bind {root}/cache /var/cache/libvirt
mount --bind {root}/log /var/log/libvirt
exec /usr/sbin/libvirtd --config {root}/etc/libvirtd.conf -p {root}/libvirtd.pid
"""


@pytest.fixture
def second_libvirtd() -> Iterator[str]:
    """A second libvirtd on this machine (see the module docstring); its URI."""
    libvirt_ready()
    if shutil.which("unshare") is None:
        backend_unavailable("a second libvirtd needs unshare(1)")
    root = Path(tempfile.mkdtemp(prefix="stratus-lv-", dir="/tmp"))  # short: socket paths
    for name in ("run", "lib", "cache", "sock", "log/qemu"):
        (root / name).mkdir(parents=True)
    shutil.copytree("/etc/libvirt", root / "etc", dirs_exist_ok=True)
    for leftover in ("qemu", "storage", "nwfilter"):  # no domains, pools or filters of the
        shutil.rmtree(root / "etc" / leftover, ignore_errors=True)  # first daemon's
    # QEMU writes its logs itself: the machine's virtlogd holds the first daemon's files,
    # which have the same names.
    with (root / "etc" / "qemu.conf").open("a") as conf:
        conf.write('\nstdio_handler = "file"\n')
    (root / "etc" / "libvirtd.conf").write_text(
        f'host_uuid = "{uuid.uuid4()}"\nunix_sock_dir = "{root}/sock"\n')
    script = root / "start.sh"
    script.write_text(START.format(root=root))
    script.chmod(0o755)
    log = (root / "libvirtd.log").open("wb")
    daemon = subprocess.Popen(["unshare", "-m", str(script)], stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"qemu+unix:///system?socket={root}/sock/libvirt-sock"
    try:
        deadline = time.monotonic() + 60
        libvirt = libvirt_host.libvirt_module()
        while True:
            try:
                libvirt.open(uri).close()
                break
            except libvirt.libvirtError:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    backend_unavailable("the second libvirtd did not start: "
                                        f"{(root / 'libvirtd.log').read_text()[-500:]}")
                time.sleep(0.2)
        yield uri
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def two_hosts(tmp_path: Path,
                    second_libvirtd: str) -> AsyncIterator[tuple[LibvirtDriver, LibvirtDriver]]:
    a = LibvirtDriver(tmp_path / "a" / "instances", run_dir=tmp_path / "run")
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
        two_hosts: tuple[LibvirtDriver, LibvirtDriver]) -> None:
    a, b = two_hosts
    guest = GuestSpec(uuid=str(uuid.uuid4()), name="mover", vcpus=1, memory_mb=256,
                      root_gb=1, image_path=guest_image(), image_format="qcow2")
    await a.spawn(guest)

    def console(driver: LibvirtDriver) -> asyncio.Future[str]:
        return asyncio.ensure_future(driver.get_console_output(guest.uuid))

    await wait_console(lambda: console(a), r"^STRATUS-READY")

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
    # The same guest, still running: it did not boot again on host-b, and it sees a disk
    # plugged in there.
    volume = b.instance_dir(guest.uuid) / "extra.raw"
    volume.write_bytes(b"\0" * (8 * 1024 * 1024))
    await b.attach_volume(guest.uuid, {"driver_volume_type": "file",
                                       "data": {"path": str(volume)}}, "/dev/vdb")
    there = await wait_console(lambda: console(b), r"^STRATUS-DISK-ADDED name=vdb")
    assert "STRATUS-INIT" not in there
    await b.detach_volume(guest.uuid, {"driver_volume_type": "file",
                                       "data": {"path": str(volume)}}, "/dev/vdb")

    # A cold resize on host-b itself: stopped, kept aside, started with more memory from its
    # own disk; confirmed, nothing is left aside.
    disk_info = await b.migrate_disk_and_power_off(guest.uuid, "host-b")
    bigger = GuestSpec(uuid=guest.uuid, name="mover", vcpus=1, memory_mb=384, root_gb=2,
                       image_path=guest.image_path, image_format="qcow2")
    await b.finish_migration(bigger, disk_info, power_on=True)
    info = await b.get_info(guest.uuid)
    assert (info.power_state, info.memory_mb) == (PowerState.RUNNING, 384)
    booted = await wait_console(lambda: console(b), r"^STRATUS-READY")
    assert "STRATUS-DISK name=vda size=2147483648" in booted
    await b.confirm_migration(guest.uuid)
    assert not (b.instances_dir / f"{guest.uuid}_resize").exists()
