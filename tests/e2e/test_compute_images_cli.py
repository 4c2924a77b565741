"""Issue 14's disk actions with the real ``openstack`` CLI on ``stratus up`` (fake driver, two
fake hosts): ``server image create --wait`` and a boot from the snapshot, ``server rebuild``,
``server shelve --offload`` / ``server unshelve`` with the host's claim freed and taken
again, 409s in the wrong state with nothing changed, and ``server event list``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cloud import Cloud, base_env, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    instance = Cloud(tmp_path / "data", free_port(), base_env(
        STRATUS_COMPUTE__FAKE_HOSTS="2", STRATUS_COMPUTE__HOST="fake"))
    instance.start(timeout=120)  # a loaded machine takes a while to bring every unit up
    try:
        yield instance
    finally:
        instance.stop()


def wait_status(cloud: Cloud, name: str, status: str, within: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        server: dict[str, Any] = cloud.openstack_json("server", "show", name)
        if server["status"] == status and not server.get("OS-EXT-STS:task_state"):
            return server
        assert time.monotonic() < deadline, f"{name} stuck in {server['status']}"
        time.sleep(0.2)


def used_on(cloud: Cloud, host: str) -> tuple[int, int]:
    """(vCPUs, MB of RAM) the host's claims hold, as ``hypervisor list --long`` reports
    them (2.87: the last microversion with usage in the hypervisor's view)."""
    listed = cloud.openstack_json("--os-compute-api-version", "2.87", "hypervisor", "list",
                                  "--long")
    (row,) = [h for h in listed if h["Hypervisor Hostname"] == host]
    return int(row["vCPUs Used"]), int(row["Memory MB Used"])


def refused(cloud: Cloud, token: str, server_id: str, action: dict[str, Any]) -> str:
    """The Compute API's answer to an action it must refuse with 409 (sent by hand: the
    CLI checks some states itself and would not send it)."""
    answer = httpx.post(f"{cloud.url}/compute/v2.1/servers/{server_id}/action", json=action,
                        headers={"X-Auth-Token": token,
                                 "OpenStack-API-Version": "compute 2.96"}, timeout=30)
    assert answer.status_code == 409, answer.text
    message: str = answer.json()["conflictingRequest"]["message"]
    return message


@pytest.mark.timeout(900)  # some 60 CLI runs, each a second or more of client start-up
def test_snapshot_rebuild_shelve_with_the_real_cli(cloud: Cloud, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    for name in ("tiny-image", "other-image"):
        cloud.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                        "--container-format", "bare", "--property", "hw_disk_bus=virtio",
                        name)
    # The admin project has the ``public`` external network too: name the one to boot on.
    server = cloud.openstack_json("server", "create", "--image", "tiny-image", "--flavor",
                                  "m1.tiny", "--network", "private", "--wait", "vm1")
    uuid = server["id"]

    # createImage at the newest microversion (the image id in the body) ...
    cloud.openstack("server", "image", "create", "--name", "snap1", "--wait", "vm1")
    snap = cloud.openstack_json("image", "show", "snap1")
    assert snap["status"] == "active" and snap["disk_format"] == "qcow2"
    assert snap["size"] > 0 and snap["min_disk"] == 1 and snap["visibility"] == "private"
    props = snap["properties"]
    assert props["image_type"] == "snapshot" and props["instance_uuid"] == uuid
    tiny = cloud.openstack_json("image", "show", "tiny-image")
    assert props["base_image_ref"] == tiny["id"]
    assert props["hw_disk_bus"] == "virtio"  # inherited from the base image
    assert snap["owner"] == tiny["owner"]
    # ... and at 2.1 (the image's URL in a Location header).
    cloud.openstack("--os-compute-api-version", "2.1", "server", "image", "create",
                    "--name", "snap-old", "--wait", "vm1")
    assert cloud.openstack_json("image", "show", "snap-old")["status"] == "active"
    assert wait_status(cloud, "vm1", "ACTIVE")["OS-EXT-STS:task_state"] is None

    # The snapshot boots like any image.
    vm2 = cloud.openstack_json("server", "create", "--image", "snap1", "--flavor", "m1.tiny",
                               "--network", "private", "--wait", "vm2")
    assert vm2["status"] == "ACTIVE"
    assert cloud.openstack_json("server", "show", "vm2")["image"].startswith("snap1")

    # Rebuild: another image, a new name, the same ports and host.
    before = cloud.openstack_json("server", "show", "vm1")
    cloud.openstack("server", "rebuild", "--image", "other-image", "--name", "vm1",
                    "--property", "rebuilt=yes", "--wait", "vm1")
    after = wait_status(cloud, "vm1", "ACTIVE")
    assert after["image"].startswith("other-image")
    assert after["properties"] == {"rebuilt": "yes"} or after["properties"] == "rebuilt='yes'"
    assert after["OS-EXT-SRV-ATTR:host"] == before["OS-EXT-SRV-ATTR:host"]
    assert after["addresses"] == before["addresses"]

    # Shelve and offload: the host's claim goes, the server keeps its quota.
    host = after["OS-EXT-SRV-ATTR:host"]
    with_vm1 = used_on(cloud, host)
    limits_before = {i["Name"]: i["Value"]
                     for i in cloud.openstack_json("limits", "show", "--absolute")}
    cloud.openstack("server", "shelve", "--offload", "--wait", "vm1")
    offloaded = wait_status(cloud, "vm1", "SHELVED_OFFLOADED")
    assert offloaded["OS-EXT-SRV-ATTR:host"] in (None, "")
    assert used_on(cloud, host) == (with_vm1[0] - 1, with_vm1[1] - 512)
    shelved_image = cloud.openstack_json("image", "show", "vm1-shelved")
    assert shelved_image["status"] == "active"
    assert shelved_image["properties"]["image_type"] == "snapshot"
    limits = {i["Name"]: i["Value"]
              for i in cloud.openstack_json("limits", "show", "--absolute")}
    assert limits["total_instances_used"] == limits_before["total_instances_used"]
    assert limits["total_cores_used"] == limits_before["total_cores_used"]

    # Wrong state: 409, and nothing changed.
    images_before = sorted(i["Name"] for i in cloud.openstack_json("image", "list"))
    token = cloud.openstack_json("token", "issue")["id"]
    assert "shelved_offloaded" in refused(cloud, token, uuid,
                                          {"rebuild": {"imageRef": tiny["id"]}})
    refused(cloud, token, uuid, {"createImage": {"name": "never"}})
    refused(cloud, token, uuid, {"shelve": None})
    refused(cloud, token, vm2["id"], {"unshelve": None})
    assert sorted(i["Name"] for i in cloud.openstack_json("image", "list")) == images_before
    still = cloud.openstack_json("server", "show", "vm1")
    assert (still["status"], still["OS-EXT-STS:task_state"], still["image"]) == (
        "SHELVED_OFFLOADED", None, after["image"])

    # Unshelve: scheduled again, ACTIVE on a host with the claim back, the image gone.
    cloud.openstack("server", "unshelve", "--wait", "vm1")
    back = wait_status(cloud, "vm1", "ACTIVE")
    new_host = back["OS-EXT-SRV-ATTR:host"]
    assert new_host in ("fake", "fake-2")
    assert back["addresses"] == before["addresses"]
    assert "vm1-shelved" not in [i["Name"] for i in cloud.openstack_json("image", "list")]
    others = {"fake": "fake-2", "fake-2": "fake"}
    assert used_on(cloud, new_host)[0] + used_on(cloud, others[new_host])[0] == 2

    events = [e["Action"] for e in cloud.openstack_json("server", "event", "list", "vm1")]
    assert events == ["unshelve", "shelveOffload", "shelve", "rebuild", "createImage",
                      "createImage", "create"] or events == [
        "unshelve", "shelve", "rebuild", "createImage", "createImage", "create"]

    cloud.openstack("server", "delete", "--wait", "vm1", "vm2")
    assert used_on(cloud, "fake")[0] == used_on(cloud, "fake-2")[0] == 0
