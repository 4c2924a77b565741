"""Routers and floating IPs with the real ``openstack`` CLI and openstacksdk against
``stratus up --network-backend noop`` (IPAM and API; no kernel work) and the fake virt
driver: an external network, a router joining it to the default network, a floating IP on a
server, which the server's addresses then show (``OS-EXT-IPS:type: floating``), and
everything taken apart again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cloud import Cloud, base_env, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    env = base_env(STRATUS_COMPUTE__HOST="fake")
    instance = Cloud(tmp_path / "data", free_port(), env,
                     args=["up", "--network-backend", "noop"])
    instance.start(timeout=120)  # (a busy machine starts slowly)
    try:
        yield instance
    finally:
        instance.stop()


def _addresses(cloud: Cloud, server: str) -> list[str]:
    """The server's addresses on ``private`` as ``openstack server show`` lists them."""
    shown = cloud.openstack_json("server", "show", server)
    addresses: dict[str, list[str]] = shown["addresses"]
    return addresses.get("private", [])


def _until(check: Any, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _sdk_view(cloud: Cloud, server: str) -> dict[str, Any]:
    """openstacksdk's view of the server: its ``addresses`` as Compute answers them and its
    ``public_v4`` (what Ansible's ``auto_ip`` reads)."""
    script = ("import json, openstack, sys\n"
              "conn = openstack.connect(cloud='stratus')\n"
              "server = conn.get_server(sys.argv[1])\n"
              "print(json.dumps({'addresses': server['addresses'],\n"
              "                  'public_v4': server['public_v4']}))\n")
    env = {k: v for k, v in cloud.env.items() if not k.startswith("OS_")}
    env["OS_CLIENT_CONFIG_FILE"] = str(cloud.clouds_yaml)
    result = subprocess.run([sys.executable, "-c", script, server], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    view: dict[str, Any] = json.loads(result.stdout)
    return view


@pytest.mark.timeout(900)  # some 30 CLI runs, each a second or two (more on a busy machine)
def test_router_and_floating_ip_session_with_the_real_cli(cloud: Cloud, tmp_path: Path) -> None:
    public = cloud.openstack_json("network", "create", "--external", "public")
    assert public["router:external"] is True
    cloud.openstack_json("subnet", "create", "--network", "public", "--subnet-range",
                         "172.24.4.0/24", "--no-dhcp", "public-subnet")

    router = cloud.openstack_json("router", "create", "r1")
    assert router["name"] == "r1" and router["status"] == "ACTIVE"
    cloud.openstack("router", "set", "--external-gateway", "public", "r1")
    shown = cloud.openstack_json("router", "show", "r1")
    gateway = shown["external_gateway_info"]
    if isinstance(gateway, str):  # older clients print it as JSON text
        gateway = json.loads(gateway)
    assert gateway["network_id"] == public["id"] and gateway["enable_snat"] is True
    assert gateway["external_fixed_ips"][0]["ip_address"].startswith("172.24.4.")
    cloud.openstack("router", "add", "subnet", "r1", "private-subnet")
    legs = cloud.openstack_json("port", "list", "--router", "r1", "--long")
    interface = [p for p in legs if p["Device Owner"] == "network:router_interface"]
    assert len(interface) == 1
    assert interface[0]["Fixed IP Addresses"][0]["ip_address"] == "10.0.0.1"
    assert [r["Name"] for r in cloud.openstack_json("router", "list")] == ["r1"]

    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    cloud.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                    "--container-format", "bare", "tiny-image")
    server = cloud.openstack_json("server", "create", "--image", "tiny-image", "--flavor",
                                  "m1.tiny", "--network", "private", "--wait", "vm1")
    assert server["status"] == "ACTIVE"
    [fixed] = _addresses(cloud, "vm1")
    [fixed_entry] = _sdk_view(cloud, "vm1")["addresses"]["private"]
    assert fixed_entry["addr"] == fixed and fixed_entry["OS-EXT-IPS:type"] == "fixed"

    fip = cloud.openstack_json("floating", "ip", "create", "public")
    address = fip["floating_ip_address"]
    assert address.startswith("172.24.4.") and fip["status"] == "DOWN"
    cloud.openstack("server", "add", "floating", "ip", "vm1", address)
    associated = cloud.openstack_json("floating", "ip", "show", address)
    assert associated["fixed_ip_address"] == fixed
    assert associated["router_id"] == router["id"]
    assert associated["port_details"]["device_id"] == server["id"]

    # Compute hears network-changed and refreshes the server's addresses.
    _until(lambda: _addresses(cloud, "vm1") == [fixed, address], "the floating address")
    view = _sdk_view(cloud, "vm1")
    assert view["addresses"]["private"] == [
        fixed_entry, {"version": 4, "addr": address, "OS-EXT-IPS:type": "floating",
                      "OS-EXT-IPS-MAC:mac_addr": fixed_entry["OS-EXT-IPS-MAC:mac_addr"]}]
    assert view["public_v4"] == address

    # Shelved (offloaded) and unshelved: the ports bound again keep their floating address,
    # shown as soon as the server is back (no network-changed comes with a rebind).
    cloud.openstack("server", "shelve", "--offload", "--wait", "vm1")
    cloud.openstack("server", "unshelve", "--wait", "vm1")
    assert _addresses(cloud, "vm1") == [fixed, address]

    busy = cloud.openstack("router", "delete", "r1", check=False)
    assert busy.returncode != 0
    cloud.openstack("floating", "ip", "delete", address)
    _until(lambda: _addresses(cloud, "vm1") == [fixed], "the floating address to go")
    assert cloud.openstack_json("floating", "ip", "list") == []

    cloud.openstack("server", "delete", "--wait", "vm1")
    cloud.openstack("router", "remove", "subnet", "r1", "private-subnet")
    cloud.openstack("router", "delete", "r1")
    assert cloud.openstack_json("router", "list") == []
    cloud.openstack("subnet", "delete", "public-subnet")
    cloud.openstack("network", "delete", "public")
    assert cloud.openstack_json("port", "list") == []
