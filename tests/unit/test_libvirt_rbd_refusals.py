"""What the libvirt driver does not do yet with root disks in RBD (``images_type = rbd``) it
refuses before changing anything, with a fault that says why (no Ceph or libvirt needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratus.compute.virt.driver import VirtError
from stratus.compute.virt.libvirt import LibvirtDriver
from stratus.compute.virt.libvirt.rbd_disks import QEMU_RBD_MODULE, RbdDisks, require_qemu_rbd
from stratus.core.config import CephSettings

UUID = "6f1c1a43-7a0b-4f47-a3a5-0d6c3c51a0e1"


def test_images_type_rbd_needs_the_hosts_ceph(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RbdDisks"):
        LibvirtDriver(tmp_path, images_type="rbd")


async def test_moves_of_rbd_guests_are_refused_first(tmp_path: Path) -> None:
    driver = LibvirtDriver(tmp_path, ceph=RbdDisks(CephSettings()), images_type="rbd")
    # Not connected to libvirt: a refusal that came later would fail on the connection.
    for move in (driver.migrate_disk_and_power_off(UUID, "other"),
                 driver.live_migration_source_data(UUID)):
        with pytest.raises(VirtError, match="RBD"):
            await move


def test_a_host_without_qemus_rbd_driver_says_which_package(tmp_path: Path) -> None:
    with pytest.raises(VirtError, match="apt-get install qemu-block-extra"):
        require_qemu_rbd(tmp_path / "block-rbd.so")
    if QEMU_RBD_MODULE.exists():  # as on this machine and in CI
        require_qemu_rbd()
