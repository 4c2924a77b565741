"""Issue 7 end to end: the real ``openstack`` CLI boots a real guest on ``stratus up``.

libvirt/QEMU (TCG here) runs the project's test guest on the ``private`` network; dnsmasq in
the network's namespace gives it its port's address, the metadata proxy brings its requests
to the metadata API, and the guest reports on its serial console what it learnt: address,
uuid, hostname and its user-data script's output, read back with ``console log show``.
Booted with a key pair, the guest puts the key in root's ``authorized_keys`` and starts its
SSH server, which answers on port 22 from the network's namespace.
``stratus trace`` shows the guest's DHCP reply and its metadata requests through the proxy in
the boot's trace; ``stratus why --os-cloud`` asks the cloud's operator route.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stratus.compute.virt.libvirt import host as libvirt_host
from stratus.network.agents import linux
from stratus.network.objects import dhcp_namespace
from tests.e2e.cloud import BIN, Cloud

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
        # Listed active in one call: asking each domain of the machine (other tests' too)
        # whether it is active fails for one removed in between.
        return {d.UUIDString()
                for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)}
    finally:
        conn.close()


def ssh_banner(namespace: str, address: str) -> bytes:
    """The first line an SSH server at ``address``:22 sends, connecting from ``namespace``."""
    with linux.entered(namespace):
        sock = socket.create_connection((address, 22), timeout=15)
    with sock:
        return sock.recv(256).split(b"\r\n")[0]


def wait_status(cloud: Cloud, name: str, status: str, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cloud.openstack_json("server", "show", name)["status"] == status:
            return
        time.sleep(1)
    raise AssertionError(f"{name} never reached {status}")


def trace_until(cloud: Cloud, key: str, ready: Callable[[dict[str, Any]], bool],
                within: float = 60) -> dict[str, Any]:
    """``stratus trace KEY --json`` once ``ready`` says it has what is wanted (spans reach the
    store about a second after they end; the DHCP reply once the agent read dnsmasq's
    report)."""
    deadline = time.monotonic() + within
    while True:
        done = subprocess.run([str(BIN / "stratus"), "trace", key, "--json", "--data-dir",
                               str(cloud.data_dir)], capture_output=True, text=True,
                              env=cloud.env, timeout=60)
        if done.returncode == 0:
            document: dict[str, Any] = json.loads(done.stdout)
            if ready(document):
                return document
        if time.monotonic() > deadline:
            raise AssertionError(done.stdout[-4000:] + done.stderr)
        time.sleep(1)


@pytest.mark.timeout(900)  # three TCG boots and a restart of the cloud on a shared machine
def test_guest_gets_its_address_and_metadata_and_runs_its_user_data(
        cloud: Cloud, tmp_path: Path) -> None:
    published = cloud.openstack_json("image", "show", "stratus-test-guest")
    assert (published["status"], published["visibility"], published["disk_format"],
            published["container_format"]) == ("active", "public", "qcow2", "bare")
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho \"user-data ran as $(id -u) on $(hostname)\"\n"
                      "echo answer=$((6 * 7))\n")

    # A key pair the cloud makes: its public key reaches the guest by the metadata service;
    # a group of the guest's own lets SSH in (the default one lets in only its members).
    cloud.openstack("keypair", "create", "vm1-key")
    group = cloud.openstack_json("security", "group", "create", "vm1-ssh")["id"]
    cloud.openstack("security", "group", "rule", "create", "--ingress", "--protocol", "tcp",
                    "--dst-port", "22", "--remote-ip", "0.0.0.0/0", group)
    server = cloud.openstack_json("server", "create", "--image", "stratus-test-guest",
                                  "--flavor", "m1.tiny", "--network", "private",
                                  "--key-name", "vm1-key", "--security-group", group,
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
    assert "STRATUS-SSH up" in text
    network = cloud.openstack_json("network", "show", "private")["id"]
    assert ssh_banner(dhcp_namespace(network), ip).startswith(b"SSH-2.0-dropbear")

    # The boot's trace: the guest's DHCP reply from dnsmasq (seed step 31) and its metadata
    # requests through the proxy (52, 54) to metadata-api (53), in the boot's own trace.
    mac = ports[0]["MAC Address"]
    document = trace_until(cloud, server_id, lambda d: any(
        r["step"] == "53" and r["unit"] == "metadata-api" and r["what"].endswith("/user_data")
        for r in d["steps"]) and any(r["step"] == "31" for r in d["steps"]))
    steps = document["steps"]
    boot = steps[0]
    assert boot["what"] == "POST /v2.1/servers" and boot["step"] == "4,7"
    replies = [r for r in steps if r["step"] == "31"]
    assert [(r["source"], r["target"], r["what"], r["unit"], r["trace_id"])
            for r in replies][:1] == [("dnsmasq", "dhcp-agent", f"DHCP reply to {mac} {ip}",
                                       "dhcp-agent", boot["trace_id"])]
    for path in ("/openstack/latest/meta_data.json", "/openstack/latest/user_data"):
        assert any((r["source"], r["target"], r["what"], r["outcome"], r["trace_id"]) == (
            "guest", "metadata-proxy", f"GET {path}", "200", boot["trace_id"])
            for r in steps if r["step"] == "52,54"), path
        assert any((r["source"], r["target"], r["what"], r["outcome"], r["trace_id"]) == (
            "metadata-proxy", "metadata-api", f"GET /metadata{path}", "200", boot["trace_id"])
            for r in steps if r["step"] == "53" and r["unit"] == "metadata-api"), path
    spawn = next(r for r in steps if r["step"] == "43-44")
    assert spawn["start_ms"] < replies[0]["start_ms"]  # the guest asks once it runs
    assert {31, 52, 53, 54} <= set(document["seed_steps_seen"])
    assert len(document["seed_steps_seen"]) >= 40, document["seed_steps_not_seen"]

    # ``stratus why --os-cloud``: the cloud's operator route finds nothing wrong.
    why = subprocess.run([str(BIN / "stratus"), "why", server_id, "--json", "--os-cloud",
                          "stratus", "--data-dir", str(cloud.data_dir)], capture_output=True,
                         text=True, env=cloud.env, timeout=60)
    assert why.returncode == 0, why.stdout + why.stderr
    assert json.loads(why.stdout)["verdict"] == "fine"
    assert json.loads(why.stdout)["server"]["host"] == shown["OS-EXT-SRV-ATTR:host"]

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
    cloud.openstack("keypair", "delete", "vm1-key")
    cloud.openstack("security", "group", "delete", group)
    assert server_id not in domains()
    assert cloud.openstack_json("port", "list", "--device-id", server_id) == []
