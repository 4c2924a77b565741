"""Resize, cold and live migration with the real ``openstack`` CLI against ``stratus up``
(fake hypervisor, two fake hosts): the states it waits for, the hosts' usage after each
step, the migration list and the event list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cloud import Cloud, base_env, free_port
from tests.e2e.test_compute_cli import wait_status

pytestmark = pytest.mark.e2e

HOSTS = ("fake", "fake-2")


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    instance = Cloud(tmp_path / "data", free_port(), base_env(
        STRATUS_COMPUTE__FAKE_HOSTS="2", STRATUS_COMPUTE__HOST="fake",
        STRATUS_COMPUTE__VIRT_DRIVER="fake", STRATUS_NETWORK__BACKEND="noop"))
    # A shared machine may be slow to start it: more than the usual 30 s.
    instance.start(timeout=120)
    try:
        yield instance
    finally:
        instance.stop()


def usage(cloud: Cloud) -> dict[str, tuple[int, int]]:
    """Each host's (vCPUs, MB of RAM) in use, as ``hypervisor list --long`` reports it (the
    usage columns are gone from 2.88, so asked at 2.87)."""
    listed = cloud.openstack_json("--os-compute-api-version", "2.87", "hypervisor", "list",
                                  "--long")
    return {h["Hypervisor Hostname"]: (int(h["vCPUs Used"]), int(h["Memory MB Used"]))
            for h in listed}


def refused(cloud: Cloud, *args: str) -> str:
    """The CLI's failure output for a request Nova would refuse with 409."""
    result = cloud.openstack(*args, check=False)
    assert result.returncode != 0, result.stdout
    assert "ConflictException: 409" in result.stderr, result.stderr
    return result.stderr


def show(cloud: Cloud, name: str) -> dict[str, Any]:
    server: dict[str, Any] = cloud.openstack_json("server", "show", name)
    return server


@pytest.mark.timeout(900)  # some forty CLI runs: minutes on a loaded machine
def test_resize_migrate_and_live_migrate_with_the_real_cli(cloud: Cloud,
                                                           tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    cloud.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                    "--container-format", "bare", "tiny-image")
    cloud.openstack("server", "create", "--image", "tiny-image", "--flavor", "m1.tiny",
                    "--nic", "none", "--wait", "grow")
    home = show(cloud, "grow")["OS-EXT-SRV-ATTR:host"]
    assert usage(cloud)[home] == (1, 512)

    # Wrong state: nothing to confirm or revert on an ACTIVE server.
    refused(cloud, "server", "resize", "confirm", "grow")
    refused(cloud, "server", "resize", "revert", "grow")
    assert show(cloud, "grow")["status"] == "ACTIVE"

    # resize --wait ends in VERIFY_RESIZE, holding both flavors (one host may hold both).
    cloud.openstack("server", "resize", "--flavor", "m1.small", "--wait", "grow")
    verify = wait_status(cloud, "grow", "VERIFY_RESIZE")
    assert "m1.small" in str(verify["flavor"])
    held = usage(cloud)
    assert sum(v for v, _ in held.values()) == 2
    assert sum(m for _, m in held.values()) == 512 + 2048
    refused(cloud, "server", "stop", "grow")
    cloud.openstack("server", "resize", "confirm", "grow")
    wait_status(cloud, "grow", "ACTIVE")
    grown_on = show(cloud, "grow")["OS-EXT-SRV-ATTR:host"]
    assert usage(cloud)[grown_on] == (1, 2048)
    assert sum(m for _, m in usage(cloud).values()) == 2048

    # A second one, reverted: back to its flavor and host, the new claim gone.
    cloud.openstack("server", "create", "--image", "tiny-image", "--flavor", "m1.tiny",
                    "--nic", "none", "--wait", "undo")
    undo_home = show(cloud, "undo")["OS-EXT-SRV-ATTR:host"]
    before = usage(cloud)
    cloud.openstack("server", "resize", "--flavor", "m1.small", "--wait", "undo")
    wait_status(cloud, "undo", "VERIFY_RESIZE")
    cloud.openstack("server", "resize", "revert", "undo")
    reverted = wait_status(cloud, "undo", "ACTIVE")
    assert reverted["OS-EXT-SRV-ATTR:host"] == undo_home
    assert "m1.tiny" in str(reverted["flavor"])
    assert usage(cloud) == before

    # Cold migration between the two hosts: --wait ends in VERIFY_RESIZE, then confirm.
    cloud.openstack("server", "migrate", "--wait", "undo")
    moved = wait_status(cloud, "undo", "VERIFY_RESIZE")
    cold_dest = moved["OS-EXT-SRV-ATTR:host"]
    assert cold_dest != undo_home
    cloud.openstack("server", "migration", "confirm", "undo")
    wait_status(cloud, "undo", "ACTIVE")
    after_cold = usage(cloud)
    assert after_cold[cold_dest][1] - before[cold_dest][1] == 512
    assert before[undo_home][1] - after_cold[undo_home][1] == 512

    # Live migration: the server stays ACTIVE and moves back.
    cloud.openstack("server", "migrate", "--live-migration", "--wait", "undo")
    live = wait_status(cloud, "undo", "ACTIVE")
    assert live["OS-EXT-SRV-ATTR:host"] == undo_home
    assert usage(cloud) == before

    listed = cloud.openstack_json("server", "migration", "list", "--server", "undo")
    assert [(m["Type"], m["Status"]) for m in listed] == [
        ("live-migration", "completed"), ("migration", "confirmed"), ("resize", "reverted")]
    assert {m["Source Compute"] for m in listed} <= set(HOSTS)
    every = cloud.openstack_json("server", "migration", "list")
    assert len(every) == 4
    assert [m["Type"] for m in cloud.openstack_json(
        "server", "migration", "list", "--type", "resize")] == ["resize", "resize"]

    events = cloud.openstack_json("server", "event", "list", "undo")
    assert [e["Action"] for e in events] == [
        "live-migration", "confirmResize", "migrate", "revertResize", "resize", "create"]
    grow_events = cloud.openstack_json("server", "event", "list", "grow")
    assert [e["Action"] for e in grow_events] == ["confirmResize", "resize", "create"]
