"""The issue's must-show, end to end in one process, without a VM: a server booted through
compute-api (fake driver) on a network of the real network-api; the l2-agent plugs its tap;
a namespace guest with the port's MAC gets the port's address and the route to
169.254.169.254 from the network's dnsmasq (udhcpc, option 121) and reads its metadata
through the proxy from the real metadata-api. A request to metadata-api that did not come
through the proxy (a forged signature) is refused.

All units are built by ``stratus.units`` as ``stratus up`` builds them; service-to-service
HTTP (the proxy's requests to metadata-api included) is routed into the same app.

The guest's DHCP reply and its metadata requests show in the boot's trace (seed steps 31
and 52-54), as ``stratus trace`` reads it.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stratus.core.config import Settings
from stratus.core.spanstore import SpanStore, SpanStoreExporter
from stratus.core.trace_table import seed_coverage, table
from stratus.network.objects import bridge_name, tap_name
from stratus.units import UNITS
from tests.integration.asgi import admin_token, served_stack
from tests.integration.network_agents.conftest import (
    eventually,
    hosts_text,
    require_root_and_dnsmasq,
)
from tests.integration.network_agents.guest import Guest

ADMIN_PASSWORD = "metadata-flow-admin-pw"
SECRET = "metadata-flow-secret"
ROOT = "http://test"
NET = "/network/v2.0"
ALL_UNITS = ["identity-api", "image-api", "compute-api", "conductor", "scheduler",
             "compute-agent", "network-api", "metadata-api", "dhcp-agent", "l2-agent"]


@dataclass
class Cloud:
    client: httpx.AsyncClient
    headers: dict[str, str]
    project_id: str
    state_dir: Path

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, path, headers=self.headers, **kwargs)

    async def server_status(self, server_id: str, status: str,
                            within: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            response = await self.call("GET", f"/compute/v2.1/servers/{server_id}")
            if status == "DELETED" and response.status_code == 404:
                return {}
            server: dict[str, Any] = response.json()["server"]
            if server["status"] == status:
                return server
            assert server["status"] != "ERROR", server.get("fault")
            assert time.monotonic() < deadline, f"{server_id} stuck in {server['status']}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def cloud(db_url: str, tmp_path: Path) -> AsyncIterator[Cloud]:
    require_root_and_dnsmasq()
    missing = [u for u in ALL_UNITS if u not in UNITS]
    assert not missing, f"units not built yet: {missing}"
    host = f"flow-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url=ROOT,
                        admin_password=ADMIN_PASSWORD, identity={"bcrypt_rounds": 4},
                        compute={"host": host, "fake_hosts": 1, "virt_driver": "fake"},
                        network={"backend": "linuxbridge",
                                 "firewall_table": f"sgtest-{uuid.uuid4().hex[:8]}"},
                        metadata={"shared_secret": SECRET})
    async with served_stack(settings, ALL_UNITS) as (_, app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=ROOT) as client:
        token, project_id = await admin_token(client, ADMIN_PASSWORD)
        yield Cloud(client, {"X-Auth-Token": token}, project_id, settings.dhcp_state_dir)


async def upload_image(cloud: Cloud) -> str:
    created = await cloud.call("POST", "/image/v2/images", json={
        "name": "tiny", "disk_format": "raw", "container_format": "bare"})
    assert created.status_code == 201, created.text
    image_id: str = created.json()["id"]
    upload = await cloud.client.put(
        f"/image/v2/images/{image_id}/file", content=b"\0" * 4096,
        headers={**cloud.headers, "Content-Type": "application/octet-stream"})
    assert upload.status_code == 204, upload.text
    return image_id


async def test_guest_reads_its_metadata_through_the_proxy(
        cloud: Cloud, tmp_path: Path, kernel_cleanup: Callable[..., None],
        span_exporter: InMemorySpanExporter) -> None:
    network = (await cloud.call("POST", f"{NET}/networks", json={"network": {
        "name": f"flow-{uuid.uuid4().hex[:6]}"}})).json()["network"]
    kernel_cleanup(network=network["id"], directory=cloud.state_dir / network["id"])
    prefix = f"10.{uuid.uuid4().int % 180 + 64}.{uuid.uuid4().int % 250}"
    subnet = await cloud.call("POST", f"{NET}/subnets", json={"subnet": {
        "network_id": network["id"], "cidr": f"{prefix}.0/24", "ip_version": 4}})
    assert subnet.status_code == 201, subnet.text
    image_id = await upload_image(cloud)
    user_data = b"#cloud-config\nhostname: flow-guest\n"
    started = time.monotonic()
    created = await cloud.call("POST", "/compute/v2.1/servers", json={"server": {
        "name": "flow-vm", "imageRef": image_id, "flavorRef": "1",
        "networks": [{"uuid": network["id"]}],
        "user_data": base64.b64encode(user_data).decode()}})
    assert created.status_code == 202, created.text
    server_id = created.json()["server"]["id"]
    await cloud.server_status(server_id, "ACTIVE")
    client_ms = (time.monotonic() - started) * 1000

    ports = (await cloud.call("GET", f"{NET}/ports?device_id={server_id}")).json()["ports"]
    assert len(ports) == 1
    port = ports[0]
    kernel_cleanup(device=tap_name(port["id"]))
    assert port["status"] == "ACTIVE"
    address = port["fixed_ips"][0]["ip_address"]
    await eventually(lambda: address in hosts_text(cloud.state_dir / network["id"]),
                     message="the server's port in the hosts directory")

    async with Guest(bridge_name(network["id"]), port["mac_address"],
                     tmp_path / "guest") as guest:
        lease = await guest.dhcp()
        assert lease["ip"] == address
        assert "169.254.169.254/32" in await guest.routes()

        base = "http://169.254.169.254"
        meta = await guest.get(f"{base}/openstack/latest/meta_data.json")
        assert meta.status_code == 200, meta.text
        assert meta.json()["uuid"] == server_id
        assert meta.json()["project_id"] == cloud.project_id
        data = await guest.get(f"{base}/openstack/latest/user_data")
        assert data.status_code == 200, data.text
        assert data.content == user_data
        versions = await guest.get(f"{base}/openstack")
        assert versions.status_code == 200 and "latest" in versions.text.split("\n")

        # An address no port holds: answered, and no span (it would name no server).
        proxied = sum(s.name.startswith("metadata-proxy")
                      for s in span_exporter.get_finished_spans())
        # Not a fixed address: IPAM picks at random, and a port may hold any of them.
        held = {ip["ip_address"] for p in (await cloud.call(
            "GET", f"{NET}/ports?network_id={network['id']}")).json()["ports"]
            for ip in p["fixed_ips"]}
        unheld = next(f"{prefix}.{n}" for n in range(250, 1, -1)
                      if f"{prefix}.{n}" not in held)
        await guest.add_address(f"{unheld}/24")
        stranger = await guest.get(f"{base}/openstack/latest/meta_data.json", source=unheld)
        assert stranger.status_code == 404
        assert sum(s.name.startswith("metadata-proxy")
                   for s in span_exporter.get_finished_spans()) == proxied

    # The boot's trace shows the guest's DHCP reply (read from dnsmasq's lease script about
    # a second later) and its metadata requests through the proxy to metadata-api.
    await eventually(lambda: any(s.name == "dhcp.reply"
                                 for s in span_exporter.get_finished_spans()),
                     message="the DHCP reply's span")
    store = SpanStore(tmp_path / "spans")
    SpanStoreExporter(store).export(span_exporter.get_finished_spans())
    rows = table(store.trace(store.traces_of(server_id)))
    store.close()
    boot = rows[0].trace_id
    assert rows[0].what == "POST /v2.1/servers"
    (reply,) = [r for r in rows if r.step == "31"]
    assert (reply.source, reply.target, reply.unit, reply.trace_id) == (
        "dnsmasq", "dhcp-agent", "dhcp-agent", boot)
    assert reply.what == f"DHCP reply to {port['mac_address']} {address}"
    asked = [r for r in rows if r.step == "52,54"]
    assert [(r.source, r.target, r.what, r.outcome) for r in asked] == [
        ("guest", "metadata-proxy", "GET /openstack/latest/meta_data.json", "200"),
        ("guest", "metadata-proxy", "GET /openstack/latest/user_data", "200"),
        ("guest", "metadata-proxy", "GET /openstack", "200")]
    forwarded = [r for r in rows if r.step == "53"]
    assert {(r.source, r.target) for r in forwarded} == {("metadata-proxy", "metadata-api")}
    served = [r for r in forwarded if r.unit == "metadata-api"]
    assert [r.what for r in served] == ["GET /metadata/openstack/latest/meta_data.json",
                                        "GET /metadata/openstack/latest/user_data",
                                        "GET /metadata/openstack"]
    assert {r.trace_id for r in [*asked, *forwarded]} == {boot}
    # Each after the one before: the reply, then the requests in the order the guest sent.
    assert reply.start_ms < asked[0].start_ms < served[0].start_ms < asked[1].start_ms
    seen, _ = seed_coverage(rows)
    assert {31, 52, 53, 54} <= set(seen)
    # All in one process with the real network agents: the flow in the seed's order, in one
    # trace through every unit, the ACTIVE write within the time the client measured.
    assert len(seen) >= 40, seen
    flow = [r for r in rows if r.trace_id == boot]
    steps = [r.step for r in flow]
    # (Each step here follows the one before it causally; the agents' own steps run beside
    # the host's, in no fixed order with them. The wait for the ports' plugging (38) is part
    # of the spawn (43-44), as in Nova's driver: a driver may start the guest paused meanwhile.)
    wanted = ["4,7", "5", "6", "8", "9-11", "12", "13", "26,37", "27", "28",
              "43-44", "38", "45", "46-47", "31", "52,54"]
    positions = [steps.index(step) for step in wanted]
    assert positions == sorted(positions), steps
    spawn, plugged = (next(r for r in flow if r.step == step) for step in ("43-44", "38"))
    assert plugged.start_ms + plugged.duration_ms <= spawn.start_ms + spawn.duration_ms
    assert {r.unit for r in flow} >= {"compute-api", "scheduler", "conductor", "compute-agent",
                                      "network-api", "dhcp-agent", "l2-agent",
                                      "metadata-proxy", "metadata-api"}
    activated = next(r for r in flow if r.step == "46-47")
    assert activated.start_ms + activated.duration_ms <= client_ms

    # Straight to metadata-api, not through the proxy: the signature cannot be right.
    forged = await cloud.client.get("/metadata/openstack/latest/meta_data.json", headers={
        "X-Instance-ID": server_id, "X-Tenant-ID": cloud.project_id,
        "X-Forwarded-For": address, "X-Instance-ID-Signature": "0" * 64})
    assert forged.status_code == 403, forged.text

    deleted = await cloud.call("DELETE", f"/compute/v2.1/servers/{server_id}")
    assert deleted.status_code == 204
    await cloud.server_status(server_id, "DELETED")
    await eventually(lambda: address not in hosts_text(cloud.state_dir / network["id"]),
                     message="port out of hosts")
    removed = await cloud.call("DELETE", f"{NET}/networks/{network['id']}")
    assert removed.status_code == 204, removed.text
    await eventually(lambda: not (cloud.state_dir / network["id"]).exists(),
                     message="the network's DHCP state removed")
