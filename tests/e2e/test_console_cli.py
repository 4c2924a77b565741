"""``openstack console url show`` against ``stratus up`` on the fake hypervisor: its guests
have no console, and the CLI shows Nova's 409 with a message that says why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cloud import Cloud, running_cloud

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    with running_cloud(tmp_path, STRATUS_COMPUTE__VIRT_DRIVER="fake",
                       STRATUS_NETWORK__BACKEND="noop") as instance:
        yield instance


def test_console_url_show_on_the_fake_driver_is_a_clear_409(cloud: Cloud,
                                                             tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    cloud.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                    "--container-format", "bare", "tiny-image")
    cloud.openstack("server", "create", "--image", "tiny-image", "--flavor", "m1.tiny",
                    "--nic", "none", "--wait", "vm1")
    for flag in ("--novnc", "--serial"):
        shown = cloud.openstack("console", "url", "show", flag, "vm1", check=False)
        assert shown.returncode != 0
        assert "409" in shown.stderr and "fake driver" in shown.stderr, shown.stderr
    # A console type this cloud does not serve: Nova's 400.
    spice = cloud.openstack("console", "url", "show", "--spice", "vm1", check=False)
    assert spice.returncode != 0
    assert "400" in spice.stderr and "Unavailable console type spice-html5" in spice.stderr
