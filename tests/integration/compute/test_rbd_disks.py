"""Guests' root disks in RBD (``compute.images_type = rbd``) on the run's real Ceph: clones of
an rbd image's snapshot, imports of a host's image file, the key for libvirt's secret, and
removal; a disk that cannot be made leaves nothing."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stratus.compute.virt.driver import VirtError
from stratus.compute.virt.libvirt.rbd_disks import RbdDisks
from stratus.core import ceph as core_ceph
from stratus.core.ceph_dev import DevCluster
from stratus.core.config import CephSettings
from tests.integration.image.conftest import require_qemu_img

GIB = 1 << 30
MiB = 1 << 20


@pytest.fixture
async def disks(ceph_cluster: DevCluster) -> AsyncIterator[RbdDisks]:
    disks = RbdDisks(CephSettings(conf=ceph_cluster.conf, user="stratus",
                                  keyring=ceph_cluster.stratus_keyring))
    try:
        yield disks
    finally:
        await disks.close()


def _vms(admin: Any) -> list[str]:
    import rbd

    with admin.open_ioctx("vms") as ioctx:
        return list(rbd.RBD().list(ioctx))


async def test_a_raw_rbd_image_of_this_cluster_is_cloned_and_removed(
        disks: RbdDisks, ceph_cluster: DevCluster, ceph_admin: Any) -> None:
    import rbd

    image_id, server = str(uuid.uuid4()), str(uuid.uuid4())
    with ceph_admin.open_ioctx("images") as images:
        rbd.RBD().create(images, image_id, GIB + GIB // 2, old_format=False, features=1)
        with rbd.Image(images, image_id) as image:
            image.write(b"BOOT", 0)
            image.create_snap("snap")
            image.protect_snap("snap")
        location = f"rbd://{ceph_admin.get_fsid()}/images/{image_id}/snap"
        try:
            assert await disks.clones(location, "raw")
            assert not await disks.clones(location, "qcow2")  # rbd disks are raw
            assert not await disks.clones(f"rbd://another-fsid/images/{image_id}/snap", "raw")
            assert not await disks.clones("file:///images/x", "raw")

            source = await disks.clone(server, location, root_gb=2)
            assert source.name == f"vms/{server}_disk" and source.username == "stratus"
            assert source.hosts == (("127.0.0.1", ceph_cluster.ports()["mon_v1"]),)
            assert source.secret_uuid == core_ceph.secret_uuid(ceph_admin.get_fsid(), "stratus")
            with ceph_admin.open_ioctx("vms") as vms, rbd.Image(vms, f"{server}_disk") as disk:
                parent = disk.get_parent_image_spec()  # copy-on-write: no byte copied
                assert (parent["pool_name"], parent["image_name"]) == ("images", image_id)
                assert disk.size() == 2 * GIB and disk.read(0, 4) == b"BOOT"
            # The flavor's root disk must hold the image: refused, and nothing left.
            with pytest.raises(VirtError, match="smaller than the image"):
                await disks.clone(str(uuid.uuid4()), location, root_gb=1)
            assert [n for n in _vms(ceph_admin) if n.startswith(server)] == [f"{server}_disk"]

            await disks.remove(server)
            await disks.remove(server)  # gone already: fine
            assert not [n for n in _vms(ceph_admin) if server in n]
        finally:
            await disks.remove(server)
            with rbd.Image(images, image_id) as image:
                image.unprotect_snap("snap")
                image.remove_snap("snap")
            rbd.RBD().remove(images, image_id)


async def test_an_image_file_is_imported_raw_and_a_failed_import_leaves_nothing(
        disks: RbdDisks, ceph_admin: Any, tmp_path: Path) -> None:
    import rbd

    require_qemu_img()
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"QCOW" * (MiB // 4) + bytes(MiB))
    image = tmp_path / "disk.qcow2"
    await asyncio.to_thread(subprocess.run, ["qemu-img", "convert", "-f", "raw", "-O",
                                             "qcow2", str(raw), str(image)], check=True)
    server = str(uuid.uuid4())
    source = await disks.import_file(server, image, "qcow2", root_gb=1)
    assert source.name == f"vms/{server}_disk"
    with ceph_admin.open_ioctx("vms") as vms, rbd.Image(vms, f"{server}_disk") as disk:
        assert disk.size() == GIB and disk.read(0, 8) == b"QCOWQCOW"
    await disks.remove(server)

    broken = str(uuid.uuid4())
    with pytest.raises(VirtError, match="Could not write the image into RBD"):
        await disks.import_file(broken, raw, "qcow2", root_gb=1)  # raw said to be qcow2
    assert not [n for n in _vms(ceph_admin) if server in n or broken in n]


async def test_the_key_for_libvirt_is_the_users_and_is_never_shown(
        disks: RbdDisks, ceph_cluster: DevCluster) -> None:
    written = next(line.split("=", 1)[1].strip()
                   for line in ceph_cluster.stratus_keyring.read_text().splitlines()
                   if line.strip().startswith("key"))
    uuid_, usage, key = await disks.secret()
    assert key == base64.b64decode(written)
    assert usage == f"ceph client.stratus of {(await disks.ceph()).fsid}"
    assert written not in repr(await disks.source("x"))
    assert uuid_ == await disks.secret_uuid()
