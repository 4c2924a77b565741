"""Server groups, availability zones and server properties with the real ``openstack`` CLI
against ``stratus up`` (fake hypervisor, two fake hosts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cloud import Cloud, running_cloud
from tests.e2e.test_compute_cli import wait_status

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    with running_cloud(tmp_path, STRATUS_COMPUTE__FAKE_HOSTS="2",
                       STRATUS_COMPUTE__HOST="fake", STRATUS_COMPUTE__VIRT_DRIVER="fake",
                       STRATUS_NETWORK__BACKEND="noop") as instance:
        yield instance


def test_groups_zones_and_properties(cloud: Cloud, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    cloud.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                    "--container-format", "bare", "tiny-image")

    zones = cloud.openstack_json("availability", "zone", "list", "--compute")
    assert [(z["Zone Name"], z["Zone Status"]) for z in zones] == [("nova", "available")]

    group = cloud.openstack_json("server", "group", "create", "--policy", "anti-affinity",
                                 "g1")
    assert group["name"] == "g1"
    assert "anti-affinity" in str(group.get("policy") or group.get("policies"))
    for name in ("a1", "a2"):
        cloud.openstack("server", "create", "--image", "tiny-image", "--flavor", "m1.tiny",
                        "--nic", "none", "--hint", f"group={group['id']}", "--wait", name)
    hosts = {wait_status(cloud, n, "ACTIVE")["OS-EXT-SRV-ATTR:host"] for n in ("a1", "a2")}
    assert hosts == {"fake", "fake-2"}
    shown = cloud.openstack_json("server", "group", "show", "g1")
    ids = {cloud.openstack_json("server", "show", n)["id"] for n in ("a1", "a2")}
    assert set(shown["members"]) == ids
    assert [g["Name"] for g in cloud.openstack_json("server", "group", "list")] == ["g1"]

    cloud.openstack("server", "set", "--property", "role=web", "--property", "tier=1", "a1")
    assert cloud.openstack_json("server", "show", "a1")["properties"] == {
        "role": "web", "tier": "1"}
    cloud.openstack("server", "unset", "--property", "tier", "a1")
    assert cloud.openstack_json("server", "show", "a1")["properties"] == {"role": "web"}

    for name in ("a1", "a2"):
        cloud.openstack("server", "delete", "--wait", name)
    assert cloud.openstack_json("server", "group", "show", "g1")["members"] == []
    cloud.openstack("server", "group", "delete", "g1")
    assert cloud.openstack_json("server", "group", "list") == []
