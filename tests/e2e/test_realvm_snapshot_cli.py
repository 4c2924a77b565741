"""Issue 14 on a real guest: a snapshot of a running test guest boots as a new server that
finds what the first guest wrote to its disk.

The user data (the same script for both servers) mounts the guest's disk (``/dev/vda``, the
image's ext2 file system): when it finds no marker file it writes one; when it finds one it
prints it. The first guest writes it, ``server image create --wait`` snapshots the guest
while it runs (paused for the copy, then resumed), and the second server, booted from that
image, prints the first guest's marker on its console. Two boots in all.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest

from tests.e2e.cloud import Cloud
from tests.e2e.test_realvm_cli import cloud, console_until, running_domains

__all__ = ["cloud"]  # the fixture: the session's stratus up on libvirt

pytestmark = [pytest.mark.e2e, pytest.mark.realvm, pytest.mark.serial]

MARKER_SCRIPT = """#!/bin/sh
mkdir -p /mnt/disk
if mount -t ext2 /dev/vda /mnt/disk || mount /dev/vda /mnt/disk; then
    if [ -f /mnt/disk/stratus-marker ]; then
        echo "MARKER-FOUND $(cat /mnt/disk/stratus-marker)"
    else
        echo "@MARKER@" > /mnt/disk/stratus-marker
        sync
        echo "MARKER-WRITTEN @MARKER@"
    fi
    umount /mnt/disk
else
    echo "MARKER-NO-DISK"
fi
"""


@pytest.mark.timeout(1200)
def test_a_snapshot_of_a_running_guest_boots_with_its_disk(cloud: Cloud,
                                                           tmp_path: Path) -> None:
    marker = f"first-guest-{secrets.token_hex(4)}"
    script = tmp_path / "marker.sh"
    script.write_text(MARKER_SCRIPT.replace("@MARKER@", marker))

    first = cloud.openstack_json("server", "create", "--image", "stratus-test-guest",
                                 "--flavor", "m1.tiny", "--network", "private",
                                 "--user-data", str(script), "--wait", "vm1")
    text = console_until(cloud, "vm1", r"^STRATUS-READY", within=300)
    assert f"MARKER-WRITTEN {marker}" in text, text[-2000:]

    cloud.openstack("server", "image", "create", "--name", "vm1-snap", "--wait", "vm1")
    snap = cloud.openstack_json("image", "show", "vm1-snap")
    assert (snap["status"], snap["disk_format"]) == ("active", "qcow2")
    assert snap["properties"]["instance_uuid"] == first["id"]
    shown = cloud.openstack_json("server", "show", "vm1")
    assert (shown["status"], shown["OS-EXT-STS:task_state"]) == ("ACTIVE", None)
    assert first["id"] in running_domains()  # resumed after the copy

    second = cloud.openstack_json("server", "create", "--image", "vm1-snap", "--flavor",
                                  "m1.tiny", "--network", "private", "--user-data",
                                  str(script), "--wait", "vm2")
    assert second["status"] == "ACTIVE"
    text = console_until(cloud, "vm2", r"^STRATUS-USERDATA-END", within=300)
    found = re.search(r"^MARKER-FOUND (\S+)", text, re.MULTILINE)
    assert found is not None, text[-2000:]
    assert found.group(1) == marker

    cloud.openstack("server", "delete", "--wait", "vm1", "vm2")
    cloud.openstack("image", "delete", "vm1-snap")
