"""The compute must-show session with the real ``openstack`` CLI against ``stratus up``.

The hypervisor is the fake driver (two fake hosts); everything else is real.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cloud import Cloud, running_cloud

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    # SQLite only: the same flow runs on PostgreSQL in tests/integration/compute, and each
    # CLI invocation here costs a second of client start-up.
    with running_cloud(tmp_path, STRATUS_COMPUTE__FAKE_HOSTS="2",
                       STRATUS_COMPUTE__HOST="fake") as instance:
        yield instance


def wait_status(cloud: Cloud, name: str, status: str) -> dict[str, Any]:
    """Poll ``server show`` as a user would (the build is fast: a few polls at most)."""
    deadline = time.monotonic() + 60
    while True:
        server: dict[str, Any] = cloud.openstack_json("server", "show", name)
        if server["status"] == status:
            return server
        assert time.monotonic() < deadline, f"{name} stuck in {server['status']}"
        time.sleep(0.2)


def test_server_life_cycle_with_the_real_cli(cloud: Cloud, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    cloud.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                    "--container-format", "bare", "tiny-image")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    cloud.openstack("keypair", "create", "--public-key", f"{key}.pub", "mykey")

    server = cloud.openstack_json("server", "create", "--image", "tiny-image", "--flavor",
                                  "m1.tiny", "--key-name", "mykey", "--wait", "vm1")
    assert server["status"] == "ACTIVE"
    assert server["key_name"] == "mykey"
    listed = cloud.openstack_json("server", "list")
    assert [(s["Name"], s["Status"], s["Image"], s["Flavor"]) for s in listed] == [
        ("vm1", "ACTIVE", "tiny-image", "m1.tiny")]
    shown = cloud.openstack_json("server", "show", "vm1")
    assert shown["OS-EXT-STS:vm_state"] == "active"
    assert shown["OS-EXT-SRV-ATTR:host"] in ("fake", "fake-2")

    cloud.openstack("server", "stop", "vm1")
    assert wait_status(cloud, "vm1", "SHUTOFF")["OS-EXT-STS:power_state"] in (4, "Shutdown")
    cloud.openstack("server", "start", "vm1")
    wait_status(cloud, "vm1", "ACTIVE")
    cloud.openstack("server", "reboot", "--hard", "--wait", "vm1")
    assert cloud.openstack_json("server", "show", "vm1")["status"] == "ACTIVE"
    log = cloud.openstack("console", "log", "show", "vm1").stdout
    assert "Booting vm1" in log and "Reset (hard reboot)." in log
    events = cloud.openstack_json("server", "event", "list", "vm1")
    assert [e["Action"] for e in events] == ["reboot", "start", "stop", "create"]

    hypervisors = cloud.openstack_json("hypervisor", "list")
    assert sorted(h["Hypervisor Hostname"] for h in hypervisors) == ["fake", "fake-2"]
    services = cloud.openstack_json("compute", "service", "list")
    assert {(s["Binary"], s["Host"], s["State"]) for s in services} == {
        ("nova-compute", "fake", "up"), ("nova-compute", "fake-2", "up")}
    quota = {q["Resource"]: q["Limit"] for q in cloud.openstack_json("quota", "show")}
    assert quota["instances"] == 10 and quota["cores"] == 20
    limits = {item["Name"]: item["Value"]
              for item in cloud.openstack_json("limits", "show", "--absolute")}
    assert limits["total_instances_used"] == 1 and limits["total_cores_used"] == 1

    cloud.openstack("server", "delete", "--wait", "vm1")
    assert cloud.openstack_json("server", "list") == []
    limits = {item["Name"]: item["Value"]
              for item in cloud.openstack_json("limits", "show", "--absolute")}
    assert limits["total_instances_used"] == 0
