"""DHCP and metadata on a real ``stratus up`` (linuxbridge backend), driven by the real
``openstack`` CLI, without a VM.

A network and subnet are made with the CLI, a server is booted on it (fake driver) with user
data; a namespace guest with the server port's MAC then gets that port's address and the
route to 169.254.169.254 from the network's dnsmasq, and reads ``meta_data.json`` and
``user_data`` through the proxy. ``network agent list`` shows both agents alive. When the
cloud stops, no namespace, bridge, tap or dnsmasq of it is left, and ``stratus trace`` shows
the boot with the network server's messages to the DHCP and L2 agents.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stratus.network.agents import linux
from stratus.network.objects import bridge_name, dhcp_namespace, tap_name
from tests.e2e.cloud import BIN, Cloud, running_cloud
from tests.integration.network_agents.conftest import require_root_and_dnsmasq
from tests.integration.network_agents.guest import Guest

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    require_root_and_dnsmasq()
    # The fake virt driver: the guest here is a namespace, not a VM.
    with running_cloud(tmp_path, STRATUS_NETWORK__BACKEND="linuxbridge",
                       STRATUS_COMPUTE__VIRT_DRIVER="fake",
                       STRATUS_COMPUTE__HOST=f"e2e-{uuid.uuid4().hex[:8]}") as instance:
        yield instance


async def _guest_session(bridge: str, mac: str, workdir: Path) -> dict[str, object]:
    async with Guest(bridge, mac, workdir) as guest:
        lease = await guest.dhcp()
        routes = await guest.routes()
        base = "http://169.254.169.254"
        meta = await guest.get(f"{base}/openstack/latest/meta_data.json")
        user_data = await guest.get(f"{base}/openstack/latest/user_data")
        return {"lease": lease, "routes": routes, "meta": (meta.status_code, meta.json()),
                "user_data": (user_data.status_code, user_data.content)}


def test_guest_dhcp_and_metadata_with_the_real_cli(cloud: Cloud, tmp_path: Path) -> None:
    prefix = f"10.{uuid.uuid4().int % 180 + 64}.{uuid.uuid4().int % 250}"
    network = cloud.openstack_json("network", "create", "e2e-net")
    cloud.openstack("subnet", "create", "--network", "e2e-net", "--subnet-range",
                    f"{prefix}.0/24", "e2e-subnet")
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    cloud.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                    "--container-format", "bare", "tiny-image")
    user_data = tmp_path / "user-data"
    user_data.write_bytes(b"#cloud-config\nhostname: e2e-guest\n")
    server = cloud.openstack_json("server", "create", "--image", "tiny-image", "--flavor",
                                  "m1.tiny", "--nic", f"net-id={network['id']}",
                                  "--user-data", str(user_data), "--wait", "vm1")
    assert server["status"] == "ACTIVE"
    ports = cloud.openstack_json("port", "list", "--server", "vm1")
    assert len(ports) == 1
    port = cloud.openstack_json("port", "show", ports[0]["ID"])
    assert port["status"] == "ACTIVE"
    address = port["fixed_ips"][0]["ip_address"]

    result = asyncio.run(_guest_session(bridge_name(network["id"]), port["mac_address"],
                                        tmp_path / "guest"))
    lease = result["lease"]
    assert isinstance(lease, dict) and lease["ip"] == address
    routes = result["routes"]
    assert isinstance(routes, dict) and "169.254.169.254/32" in routes
    assert result["meta"] == (200, result["meta"][1])  # type: ignore[index]
    meta = result["meta"][1]  # type: ignore[index]
    assert meta["uuid"] == server["id"]
    assert result["user_data"] == (200, user_data.read_bytes())

    agents = cloud.openstack_json("network", "agent", "list")
    kinds = {(a["Agent Type"], a["Alive"]) for a in agents}
    assert {("DHCP agent", True), ("Linux bridge agent", True),
            ("Metadata agent", True)} <= kinds

    assert cloud.stop() == 0
    assert not linux.namespace_exists(dhcp_namespace(network["id"]))
    assert linux.get_link(bridge_name(network["id"])) is None
    assert linux.get_link(tap_name(port["id"])) is None
    dnsmasqs = [pid for pid in os.listdir("/proc") if pid.isdigit()
                and str(cloud.data_dir) in _cmdline(pid) and "dnsmasq" in _cmdline(pid)]
    assert dnsmasqs == []

    # The boot's trace (its spans were written when the cloud stopped) has the network's side.
    traced = subprocess.run([str(BIN / "stratus"), "trace", server["id"], "--json",
                             "--data-dir", str(cloud.data_dir)], capture_output=True, text=True,
                            env=cloud.env, timeout=60, check=True)
    document = json.loads(traced.stdout)
    units = {row["unit"] for row in document["steps"]
             if row["trace_id"] == document["steps"][0]["trace_id"]}
    assert units >= {"compute-api", "scheduler", "compute-agent", "network-api", "dhcp-agent",
                     "l2-agent"}
    assert {27, 28, 29, 30, 31, 34, 35, 36, 38, 43} <= set(document["seed_steps_seen"])
    assert len(document["seed_steps_seen"]) >= 40, document["seed_steps_not_seen"]


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""
