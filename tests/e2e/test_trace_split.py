"""Split mode with the network agents: one boot's trace across every process.

Every unit is a process of its own on RabbitMQ and PostgreSQL: the APIs (identity, image,
placement, compute, network, metadata) in one, a scheduler, a conductor, a compute agent
(fake driver) and the DHCP and L2 agents (linuxbridge) of the same host. A server is booted
with the real ``openstack`` CLI; a namespace guest with its port's MAC takes its address from
the network's dnsmasq and reads its metadata through the proxy. ``stratus trace`` then shows
the seed's flow under one trace id across all of those processes: at least 40 of the 58 seed
steps, the DHCP reply and the metadata request among them, and the ACTIVE writes within the
client's own POST → ACTIVE time. When the agents stop, nothing of theirs is left.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from stratus.network.agents import linux
from stratus.network.objects import bridge_name, dhcp_namespace
from tests.e2e.cloud import BIN, Cloud, base_env, free_port
from tests.e2e.split import Fleet
from tests.integration.network_agents.conftest import require_root_and_dnsmasq
from tests.integration.network_agents.guest import Guest

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]

API_UNITS = ["identity-api", "image-api", "placement-api", "compute-api", "network-api",
             "metadata-api"]


async def _guest_reads_its_metadata(bridge: str, mac: str, workdir: Path) -> tuple[str, int]:
    async with Guest(bridge, mac, workdir) as guest:
        lease = await guest.dhcp()
        meta = await guest.get("http://169.254.169.254/openstack/latest/meta_data.json")
        return lease["ip"], meta.status_code


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_split_boot_is_traced_across_every_process_with_the_network_agents(
        tmp_path: Path, db_url: str, rabbit_url: str) -> None:
    require_root_and_dnsmasq()
    data_dir = tmp_path / "data"
    port = free_port()
    host = f"trace-{uuid.uuid4().hex[:8]}"
    env = base_env(STRATUS_DATABASE_URL=db_url, STRATUS_BUS_URL=rabbit_url,
                   STRATUS_ADMIN_PASSWORD=uuid.uuid4().hex,
                   STRATUS_COMPUTE__REPORT_INTERVAL="1", STRATUS_COMPUTE__VIRT_DRIVER="fake",
                   STRATUS_COMPUTE__HOST=host, STRATUS_NETWORK__BACKEND="linuxbridge",
                   STRATUS_NETWORK__AGENT_REPORT_INTERVAL="1",
                   # Every process must agree on the proxy's target and key before any of
                   # them would make one up in the shared data directory.
                   STRATUS_METADATA__URL=f"http://127.0.0.1:{port}/metadata",
                   STRATUS_METADATA__SHARED_SECRET=uuid.uuid4().hex)
    for command in (["db", "upgrade"], ["bootstrap", "--port", str(port)]):
        subprocess.run([str(BIN / "stratus"), *command, "--data-dir", str(data_dir)],
                       env=env, check=True, capture_output=True, timeout=120)
    api = Cloud(data_dir, port, env, args=["serve", *API_UNITS])
    # The compute host reaches the network API through the catalog, so through identity.
    fleet = Fleet(data_dir, {**env, "STRATUS_AUTH__IDENTITY_URL": f"{api.url}/identity/v3"})
    api.start(timeout=60)
    network: dict[str, str] | None = None
    try:
        fleet.start("scheduler-1", "scheduler")
        fleet.start("conductor-1", "conductor")
        fleet.start("agent-1", "compute-agent")
        fleet.start("net-agents-1", "dhcp-agent", "l2-agent")
        _wait_for_agents(api)

        prefix = f"10.{uuid.uuid4().int % 180 + 64}.{uuid.uuid4().int % 250}"
        network = api.openstack_json("network", "create", "trace-net")
        api.openstack("subnet", "create", "--network", "trace-net", "--subnet-range",
                      f"{prefix}.0/24", "trace-subnet")
        disk = tmp_path / "disk.raw"
        disk.write_bytes(b"\0" * 65536)
        api.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                      "--container-format", "bare", "trace-image")
        started = time.monotonic()
        server = api.openstack_json("server", "create", "--image", "trace-image", "--flavor",
                                    "m1.tiny", "--nic", f"net-id={network['id']}", "--wait",
                                    "traced")
        client_ms = (time.monotonic() - started) * 1000
        assert server["status"] == "ACTIVE"
        ports = api.openstack_json("port", "list", "--server", "traced")
        port_details = api.openstack_json("port", "show", ports[0]["ID"])

        address, metadata_status = asyncio.run(_guest_reads_its_metadata(
            bridge_name(network["id"]), port_details["mac_address"], tmp_path / "guest"))
        assert address == port_details["fixed_ips"][0]["ip_address"]
        assert metadata_status == 200
    finally:
        # Stopped before the trace is read: each process writes its spans on the way out.
        fleet.stop_all()
        api.stop()
    assert network is not None
    assert not linux.namespace_exists(dhcp_namespace(network["id"]))
    assert linux.get_link(bridge_name(network["id"])) is None

    traced = subprocess.run([str(BIN / "stratus"), "trace", server["id"], "--json",
                             "--data-dir", str(data_dir)], capture_output=True, text=True,
                            env=env, timeout=60, check=True)
    document = json.loads(traced.stdout)
    boot = [row for row in document["steps"]
            if row["trace_id"] == document["steps"][0]["trace_id"]]
    assert boot[0]["what"] == "POST /v2.1/servers", boot[0]
    units = {row["unit"] for row in boot}
    assert units >= {"compute-api", "scheduler", "conductor", "compute-agent", "network-api",
                     "dhcp-agent", "l2-agent", "metadata-api"}, units
    # The network's side (messages to the agents, dnsmasq, the tap, the DHCP reply) and the
    # guest's metadata request through the proxy, all in the boot's trace.
    assert {27, 28, 29, 30, 31, 34, 35, 36, 43, 52, 53, 54} <= set(
        document["seed_steps_seen"]), document["seed_steps_seen"]
    assert len(document["seed_steps_seen"]) >= 40, document["seed_steps_not_seen"]
    activations = [row for row in boot if row["step"] == "46-47"]
    assert activations
    assert all(row["start_ms"] + row["duration_ms"] <= client_ms for row in activations)


def _wait_for_agents(api: Cloud) -> None:
    """Until the host's compute service and both of its network agents report alive."""
    deadline = time.monotonic() + 60
    while True:
        agents = api.openstack_json("network", "agent", "list")
        alive = {a["Agent Type"] for a in agents if a["Alive"]}
        services = api.openstack_json("compute", "service", "list", "--service",
                                      "nova-compute")
        if {"DHCP agent", "Linux bridge agent"} <= alive \
                and any(s["State"] == "up" for s in services):
            return
        assert time.monotonic() < deadline, (agents, services)
        time.sleep(0.5)
