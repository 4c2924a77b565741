"""The real ``openstack`` CLI on the ``rbd`` image store of the run's real Ceph."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stratus.cli.ceph import DevCluster
from tests.e2e.cloud import Cloud, running_cloud

pytestmark = pytest.mark.e2e

MiB = 1 << 20


@pytest.fixture
def admin_ioctx(ceph_cluster: DevCluster) -> Iterator[Any]:
    import rados

    conn = rados.Rados(conffile=str(ceph_cluster.conf), rados_id="admin",
                       conf={"keyring": str(ceph_cluster.admin_keyring)})
    conn.connect(timeout=10)
    try:
        with conn.open_ioctx("images") as ioctx:
            yield ioctx
    finally:
        conn.shutdown()


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
