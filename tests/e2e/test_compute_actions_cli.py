"""Issue 14's state actions, tags, lock and usage with the real ``openstack`` CLI against
``stratus up`` (fake hypervisor, two fake hosts; everything else real)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cloud import Cloud, base_env, free_port, user_env
from tests.e2e.test_compute_cli import wait_status

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    """``stratus up`` with two fake hosts (SQLite), given time to start on a busy machine."""
    instance = Cloud(tmp_path / "data", free_port(), base_env(
        STRATUS_COMPUTE__FAKE_HOSTS="2", STRATUS_COMPUTE__HOST="fake"))
    instance.start(timeout=120)
    try:
        yield instance
    finally:
        instance.stop()


def servers_in(usage: dict[str, Any]) -> int:
    """The ``Servers`` column: the list itself in JSON output, its length in a table."""
    servers = usage["Servers"]
    return len(servers) if isinstance(servers, list) else int(servers)


def refused(cloud: Cloud, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a command that must fail; its error output."""
    result = cloud.openstack(*args, check=False, cloud=env is None, env=env)
    assert result.returncode != 0, f"openstack {' '.join(args)} succeeded:\n{result.stdout}"
    return result.stderr


@pytest.mark.timeout(900)  # some forty CLI runs of a second or more each
def test_pause_suspend_rescue_lock_tags_usage_and_events_with_the_real_cli(
        cloud: Cloud, tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    cloud.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                    "--container-format", "bare", "tiny-image")
    server = cloud.openstack_json("server", "create", "--image", "tiny-image", "--flavor",
                                  "m1.tiny", "--nic", "none", "--wait", "vm1")
    server_id = server["id"]

    for command, status in (("pause", "PAUSED"), ("unpause", "ACTIVE"),
                            ("suspend", "SUSPENDED"), ("resume", "ACTIVE"),
                            ("rescue", "RESCUE"), ("unrescue", "ACTIVE")):
        cloud.openstack("server", command, "vm1")
        wait_status(cloud, "vm1", status)
    shown = cloud.openstack_json("server", "show", "vm1")
    assert (shown["OS-EXT-STS:vm_state"], shown["OS-EXT-STS:task_state"]) == ("active", None)

    # A wrong state: Nova's 409, nothing changed.
    error = refused(cloud, "server", "unpause", "vm1")
    assert f"Cannot 'unpause' instance {server_id} while it is in vm_state active" in error
    assert "409" in error

    # Lock: an admin locks; a member of the project may not stop it (409), nor delete it.
    cloud.openstack("user", "create", "--password", "member-pw-1234", "--project", "admin",
                    "lock-member")
    cloud.openstack("role", "add", "--user", "lock-member", "--project", "admin", "member")
    member = user_env(cloud, "lock-member", "member-pw-1234", "admin")
    cloud.openstack("--os-compute-api-version", "2.73", "server", "lock", "--reason",
                    "maintenance window", "vm1")
    shown = cloud.openstack_json("--os-compute-api-version", "2.73", "server", "show", "vm1")
    assert (shown["locked"], shown["locked_reason"]) == (True, "maintenance window")
    error = refused(cloud, "server", "stop", "vm1", env=member)
    assert f"Instance {server_id} is locked" in error and "409" in error
    error = refused(cloud, "server", "delete", "vm1", env=member)
    assert "is locked" in error
    assert cloud.openstack_json("server", "show", "vm1")["status"] == "ACTIVE"
    cloud.openstack("server", "unlock", "vm1")
    cloud.openstack("server", "stop", "vm1", env=member, cloud=False)
    wait_status(cloud, "vm1", "SHUTOFF")
    cloud.openstack("server", "start", "vm1")
    wait_status(cloud, "vm1", "ACTIVE")

    # Tags.
    cloud.openstack("--os-compute-api-version", "2.26", "server", "set", "--tag", "web",
                    "--tag", "db", "vm1")
    shown = cloud.openstack_json("--os-compute-api-version", "2.26", "server", "show", "vm1")
    assert sorted(shown["tags"]) == ["db", "web"]
    listed = cloud.openstack_json("--os-compute-api-version", "2.26", "server", "list",
                                  "--tags", "web")
    assert [s["Name"] for s in listed] == ["vm1"]
    cloud.openstack("--os-compute-api-version", "2.26", "server", "unset", "--tag", "db",
                    "vm1")
    shown = cloud.openstack_json("--os-compute-api-version", "2.26", "server", "show", "vm1")
    assert shown["tags"] == ["web"]

    # Usage: the admin project's one server, listed and shown.
    (listed_usage,) = cloud.openstack_json("usage", "list")
    assert servers_in(listed_usage) == 1
    usage = cloud.openstack_json("usage", "show")
    assert servers_in(usage) == 1
    assert float(usage["CPU Hours"]) > 0 and float(usage["RAM MB-Hours"]) > 0
    table = cloud.openstack("usage", "show").stdout
    assert "Usage from" in table and "| Servers" in table

    events = [e["Action"] for e in cloud.openstack_json("server", "event", "list", "vm1")]
    assert events == ["start", "stop", "unlock", "lock", "unrescue", "rescue", "resume",
                      "suspend", "unpause", "pause", "create"]
    cloud.openstack("server", "delete", "--wait", "vm1")
