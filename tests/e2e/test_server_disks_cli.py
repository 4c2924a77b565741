"""A server's data disks and extra interfaces with the real ``openstack`` CLI against
``stratus up`` (fake driver, file volume backend, noop network backend): ``server create
--block-device`` / ``--block-device-mapping``, ``server volume list``, ``server add port`` /
``remove port`` / ``add network`` / ``remove network``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cloud import Cloud, base_env, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    env = base_env(STRATUS_COMPUTE__HOST="fake", STRATUS_VOLUME__HOST="storage")
    instance = Cloud(tmp_path / "data", free_port(), env,
                     args=["up", "--network-backend", "noop"])
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def _until(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _volume_status(cloud: Cloud, name: str) -> str:
    return str(cloud.openstack_json("volume", "show", name)["status"])


def _image(cloud: Cloud, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    cloud.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                    "--container-format", "bare", "tiny-image")


def test_boot_with_a_blank_and_an_existing_data_volume(cloud: Cloud, tmp_path: Path) -> None:
    _image(cloud, tmp_path)
    cloud.openstack("volume", "create", "--size", "1", "data")
    _until("the data volume", lambda: _volume_status(cloud, "data") == "available")

    # Refused: a blank volume without a size; nothing is made.
    refused = cloud.openstack("server", "create", "--image", "tiny-image", "--flavor",
                              "m1.tiny", "--nic", "none", "--block-device",
                              "source_type=blank,destination_type=volume", "bad", check=False)
    assert refused.returncode != 0 and "non-zero size" in refused.stderr
    assert cloud.openstack_json("server", "list") == []
    assert [v["Name"] for v in cloud.openstack_json("volume", "list")] == ["data"]

    server = cloud.openstack_json(
        "server", "create", "--image", "tiny-image", "--flavor", "m1.tiny", "--nic", "none",
        "--block-device-mapping", "vdc=data:volume",
        "--block-device", "source_type=blank,destination_type=volume,volume_size=1,"
                          "delete_on_termination=true",
        "--wait", "vm")
    assert server["status"] == "ACTIVE"
    attached = cloud.openstack_json("server", "volume", "list", "vm")
    devices = {a["Device"]: a["Volume ID"] for a in attached}
    data_id = cloud.openstack_json("volume", "show", "data")["id"]
    assert devices["/dev/vdc"] == data_id and set(devices) == {"/dev/vdb", "/dev/vdc"}
    blank_id = devices["/dev/vdb"]
    blank = cloud.openstack_json("volume", "show", blank_id)
    assert blank["size"] == 1 and blank["status"] == "in-use"
    assert _volume_status(cloud, "data") == "in-use"
    shown = cloud.openstack_json("server", "show", "vm")
    assert {v["id"] for v in shown["volumes_attached"]} == {data_id, blank_id}

    cloud.openstack("server", "delete", "--wait", "vm")
    # The blank volume went with the server; the existing one is free again.
    _until("the blank volume to go", lambda: [
        v["ID"] for v in cloud.openstack_json("volume", "list")] == [data_id])
    assert _volume_status(cloud, "data") == "available"


def test_server_add_and_remove_port_and_network(cloud: Cloud, tmp_path: Path) -> None:
    _image(cloud, tmp_path)
    cloud.openstack("network", "create", "blue")
    cloud.openstack("subnet", "create", "--network", "blue", "--subnet-range",
                    "10.7.0.0/24", "blue-subnet")
    port = cloud.openstack_json("port", "create", "--network", "blue", "p1")
    server = cloud.openstack_json("server", "create", "--image", "tiny-image", "--flavor",
                                  "m1.tiny", "--nic", "none", "--wait", "vm")
    assert server["addresses"] == {}

    cloud.openstack("server", "add", "port", "vm", "p1")
    bound = cloud.openstack_json("port", "show", "p1")
    assert bound["device_id"] == server["id"] and bound["status"] == "ACTIVE"
    assert bound["binding_host_id"] == "fake" and bound["device_owner"].startswith("compute:")
    address = port["fixed_ips"][0]["ip_address"]
    shown = cloud.openstack_json("server", "show", "vm")
    assert shown["addresses"] == {"blue": [address]}

    cloud.openstack("server", "remove", "port", "vm", "p1")
    kept = cloud.openstack_json("port", "show", "p1")
    assert kept["device_id"] == "" and kept["binding_host_id"] in ("", None)
    assert cloud.openstack_json("server", "show", "vm")["addresses"] == {}

    cloud.openstack("server", "add", "network", "vm", "blue")
    made = cloud.openstack_json("port", "list", "--server", "vm")
    assert len(made) == 1 and made[0]["ID"] != port["id"]
    assert list(cloud.openstack_json("server", "show", "vm")["addresses"]) == ["blue"]
    cloud.openstack("server", "remove", "network", "vm", "blue")
    assert cloud.openstack_json("port", "list", "--server", "vm") == []
    # The port made for the network is deleted; the user's own stays.
    assert cloud.openstack("port", "show", made[0]["ID"], check=False).returncode != 0
    assert cloud.openstack_json("port", "show", "p1")["id"] == port["id"]
    assert cloud.openstack_json("server", "show", "vm")["addresses"] == {}
