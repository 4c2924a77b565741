"""Routers and floating IPs through the Network API, put in force by the l3-agent over the
bus: the units as ``stratus up`` builds them (identity-api, network-api, dhcp-agent,
l2-agent, l3-agent), on SQLite and PostgreSQL, over the memory bus and RabbitMQ.

A namespace guest gets its port's address from the network's dnsmasq; an "outside"
namespace on the external network's (test) bridge holds the external subnet's gateway.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
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
from stratus.network.agents.l3.router import gateway_device, internal_device, outer_device
from stratus.network.objects import bridge_name, router_namespace, tap_name
from stratus.stack import Stack
from stratus.units import root_app, run_bootstrap
from tests.integration.asgi import admin_token
from tests.integration.network_agents.conftest import require_root_and_dnsmasq
from tests.integration.network_agents.guest import Guest
from tests.integration.network_agents.l3net import Listener, Outside, reachable

ADMIN_PASSWORD = "l3-tests-admin-pw"
ROOT = "http://test"
NET = "/network/v2.0"


@dataclass
class Cloud:
    client: httpx.AsyncClient
    headers: dict[str, str]
    host: str
    physical_network: str
    bridge: str
    firewall_table: str

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                      expect: int = 200) -> dict[str, Any]:
        response = await self.client.request(method, f"{NET}{path}", headers=self.headers,
                                              json=body)
        assert response.status_code == expect, response.text
        return response.json() if response.content else {}

    async def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = (await self.request("POST", f"/{kind}s", {kind: body},
                                                      201))[kind]
        return created


@pytest.fixture
async def cloud(db_url: str, bus_url: str, tmp_path: Path) -> AsyncIterator[Cloud]:
    require_root_and_dnsmasq()
    tag = uuid.uuid4().hex[:8]
    host, physnet, bridge = f"l3-{tag}", f"ext-{tag}", f"bx{tag}"
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url=ROOT,
                        bus_url=bus_url, admin_password=ADMIN_PASSWORD,
                        identity={"bcrypt_rounds": 4},
                        compute={"host": host, "fake_hosts": 1},
                        network={"backend": "linuxbridge", "agent_report_interval": 1.0,
                                 "physical_bridges": {physnet: bridge},
                                 "firewall_table": f"sgl3-{tag}",
                                 "external_masquerade": False})
    stack = Stack(settings)
    try:
        await run_bootstrap(stack)
        app = await root_app(stack, ["identity-api", "network-api", "dhcp-agent",
                                     "l2-agent", "l3-agent"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=ROOT) as client:
            token, _ = await admin_token(client, ADMIN_PASSWORD)
            yield Cloud(client, {"X-Auth-Token": token}, host,
                        physnet, bridge, settings.network.firewall_table)
    finally:
        await stack.aclose()
        await asyncio.to_thread(linux.delete_link, bridge)


def _left_on_machine(router_id: str, leg_ids: list[str], network_ids: list[str]) -> list[str]:
    left = []
    if linux.namespace_exists(router_namespace(router_id)):
        left.append(router_namespace(router_id))
    for leg_id in leg_ids:
        for inner in (internal_device(leg_id), gateway_device(leg_id)):
            if linux.get_link(outer_device(inner)) is not None:
                left.append(outer_device(inner))
    for network_id in network_ids:
        if linux.get_link(bridge_name(network_id)) is not None:
            left.append(bridge_name(network_id))
    return left


async def until(check: Callable[[], object], message: str, within: float = 30.0) -> None:
    """Wait until ``check`` (run in a worker thread: it touches the kernel) is true."""
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"{message} not reached within {within}s"
        await asyncio.sleep(0.05)


def _links(namespace: str) -> list[str]:
    with linux.ipr_in(namespace) as ns:
        return sorted(m.get("IFLA_IFNAME") for m in ns.get_links())


def _data_path_state(namespace: str, firewall_table: str) -> str:
    """The router namespace's addresses and NAT rules and the l2-agent's firewall, for a
    failure's message."""
    shown = []
    for command in (["ip", "netns", "exec", namespace, "ip", "-brief", "address"],
                    ["ip", "netns", "exec", namespace, "nft", "list", "ruleset"],
                    ["nft", "list", "table", "inet", firewall_table]):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        shown.append(done.stdout + done.stderr)
    return "\n".join(shown)


async def test_router_and_floating_ip_through_the_api(cloud: Cloud, tmp_path: Path) -> None:
    octet = random.randint(0, 255)
    external_cidr = f"198.{random.randint(18, 19)}.{octet}.0/24"
    public = await cloud.create("network", {
        "name": f"public-{uuid.uuid4().hex[:6]}", "router:external": True,
        "provider:network_type": "flat", "provider:physical_network": cloud.physical_network})
    await cloud.create("subnet", {"network_id": public["id"], "cidr": external_cidr,
                                  "ip_version": 4, "enable_dhcp": False})
    private = await cloud.create("network", {"name": f"private-{uuid.uuid4().hex[:6]}"})
    prefix = f"10.{random.randint(64, 250)}.{random.randint(0, 255)}"
    subnet = await cloud.create("subnet", {"network_id": private["id"],
                                           "cidr": f"{prefix}.0/24", "ip_version": 4})
    port = await cloud.create("port", {
        "network_id": private["id"], "device_id": str(uuid.uuid4()),
        "device_owner": "compute:nova", "binding:host_id": cloud.host})
    guest_ip = port["fixed_ips"][0]["ip_address"]
    # As a user would, once the server is booted: the port's (default) group lets TCP in
    # from anywhere, so the outside connects to the guest (with the firewall enforced, the
    # default group admits only its members). The rule races the l2-agent's first filtering
    # of the port.
    for group_id in port["security_groups"]:
        await cloud.request("POST", "/security-group-rules", {"security_group_rule": {
            "security_group_id": group_id, "direction": "ingress", "ethertype": "IPv4",
            "protocol": "tcp", "remote_ip_prefix": "0.0.0.0/0"}}, 201)

    async with (Outside(cloud.bridge, external_cidr) as outside,
                Guest(bridge_name(private["id"]), port["mac_address"],
                      tmp_path / "guest") as guest):
        await until(lambda: linux.get_link(tap_name(port["id"])) is not None,
                    message="the guest port's tap")
        # The router: gateway on public, an interface on the private subnet.
        router = await cloud.create("router", {
            "name": "r1", "external_gateway_info": {"network_id": public["id"]}})
        namespace = router_namespace(router["id"])
        external_ip = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
        interface = await cloud.request("PUT", f"/routers/{router['id']}/add_router_interface",
                                        {"subnet_id": subnet["id"]})
        gateway_port = (await cloud.request(
            "GET", f"/ports?device_id={router['id']}&device_owner=network:router_gateway"
        ))["ports"][0]
        legs = [interface["port_id"], gateway_port["id"]]
        await until(lambda: linux.namespace_exists(namespace)
                    and internal_device(interface["port_id"]) in _links(namespace),
                    message="the router's namespace with its interface")

        lease = await guest.dhcp()
        assert lease["ip"] == guest_ip
        routes = await guest.routes()
        assert routes["0.0.0.0/0"] == subnet["gateway_ip"]
        dhcp_port = (await cloud.request(
            "GET", f"/ports?network_id={private['id']}&device_owner=network:dhcp"))["ports"][0]
        # The metadata route still goes to the DHCP namespace, not the router.
        assert routes["169.254.169.254/32"] == dhcp_port["fixed_ips"][0]["ip_address"]

        async with (Listener(outside.namespace) as out, Listener(guest.namespace) as inside):
            # Out through the router: SNATed to its external address.
            assert await out.seen_from(guest.namespace, outside.address) == external_ip

            # A floating IP for the guest's port: reachable from outside, and its source.
            fip = await cloud.create("floatingip", {"floating_network_id": public["id"],
                                                    "port_id": port["id"]})
            assert fip["router_id"] == router["id"]
            floating_ip = fip["floating_ip_address"]
            started = time.monotonic()
            while not await reachable(outside.namespace, floating_ip, inside.port, 0.5):
                if time.monotonic() > started + 30:
                    shown = await cloud.request("GET", f"/floatingips/{fip['id']}")
                    state = await asyncio.to_thread(_data_path_state, namespace,
                                                    cloud.firewall_table)
                    raise AssertionError(f"floating IP never reachable: {shown}\n{state}")
                # The failed probe's connection is never accepted; the listener drains it.
            print(f"the floating IP answered {time.monotonic() - started:.2f}s after it "
                  "was made")
            assert await inside.seen_from(outside.namespace, floating_ip) == outside.address
            assert await out.seen_from(guest.namespace, outside.address) == floating_ip

            async def status() -> str:
                shown = await cloud.request("GET", f"/floatingips/{fip['id']}")
                return str(shown["floatingip"]["status"])

            deadline = time.monotonic() + 30
            while await status() != "ACTIVE":
                assert time.monotonic() < deadline, "floating IP never ACTIVE"
                await asyncio.sleep(0.05)

            # Disassociated: unreachable, the guest SNATed to the router again.
            await cloud.request("PUT", f"/floatingips/{fip['id']}",
                                {"floatingip": {"port_id": None}})
            deadline = time.monotonic() + 30
            while await reachable(outside.namespace, floating_ip, inside.port, 0.5):
                assert time.monotonic() < deadline, "floating IP still reachable"
                await asyncio.sleep(0.05)
            assert await out.seen_from(guest.namespace, outside.address) == external_ip
            await cloud.request("DELETE", f"/floatingips/{fip['id']}", expect=204)

        # Taken apart through the API: nothing of the router is left.
        await cloud.request("PUT", f"/routers/{router['id']}/remove_router_interface",
                            {"subnet_id": subnet["id"]})
        await until(lambda: internal_device(interface["port_id"]) not in _links(namespace)
                    if linux.namespace_exists(namespace) else True,
                    message="the interface's leg removed")
        await cloud.request("DELETE", f"/routers/{router['id']}", expect=204)
        await until(lambda: not linux.namespace_exists(namespace),
                    message="the router's namespace removed")
    await cloud.request("DELETE", f"/ports/{port['id']}", expect=204)
    await cloud.request("DELETE", f"/networks/{private['id']}", expect=204)
    await cloud.request("DELETE", f"/networks/{public['id']}", expect=204)
    await until(lambda: _left_on_machine(router["id"], legs, [private["id"]]) == [],
                message="nothing left on the machine")
    # The external network's bridge is the host's (mapped): it stays.
    assert await asyncio.to_thread(linux.get_link, cloud.bridge) is not None
