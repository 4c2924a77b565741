"""Block storage with the real ``openstack`` CLI against ``stratus up`` (file backend)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cloud import Cloud, running_cloud

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    # SQLite only: PostgreSQL runs the same flows in tests/integration/volume.
    with running_cloud(tmp_path, STRATUS_VOLUME__HOST="storage") as instance:
        yield instance


def wait_volume(cloud: Cloud, name: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        volume: dict[str, Any] = cloud.openstack_json("volume", "show", name)
        if volume["status"] in statuses:
            return volume
        assert time.monotonic() < deadline, f"{name} stuck in {volume['status']}"
        time.sleep(0.2)


def test_volume_life_cycle_with_the_real_cli(cloud: Cloud) -> None:
    volumes_dir = cloud.data_dir / "volumes"
    created = cloud.openstack_json("volume", "create", "--size", "1", "--description",
                                   "first", "--property", "team=storage", "vol1")
    assert created["size"] == 1 and created["name"] == "vol1"
    volume = wait_volume(cloud, "vol1", "available")
    assert volume["type"] == "__DEFAULT__" and volume["properties"] == {"team": "storage"}
    path = volumes_dir / f"volume-{volume['id']}"
    assert path.stat().st_size == 1 << 30

    listed = cloud.openstack_json("volume", "list")
    assert [(v["Name"], v["Status"], v["Size"]) for v in listed] == [("vol1", "available", 1)]

    cloud.openstack("volume", "set", "--size", "2", "vol1")
    volume = wait_volume(cloud, "vol1", "available")
    assert volume["size"] == 2 and path.stat().st_size == 2 << 30

    snapshot = cloud.openstack_json("volume", "snapshot", "create", "--volume", "vol1",
                                    "snap1")
    assert snapshot["volume_id"] == volume["id"]
    deadline = time.monotonic() + 60
    while cloud.openstack_json("volume", "snapshot", "show", "snap1")["status"] != "available":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert [s["Name"] for s in cloud.openstack_json("volume", "snapshot", "list")] == ["snap1"]
    # A volume with a snapshot is not deleted; the CLI reports the failure.
    refused = cloud.openstack("volume", "delete", "vol1", check=False)
    assert refused.returncode != 0
    assert wait_volume(cloud, "vol1", "available")["id"] == volume["id"]
    cloud.openstack("volume", "snapshot", "delete", "snap1")
    deadline = time.monotonic() + 60
    while cloud.openstack_json("volume", "snapshot", "list"):
        assert time.monotonic() < deadline
        time.sleep(0.2)

    # Volume → image: the CLI's os-volume_upload_image; a qcow2 of the (sparse) volume.
    cloud.openstack("image", "create", "--volume", "vol1", "--disk-format", "qcow2",
                    "from-vol1")
    deadline = time.monotonic() + 60
    while (image := cloud.openstack_json("image", "show", "from-vol1"))["status"] != "active":
        assert time.monotonic() < deadline, image["status"]
        time.sleep(0.2)
    assert image["disk_format"] == "qcow2"
    assert wait_volume(cloud, "vol1", "available")["id"] == volume["id"]
    cloud.openstack("image", "delete", "from-vol1")

    # A transfer offered and accepted with its key (the same project may take it back).
    offer = cloud.openstack_json("volume", "transfer", "request", "create", "vol1")
    assert wait_volume(cloud, "vol1", "awaiting-transfer")["id"] == volume["id"]
    listed = cloud.openstack_json("volume", "transfer", "request", "list")
    assert [t["ID"] for t in listed] == [offer["id"]]
    cloud.openstack("volume", "transfer", "request", "accept", "--auth-key",
                    offer["auth_key"], offer["id"])
    assert wait_volume(cloud, "vol1", "available")["id"] == volume["id"]

    # Over quota: 413 reaches the user as an error.
    cloud.openstack("quota", "set", "--gigabytes", "5", "admin")
    over = cloud.openstack("volume", "create", "--size", "10", "big", check=False)
    assert over.returncode != 0 and "413" in over.stderr + over.stdout

    cloud.openstack("volume", "delete", "vol1")
    deadline = time.monotonic() + 60
    while cloud.openstack_json("volume", "list"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert list(volumes_dir.iterdir()) == []
    # The catalog names block-storage and its volumev3 alias; discovery is open.
    services = {s["Type"] for s in cloud.openstack_json("catalog", "list")}
    assert {"block-storage", "volumev3"} <= services
    assert httpx.get(f"{cloud.url}/volume/v3/", timeout=5).json()["versions"][0][
        "version"] == "3.60"


def test_server_volumes_with_the_real_cli(cloud: Cloud, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    cloud.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                    "--container-format", "bare", "tiny-image")
    server = cloud.openstack_json("server", "create", "--image", "tiny-image", "--flavor",
                                  "m1.tiny", "--nic", "none", "--wait", "vm1")
    assert server["status"] == "ACTIVE"
    cloud.openstack("volume", "create", "--size", "1", "vol2")
    wait_volume(cloud, "vol2", "available")

    attached = cloud.openstack_json("server", "add", "volume", "vm1", "vol2")
    assert attached["Device"] == "/dev/vdb"
    volume = wait_volume(cloud, "vol2", "in-use")
    (item,) = volume["attachments"]
    assert item["server_id"] == server["id"] and item["device"] == "/dev/vdb"
    # In use: the CLI's delete fails and the volume stays.
    assert cloud.openstack("volume", "delete", "vol2", check=False).returncode != 0
    assert wait_volume(cloud, "vol2", "in-use")["id"] == volume["id"]

    cloud.openstack("server", "remove", "volume", "vm1", "vol2")
    assert wait_volume(cloud, "vol2", "available")["attachments"] == []
    cloud.openstack("volume", "delete", "vol2")

    # Boot from volume: the root volume is made from the image and attached as /dev/vda.
    booted = cloud.openstack_json("server", "create", "--image", "tiny-image", "--flavor",
                                  "m1.tiny", "--nic", "none", "--boot-from-volume", "1",
                                  "--wait", "vm2")
    assert booted["status"] == "ACTIVE"
    (root,) = [v for v in cloud.openstack_json("volume", "list", "--long")
               if v["Attached to"]]
    assert root["Status"] == "in-use" and root["Bootable"] in (True, "true")
    shown = cloud.openstack_json("server", "show", "vm2")
    assert shown["volumes_attached"][0]["id"] == root["ID"]
