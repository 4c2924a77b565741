"""The ``rbd`` volume backend on the run's real Ceph: ``volume-<id>`` images in ``volumes``,
clones of rbd images, protected snapshots, volumes from snapshots, copies, extend, delete, and
Cinder's rbd connection info."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stratus.core.ceph import secret_uuid
from stratus.core.ceph_dev import DevCluster
from stratus.core.config import CephSettings
from stratus.image.stores.rbd import RbdStore
from stratus.volume.backends.base import BackendError
from stratus.volume.backends.rbd import RbdBackend
from tests.integration.image.conftest import require_qemu_img

GIB = 1 << 30
MiB = 1 << 20
SECRET = "8a1b0c6e-4c5d-4e7f-9a0b-1c2d3e4f5a6b"


def _settings(cluster: DevCluster) -> CephSettings:
    return CephSettings(conf=cluster.conf, user="stratus", keyring=cluster.stratus_keyring)


@pytest.fixture
async def backend(ceph_cluster: DevCluster) -> AsyncIterator[RbdBackend]:
    backend = RbdBackend(_settings(ceph_cluster), secret_uuid=SECRET)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.stop()


def _image(admin: Any, name: str, pool: str = "volumes") -> Any:
    import rbd

    return rbd.Image(admin.open_ioctx(pool), name, read_only=True)


def _exists(admin: Any, name: str, pool: str = "volumes") -> bool:
    import rbd

    return name in rbd.RBD().list(admin.open_ioctx(pool))


async def test_volume_from_an_rbd_image_is_a_clone_and_the_image_cannot_go(
        backend: RbdBackend, ceph_cluster: DevCluster, ceph_admin: Any) -> None:
    store = RbdStore(_settings(ceph_cluster))
    await store.start()
    try:
        image_id = str(uuid.uuid4())
        writer = await store.writer(image_id)
        await writer.write(b"B" * MiB)
        location = await writer.commit()
        volume_id = str(uuid.uuid4())
        assert not await backend.clone_image(volume_id, 1, location, "qcow2")
        assert not await backend.clone_image(volume_id, 1, "rbd://other/images/x/snap", "raw")
        assert not _exists(ceph_admin, f"volume-{volume_id}")
        assert await backend.clone_image(volume_id, 1, location, "raw")
        with _image(ceph_admin, f"volume-{volume_id}") as volume:
            parent = volume.get_parent_image_spec()
            assert (parent["pool_name"], parent["image_name"], parent["snap_name"]) == (
                "images", image_id, "snap")
            assert volume.size() == GIB
            assert volume.read(0, 4) == b"BBBB"
        assert await store.clones(location) == [f"volumes/volume-{volume_id}"]
        with pytest.raises(Exception, match="in use"):
            await store.delete(location)
        await backend.delete_volume(volume_id)
        assert not _exists(ceph_admin, f"volume-{volume_id}")
        await store.delete(location)
        assert not _exists(ceph_admin, image_id, "images")
    finally:
        await store.stop()


async def test_snapshots_volumes_from_them_copies_extend_and_delete(
        backend: RbdBackend, ceph_admin: Any) -> None:
    import rbd

    source, snapshot = str(uuid.uuid4()), str(uuid.uuid4())
    from_snap, copy = str(uuid.uuid4()), str(uuid.uuid4())
    await backend.create_volume(source, 1)
    assert await backend.volume_exists(source)
    with rbd.Image(ceph_admin.open_ioctx("volumes"), f"volume-{source}") as image:
        image.write(b"first", 0)
    await backend.create_snapshot(snapshot, source)
    with rbd.Image(ceph_admin.open_ioctx("volumes"), f"volume-{source}") as image:
        image.write(b"later", 0)
        assert image.is_protected_snap(f"snapshot-{snapshot}")

    await backend.create_volume_from_snapshot(from_snap, 2, snapshot)
    with _image(ceph_admin, f"volume-{from_snap}") as volume:
        assert volume.read(0, 5) == b"first"
        assert volume.size() == 2 * GIB
        assert volume.get_parent_image_spec()["snap_name"] == f"snapshot-{snapshot}"

    await backend.clone_volume(copy, 1, source)
    with _image(ceph_admin, f"volume-{copy}") as volume:
        assert volume.read(0, 5) == b"later"
        with pytest.raises(rbd.ImageNotFound):
            volume.get_parent_image_spec()  # a full copy: independent of its source
    with _image(ceph_admin, f"volume-{source}") as image:
        assert [s["name"] for s in image.list_snaps()] == [f"snapshot-{snapshot}"]

    await backend.extend_volume(copy, 3)
    with _image(ceph_admin, f"volume-{copy}") as volume:
        assert volume.size() == 3 * GIB and volume.read(0, 5) == b"later"

    # Deleting the snapshot flattens the volume made from it: it keeps its data.
    await backend.delete_snapshot(snapshot)
    await backend.delete_snapshot(snapshot)  # absent: fine
    with _image(ceph_admin, f"volume-{from_snap}") as volume:
        assert volume.read(0, 5) == b"first"
        with pytest.raises(rbd.ImageNotFound):
            volume.get_parent_image_spec()
    for volume_id in (source, from_snap, copy):
        await backend.delete_volume(volume_id)
        await backend.delete_volume(volume_id)  # absent: fine
        assert not await backend.volume_exists(volume_id)
    with pytest.raises(BackendError, match="no data"):
        await backend.create_volume_from_snapshot(str(uuid.uuid4()), 1, snapshot)


async def test_volume_from_an_image_file_and_back_through_qemu_img(
        backend: RbdBackend, ceph_admin: Any, tmp_path: Path) -> None:
    require_qemu_img()
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"Q" * MiB)
    qcow2 = tmp_path / "disk.qcow2"
    await asyncio.to_thread(subprocess.run, ["qemu-img", "convert", "-O", "qcow2", str(raw),
                                             str(qcow2)], check=True)
    volume_id = str(uuid.uuid4())
    await backend.create_volume_from_image(volume_id, 1, qcow2, "qcow2")
    with _image(ceph_admin, f"volume-{volume_id}") as volume:
        assert volume.size() == GIB
        assert volume.read(0, MiB) == b"Q" * MiB

    # And read out again (an upload to the image service), as raw and as qcow2.
    out_raw, out_qcow2 = tmp_path / "out.raw", tmp_path / "out.qcow2"
    await backend.copy_to_image_file(volume_id, "raw", out_raw)
    assert out_raw.stat().st_size == GIB
    with out_raw.open("rb") as handle:
        assert handle.read(MiB) == b"Q" * MiB
    await backend.copy_to_image_file(volume_id, "qcow2", out_qcow2)
    back = tmp_path / "back.raw"
    await asyncio.to_thread(subprocess.run, ["qemu-img", "convert", "-f", "qcow2", "-O",
                                             "raw", str(out_qcow2), str(back)], check=True)
    with back.open("rb") as handle:
        assert handle.read(MiB) == b"Q" * MiB
    await backend.delete_volume(volume_id)
    gone = tmp_path / "gone.raw"
    with pytest.raises(BackendError, match="qemu-img"):
        await backend.copy_to_image_file(volume_id, "raw", gone)
    assert not gone.exists()

    broken = tmp_path / "broken.qcow2"
    broken.write_bytes(b"not a qcow2")
    failed = str(uuid.uuid4())
    with pytest.raises(BackendError, match="qemu-img"):
        await backend.create_volume_from_image(failed, 1, broken, "qcow2")
    assert not _exists(ceph_admin, f"volume-{failed}")


async def test_connection_info_is_cinders(backend: RbdBackend, ceph_cluster: DevCluster) -> None:
    info = backend.connection_info("abc", {})
    assert info == {"driver_volume_type": "rbd", "data": {
        "name": "volumes/volume-abc", "hosts": ["127.0.0.1"],
        "ports": [str(ceph_cluster.ports()["mon_v1"])], "cluster_name": "ceph",
        "auth_enabled": True, "auth_username": "stratus", "secret_type": "ceph",
        "secret_uuid": SECRET, "volume_id": "abc",
        "discard": True}}
    # Unconfigured, the secret is the one compute hosts define for this cluster and user.
    unset = RbdBackend(_settings(ceph_cluster))
    await unset.start()
    try:
        assert unset.connection_info("abc", {})["data"]["secret_uuid"] == secret_uuid(
            unset.ceph.fsid, "stratus")
    finally:
        await unset.stop()


async def test_clones_deeper_than_the_limit_are_flattened(ceph_cluster: DevCluster,
                                                          ceph_admin: Any) -> None:
    import rbd

    backend = RbdBackend(_settings(ceph_cluster), max_clone_depth=1)
    await backend.start()
    source, snapshot, child = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    store = RbdStore(_settings(ceph_cluster))
    await store.start()
    try:
        image_id = str(uuid.uuid4())
        writer = await store.writer(image_id)
        await writer.write(b"D" * MiB)
        location = await writer.commit()
        assert await backend.clone_image(source, 1, location, "raw")  # depth 1: kept
        with _image(ceph_admin, f"volume-{source}") as volume:
            assert volume.get_parent_image_spec()["image_name"] == image_id
        await backend.create_snapshot(snapshot, source)
        await backend.create_volume_from_snapshot(child, 1, snapshot)  # depth 2: flattened
        with _image(ceph_admin, f"volume-{child}") as volume:
            with pytest.raises(rbd.ImageNotFound):
                volume.get_parent_image_spec()
            assert volume.read(0, 4) == b"DDDD"
        await backend.delete_volume(child)
        await backend.delete_snapshot(snapshot)
        await backend.delete_volume(source)
        await store.delete(location)
        assert not _exists(ceph_admin, image_id, "images")
    finally:
        await store.stop()
        await backend.stop()
