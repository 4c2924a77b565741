"""The agents with the real network-api: built by ``stratus.units`` as ``stratus up`` builds
them (identity-api, network-api, dhcp-agent, l2-agent), on SQLite and PostgreSQL, over the
memory bus and RabbitMQ. Networks, subnets and ports are made through the Network API; a
namespace guest then gets its port's address from the network's dnsmasq."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.core.config import Settings
from stratus.network.agents import linux
from stratus.network.objects import bridge_name, dhcp_namespace, tap_name
from stratus.stack import Stack
from stratus.units import root_app, run_bootstrap
from tests.integration.asgi import admin_token
from tests.integration.network_agents.conftest import (
    eventually,
    hosts_text,
    require_root_and_dnsmasq,
)
from tests.integration.network_agents.guest import Guest

ADMIN_PASSWORD = "agents-tests-admin-pw"
ROOT = "http://test"
NET = "/network/v2.0"


@dataclass
class Cloud:
    client: httpx.AsyncClient
    headers: dict[str, str]
    host: str
    state_dir: Path
    firewall_table: str = ""

    async def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(f"{NET}/{kind}s", headers=self.headers,
                                          json={kind: body})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()[kind]
        return created

    async def show(self, kind: str, item_id: str) -> httpx.Response:
        return await self.client.get(f"{NET}/{kind}s/{item_id}", headers=self.headers)

    async def delete(self, kind: str, item_id: str) -> None:
        response = await self.client.delete(f"{NET}/{kind}s/{item_id}", headers=self.headers)
        assert response.status_code == 204, response.text


@pytest.fixture
async def cloud(db_url: str, bus_url: str, tmp_path: Path) -> AsyncIterator[Cloud]:
    require_root_and_dnsmasq()
    host = f"agents-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url=ROOT,
                        bus_url=bus_url, admin_password=ADMIN_PASSWORD,
                        identity={"bcrypt_rounds": 4},
                        compute={"host": host, "fake_hosts": 1},
                        network={"backend": "linuxbridge", "agent_report_interval": 1.0,
                                 "firewall_table": f"sgtest-{uuid.uuid4().hex[:8]}"})
    stack = Stack(settings)
    try:
        await run_bootstrap(stack)
        app = await root_app(stack, ["identity-api", "network-api", "dhcp-agent", "l2-agent"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=ROOT) as client:
            token, _ = await admin_token(client, ADMIN_PASSWORD)
            yield Cloud(client, {"X-Auth-Token": token}, host,
                        settings.dhcp_state_dir, settings.network.firewall_table)
    finally:
        await stack.aclose()


async def exists(name: str) -> bool:
    return await asyncio.to_thread(linux.namespace_exists, name)


async def link(name: str) -> linux.Link | None:
    return await asyncio.to_thread(linux.get_link, name)


async def test_network_port_and_lease_through_the_api(
        cloud: Cloud, tmp_path: Path, kernel_cleanup: Callable[..., None]) -> None:
    network = await cloud.create("network", {"name": f"agents-{uuid.uuid4().hex[:6]}"})
    kernel_cleanup(network=network["id"], directory=cloud.state_dir / network["id"])
    prefix = f"10.{uuid.uuid4().int % 180 + 64}.{uuid.uuid4().int % 250}"
    await cloud.create("subnet", {"network_id": network["id"], "cidr": f"{prefix}.0/24",
                                  "ip_version": 4, "dns_nameservers": ["192.0.2.53"]})
    namespace = dhcp_namespace(network["id"])
    await eventually(lambda: (cloud.state_dir / network["id"] / "pid").exists(),
                     message="dnsmasq started for the network")
    assert await exists(namespace)

    port = await cloud.create("port", {
        "network_id": network["id"], "device_id": str(uuid.uuid4()),
        "device_owner": "compute:nova", "binding:host_id": cloud.host})
    kernel_cleanup(device=tap_name(port["id"]))
    address = port["fixed_ips"][0]["ip_address"]
    await eventually(lambda: address in hosts_text(cloud.state_dir / network["id"]),
                     message="port in the hosts directory")

    # The l2-agent plugged the tap and reported it: the port is ACTIVE.
    async def status() -> str:
        return str((await cloud.show("port", port["id"])).json()["port"]["status"])

    deadline = time.monotonic() + 30
    while await status() != "ACTIVE" and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    assert await status() == "ACTIVE"
    tap, bridge = await link(tap_name(port["id"])), await link(bridge_name(network["id"]))
    assert tap is not None and bridge is not None and tap.master == bridge.index

    # A guest with the port's MAC on the bridge gets exactly the port's address.
    async with Guest(bridge_name(network["id"]), port["mac_address"],
                     tmp_path / "guest") as guest:
        lease = await guest.dhcp()
        assert lease["ip"] == address
        dhcp_ports = (await cloud.client.get(
            f"{NET}/ports?network_id={network['id']}&device_owner=network:dhcp",
            headers=cloud.headers)).json()["ports"]
        assert len(dhcp_ports) == 1
        routes = await guest.routes()
        assert routes["169.254.169.254/32"] == dhcp_ports[0]["fixed_ips"][0]["ip_address"]

    await cloud.delete("port", port["id"])
    await eventually(lambda: address not in hosts_text(cloud.state_dir / network["id"]),
                     message="port out of hosts")
    deadline = time.monotonic() + 30
    while await link(tap_name(port["id"])) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    assert await link(tap_name(port["id"])) is None

    await cloud.delete("network", network["id"])
    await eventually(lambda: not (cloud.state_dir / network["id"]).exists(),
                     message="network's state removed")
    assert not await exists(namespace)
    assert await link(bridge_name(network["id"])) is None
