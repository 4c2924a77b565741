"""Root disks in RBD (``images_type = rbd``) need the host's Ceph, and QEMU's rbd driver: said
before anything is made (no Ceph or libvirt needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratus.compute.virt.driver import VirtError
from stratus.compute.virt.libvirt import LibvirtDriver
from stratus.compute.virt.libvirt.rbd_disks import QEMU_RBD_MODULE, require_qemu_rbd


def test_images_type_rbd_needs_the_hosts_ceph(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RbdDisks"):
        LibvirtDriver(tmp_path, images_type="rbd")


def test_a_host_without_qemus_rbd_driver_says_which_package(tmp_path: Path) -> None:
    with pytest.raises(VirtError, match="apt-get install qemu-block-extra"):
        require_qemu_rbd(tmp_path / "block-rbd.so")
    if QEMU_RBD_MODULE.exists():  # as on this machine and in CI
        require_qemu_rbd()
