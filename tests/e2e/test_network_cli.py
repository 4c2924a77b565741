"""The network server's must-show session with the real ``openstack`` CLI against
``stratus up --network-backend noop`` (IPAM and API; no kernel work), and a server booted
onto the default network through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cloud import Cloud, base_env, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    env = base_env(STRATUS_COMPUTE__HOST="fake")
    instance = Cloud(tmp_path / "data", free_port(), env,
                     args=["up", "--network-backend", "noop"])
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def test_network_session_with_the_real_cli(cloud: Cloud, tmp_path: Path) -> None:
    networks = cloud.openstack_json("network", "list")
    assert [n["Name"] for n in networks] == ["private"]  # made on first start
    assert len(networks[0]["Subnets"]) == 1

    net = cloud.openstack_json("network", "create", "blue")
    assert net["name"] == "blue" and net["status"] == "ACTIVE"
    assert net["admin_state_up"] is True and net["shared"] is False
    subnet = cloud.openstack_json("subnet", "create", "--network", "blue",
                                  "--subnet-range", "10.1.0.0/24", "blue-subnet")
    assert subnet["cidr"] == "10.1.0.0/24" and subnet["gateway_ip"] == "10.1.0.1"
    assert subnet["allocation_pools"] == [{"start": "10.1.0.2", "end": "10.1.0.254"}]
    assert subnet["enable_dhcp"] is True

    port = cloud.openstack_json("port", "create", "--network", "blue", "blue-port")
    assert port["mac_address"].startswith("fa:16:3e:")
    assert port["fixed_ips"][0]["ip_address"].startswith("10.1.0.")
    assert port["fixed_ips"][0]["subnet_id"] == subnet["id"]
    assert port["status"] == "DOWN"
    listed = cloud.openstack_json("port", "list", "--network", "blue")
    assert [(p["ID"], p["Name"], p["MAC Address"]) for p in listed] == [
        (port["id"], "blue-port", port["mac_address"])]
    shown = cloud.openstack_json("port", "show", "blue-port")
    assert shown["id"] == port["id"] and shown["network_id"] == net["id"]
    cloud.openstack("port", "delete", "blue-port")
    assert cloud.openstack_json("port", "list", "--network", "blue") == []

    rule = cloud.openstack_json("security", "group", "rule", "create", "--proto", "tcp",
                                "--dst-port", "22", "default")
    assert rule["protocol"] == "tcp" and rule["port_range_min"] == 22
    assert rule["port_range_max"] == 22 and rule["remote_ip_prefix"] == "0.0.0.0/0"
    duplicate = cloud.openstack("security", "group", "rule", "create", "--proto", "tcp",
                                "--dst-port", "22", "default", check=False)
    assert duplicate.returncode != 0 and "already exists" in duplicate.stderr
    groups = cloud.openstack_json("security", "group", "list")
    assert [g["Name"] for g in groups] == ["default"]

    agents = cloud.openstack_json("network", "agent", "list")
    assert agents == []  # the noop backend runs no agents

    missing = cloud.openstack("network", "show", "nope", check=False)
    assert missing.returncode != 0 and "No Network found for nope" in missing.stderr
    assert [n["Name"] for n in cloud.openstack_json("network", "list")] == ["private",
                                                                            "blue"]

    # A server on the default network: its port is made, bound and wired (noop: at once).
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    cloud.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                    "--container-format", "bare", "tiny-image")
    server = cloud.openstack_json("server", "create", "--image", "tiny-image", "--flavor",
                                  "m1.tiny", "--network", "private", "--wait", "vm1")
    assert server["status"] == "ACTIVE"
    ports = cloud.openstack_json("port", "list", "--server", "vm1", "--long")
    assert len(ports) == 1 and ports[0]["Status"] == "ACTIVE"
    address = ports[0]["Fixed IP Addresses"][0]["ip_address"]
    assert address.startswith("10.0.0.")
    shown = cloud.openstack_json("server", "show", "vm1")
    assert address in str(shown["addresses"])
    cloud.openstack("server", "delete", "--wait", "vm1")
    assert cloud.openstack_json("port", "list", "--network", "private") == []  # freed
    cloud.openstack("subnet", "delete", "blue-subnet")
    cloud.openstack("network", "delete", "blue")
    assert [n["Name"] for n in cloud.openstack_json("network", "list")] == ["private"]
