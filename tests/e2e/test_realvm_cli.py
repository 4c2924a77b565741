"""Issue 7 end to end: the real ``openstack`` CLI boots a real guest on ``stratus up``.

libvirt/QEMU (TCG here) runs the project's test guest on the ``private`` network; dnsmasq in
the network's namespace gives it its port's address, the metadata proxy brings its requests
to the metadata API, and the guest reports on its serial console what it learnt: address,
uuid, hostname and its user-data script's output, read back with ``console log show``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from stratus.compute.virt.libvirt import host as libvirt_host
from tests.e2e.cloud import Cloud

pytestmark = [pytest.mark.e2e, pytest.mark.realvm, pytest.mark.serial]


@pytest.fixture
def cloud(realvm_cloud: Cloud) -> Cloud:
    """The session's ``stratus up --with-test-image`` on libvirt (``realvm_cloud`` in
    tests/e2e/conftest.py), for this module's tests and the modules that import it."""
    return realvm_cloud


def console_until(cloud: Cloud, name: str, marker: str, within: float = 120) -> str:
    deadline = time.monotonic() + within
    text = ""
    while time.monotonic() < deadline:
        text = cloud.openstack("console", "log", "show", name).stdout
        if re.search(marker, text, re.MULTILINE):
            return text
        time.sleep(1)
    raise AssertionError(f"{marker!r} never showed on {name}'s console:\n{text}")


def domains() -> set[str]:
    libvirt = libvirt_host.libvirt_module()
    conn = libvirt.open(libvirt_host.DEFAULT_URI)
    try:
        return {d.UUIDString() for d in conn.listAllDomains(0)}
    finally:
        conn.close()


def running_domains() -> set[str]:
    libvirt = libvirt_host.libvirt_module()
    conn = libvirt.open(libvirt_host.DEFAULT_URI)
    try:
        return {d.UUIDString() for d in conn.listAllDomains(0) if d.isActive()}
    finally:
        conn.close()


def wait_status(cloud: Cloud, name: str, status: str, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cloud.openstack_json("server", "show", name)["status"] == status:
            return
        time.sleep(1)
    raise AssertionError(f"{name} never reached {status}")


def test_guest_gets_its_address_and_metadata_and_runs_its_user_data(
        cloud: Cloud, tmp_path: Path) -> None:
    published = cloud.openstack_json("image", "show", "stratus-test-guest")
    assert (published["status"], published["visibility"], published["disk_format"],
            published["container_format"]) == ("active", "public", "qcow2", "bare")
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho \"user-data ran as $(id -u) on $(hostname)\"\n"
                      "echo answer=$((6 * 7))\n")

    server = cloud.openstack_json("server", "create", "--image", "stratus-test-guest",
                                  "--flavor", "m1.tiny", "--network", "private",
                                  "--user-data", str(script), "--wait", "vm1")
    assert server["status"] == "ACTIVE"
    server_id = server["id"]
    shown = cloud.openstack_json("server", "show", "vm1")
    addresses = shown["addresses"]
    ip = (addresses["private"][0] if isinstance(addresses, dict)
          else re.search(r"private=([\d.]+)", str(addresses)).group(1))  # type: ignore[union-attr]
    ports = cloud.openstack_json("port", "list", "--device-id", server_id)
    assert [p["Fixed IP Addresses"][0]["ip_address"] for p in ports] == [ip]

    text = console_until(cloud, "vm1", r"^STRATUS-READY")
    assert f"STRATUS-NET iface=eth0 ip={ip}/" in text
    assert "STRATUS-METADATA ok" in text
    guest = re.search(r"^STRATUS-GUEST ip=(\S+) uuid=(\S+) hostname=(\S+)", text, re.MULTILINE)
    assert guest is not None
    assert guest.group(1) == ip and guest.group(2) == server_id
    assert guest.group(3).split(".")[0] == "vm1"
    user_data = text.split("STRATUS-USERDATA-BEGIN", 1)[1].split("STRATUS-USERDATA-END")[0]
    assert f"user-data ran as 0 on {guest.group(3)}" in user_data
    assert "answer=42" in user_data
    assert "STRATUS-USERDATA-END rc=0" in text

    # Power actions reach the real guest: a clean ACPI shutdown, a boot, a hard reset.
    cloud.openstack("server", "stop", "vm1")
    wait_status(cloud, "vm1", "SHUTOFF")
    assert server_id not in running_domains()
    console_until(cloud, "vm1", r"^STRATUS-POWEROFF")
    cloud.openstack("server", "start", "vm1")
    wait_status(cloud, "vm1", "ACTIVE")
    console_until(cloud, "vm1", r"(?s)STRATUS-READY.*STRATUS-READY")
    cloud.openstack("server", "reboot", "--hard", "--wait", "vm1")
    text = console_until(cloud, "vm1", r"(?s)(STRATUS-INIT.*){3}")

    # The whole process dies (agents included) while the guest runs; the guest does not
    # notice, and after a restart the server is still ACTIVE and still obeys.
    assert cloud.process is not None
    cloud.process.kill()
    cloud.process.wait()
    assert server_id in running_domains()
    cloud.start(timeout=120)
    assert cloud.openstack_json("server", "show", "vm1")["status"] == "ACTIVE"
    after = console_until(cloud, "vm1", r"^STRATUS-READY")
    assert after.count("STRATUS-INIT") == text.count("STRATUS-INIT")  # not rebooted
    cloud.openstack("server", "stop", "vm1")
    wait_status(cloud, "vm1", "SHUTOFF")
    assert server_id not in running_domains()

    cloud.openstack("server", "delete", "--wait", "vm1")
    assert server_id not in domains()
    assert cloud.openstack_json("port", "list", "--device-id", server_id) == []
