"""The real ``openstack`` CLI on the ``rbd`` image store of the run's real Ceph."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratus.core.ceph_dev import DevCluster
from tests.ceph_cluster import admin_connection
from tests.e2e.cloud import Cloud, base_env, free_port, running_cloud

pytestmark = pytest.mark.e2e

MiB = 1 << 20


@pytest.fixture
def cloud(tmp_path: Path, ceph_cluster: DevCluster) -> Iterator[Cloud]:
    env = {k: v for k, v in ceph_cluster.env().items() if k.startswith("STRATUS_CEPH__")}
    with running_cloud(tmp_path, None, STRATUS_IMAGE__STORE="rbd", **env) as instance:
        yield instance


def test_image_create_save_and_delete_on_rbd(cloud: Cloud, admin_ioctx: Any,
                                             tmp_path: Path) -> None:
    import rbd

    assert "rbd: pool images of the Ceph cluster" in cloud.console()
    source = tmp_path / "disk.raw"
    data = os.urandom(3 * MiB) + bytes(9 * MiB) + os.urandom(MiB + 17)
    source.write_bytes(data)
    name = f"rbd-{uuid.uuid4().hex[:8]}"
    image = cloud.openstack_json("image", "create", "--file", str(source), "--disk-format",
                                 "raw", "--container-format", "bare", name)
    image_id = image["id"]
    assert image["status"] == "active" and image["size"] == len(data)
    assert "direct_url" not in image  # users never see where the data is
    with rbd.Image(admin_ioctx, image_id, read_only=True) as stored:
        assert stored.size() == len(data)
        assert [s["name"] for s in stored.list_snaps()] == ["snap"]
        assert stored.is_protected_snap("snap")

    saved = tmp_path / "saved.raw"
    cloud.openstack("image", "save", "--file", str(saved), name)
    assert saved.read_bytes() == data

    clone = f"volume-{uuid.uuid4()}"
    rbd.RBD().clone(admin_ioctx, image_id, "snap", admin_ioctx, clone)
    try:
        refused = cloud.openstack("image", "delete", name, check=False)
        assert refused.returncode != 0
        assert "in use" in refused.stderr, refused.stderr
        assert cloud.openstack_json("image", "show", name)["status"] == "active"
    finally:
        rbd.RBD().remove(admin_ioctx, clone)
    cloud.openstack("image", "delete", name)
    assert not [n for n in rbd.RBD().list(admin_ioctx) if image_id in n]


@pytest.fixture
def ceph_cloud(tmp_path: Path, ceph_cluster: DevCluster) -> Iterator[Cloud]:
    """``stratus up --storage ceph``: image store and volume backend on RBD at once."""
    env = {k: v for k, v in ceph_cluster.env().items() if k.startswith("STRATUS_CEPH__")}
    instance = Cloud(tmp_path / "data", free_port(),
                     base_env(STRATUS_VOLUME__HOST="storage", **env),
                     args=["up", "--storage", "ceph"])
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def _wait(cloud: Cloud, kind: list[str], name: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        shown: dict[str, Any] = cloud.openstack_json(*kind, "show", name)
        if shown["status"] == status:
            return shown
        assert shown["status"] not in ("error", "error_deleting"), (shown, cloud.log()[-3000:])
        assert time.monotonic() < deadline, f"{name} stuck in {shown['status']}"
        time.sleep(0.2)


def _gone(cloud: Cloud, *kind: str) -> None:
    deadline = time.monotonic() + 60
    while cloud.openstack_json(*kind, "list"):
        assert time.monotonic() < deadline, f"{kind} not deleted"
        time.sleep(0.2)


def test_volumes_on_rbd_clone_the_image_and_hold_it(ceph_cloud: Cloud, admin_ioctx: Any,
                                                    ceph_cluster: DevCluster,
                                                    tmp_path: Path) -> None:
    import rbd

    cloud = ceph_cloud
    assert f"Storage: Ceph of {ceph_cluster.conf} as client.stratus" in cloud.console()
    assert re.search(r"volume backend +rbd: pool volumes", cloud.log())
    source = tmp_path / "disk.raw"
    source.write_bytes(b"BOOT" * (MiB // 4) + bytes(15 * MiB))
    image = cloud.openstack_json("image", "create", "--file", str(source), "--disk-format",
                                 "raw", "--container-format", "bare", "base")
    cloud.openstack("volume", "create", "--image", "base", "--size", "1", "vol")
    volume = _wait(cloud, ["volume"], "vol", "available")
    assert volume["bootable"] in (True, "true")
    with admin_connection(ceph_cluster) as conn, conn.open_ioctx("volumes") as volumes:
        with rbd.Image(volumes, f"volume-{volume['id']}", read_only=True) as disk:
            parent = disk.get_parent_image_spec()  # a clone: no bytes were copied
            assert (parent["pool_name"], parent["image_name"], parent["snap_name"]) == (
                "images", image["id"], "snap")
            assert disk.size() == 1 << 30 and disk.read(0, 8) == b"BOOTBOOT"
        cache = cloud.data_dir / "volume-image-cache"
        assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]

        cloud.openstack("volume", "snapshot", "create", "--volume", "vol", "snap")
        _wait(cloud, ["volume", "snapshot"], "snap", "available")
        cloud.openstack("volume", "create", "--snapshot", "snap", "--size", "2", "vol2")
        second = _wait(cloud, ["volume"], "vol2", "available")
        with rbd.Image(volumes, f"volume-{second['id']}", read_only=True) as disk:
            assert disk.get_parent_image_spec()["image_name"] == f"volume-{volume['id']}"
            assert disk.size() == 2 << 30 and disk.read(0, 8) == b"BOOTBOOT"

        refused = cloud.openstack("image", "delete", "base", check=False)
        assert refused.returncode != 0 and "in use" in refused.stderr, refused.stderr

        cloud.openstack("volume", "delete", "vol2")
        cloud.openstack("volume", "snapshot", "delete", "snap")
        _gone(cloud, "volume", "snapshot")
        cloud.openstack("volume", "delete", "vol")
        _gone(cloud, "volume")
        cloud.openstack("image", "delete", "base")
        assert not [n for n in rbd.RBD().list(volumes)
                    if volume["id"] in n or second["id"] in n]
    assert not [n for n in rbd.RBD().list(admin_ioctx) if image["id"] in n]
