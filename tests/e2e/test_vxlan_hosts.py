"""Three hosts on one machine, joined by VXLAN with the entries the network server hands out.

Each host is a network namespace on an "underlay" bridge of this test, with its own tunnel
IP and its own agents: ``stratus serve l2-agent`` (and on the first host ``dhcp-agent``)
started inside it, reaching RabbitMQ through a forwarder this test runs on the namespace's
127.0.0.1:5672. The network server (identity-api and network-api, in this process) is the
real one. A port bound to each host is plugged by that host's l2-agent — what the fake
driver's boots get, as the compute agent only binds the port and waits for it to go ACTIVE
— and a namespace guest with the port's MAC on the host's bridge plays the server.

Shown: a guest on one host gets its lease from the dnsmasq on another and reaches a guest
on a third over TCP, through VXLAN devices that learn nothing: every host's FDB holds a
flood entry and the port MACs of each other host, from the server; an admin removing a host
(its agent stopped, its agent record deleted through the API) takes its entries away on the
others.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.core.bus.url import TransportURL
from stratus.core.config import Settings
from stratus.network.agents import linux
from stratus.network.agents.l2.manager import vxlan_name
from stratus.network.objects import FLOOD_MAC, bridge_name, dhcp_namespace
from stratus.stack import Stack
from stratus.units import root_app, run_bootstrap
from tests.e2e.cloud import base_env
from tests.e2e.split import AgentProcess
from tests.integration.network_agents.conftest import (
    random_mac,
    require_root_and_dnsmasq,
)
from tests.integration.network_agents.guest import Guest

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]

ROOT = "http://test"
NET = "/network/v2.0"
PASSWORD = "vxlan-hosts-admin-pw"


@dataclass
class Host:
    name: str
    namespace: str
    tunnel_ip: str
    underlay: str  # its veth's end in the underlay bridge
    agents: AgentProcess


async def forward_into(namespace: str, port: int) -> asyncio.Server:
    """Connections to 127.0.0.1:``port`` inside ``namespace`` carried to 127.0.0.1:``port``
    here (RabbitMQ listens on this namespace's loopback only)."""

    def listen() -> socket.socket:
        with linux.entered(namespace):
            sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        sock.setblocking(False)
        return sock

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        # Cancelled when the test's loop ends with the connection open: nothing to report.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(carry, sock=await asyncio.to_thread(listen))


def make_underlay(bridge: str, hosts: list[Host]) -> None:
    linux.ensure_bridge(bridge)
    for host in hosts:
        linux.ensure_namespace(host.namespace)
        linux.plug_veth(host.namespace, "underlay", host.underlay, bridge, random_mac(), 1500)
        linux.set_addresses(host.namespace, "underlay", [f"{host.tunnel_ip}/24"])


def remove_underlay(bridge: str, hosts: list[Host]) -> None:
    for host in hosts:
        linux.delete_namespace(host.namespace)  # its devices go with it
        linux.delete_link(host.underlay)
    linux.delete_link(bridge)


def _fdb(host: Host, vni: int) -> set[tuple[str, str]]:
    with linux.entered(host.namespace):
        return linux.fdb_remote(vxlan_name(vni))


async def fdb(host: Host, vni: int) -> set[tuple[str, str]]:
    """(MAC, tunnel IP) entries of the network's VXLAN device on ``host``."""
    return await asyncio.to_thread(_fdb, host, vni)


async def until_equal(read: Callable[[], Awaitable[object]], wanted: object,
                      within: float = 30.0) -> None:
    """Wait until ``read()`` gives ``wanted``; fail showing the last reading."""
    deadline = time.monotonic() + within
    while (found := await read()) != wanted and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    assert found == wanted


@dataclass
class Api:
    client: httpx.AsyncClient
    headers: dict[str, str]

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                      expect: int = 200) -> dict[str, Any]:
        response = await self.client.request(method, f"{NET}{path}", headers=self.headers,
                                              json=body)
        assert response.status_code == expect, response.text
        return response.json() if response.content else {}


@pytest.fixture
async def api(rabbit_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """identity-api and network-api (linuxbridge) on SQLite and the test's RabbitMQ vhost."""
    require_root_and_dnsmasq()
    settings = Settings(data_dir=tmp_path / "server", public_url=ROOT, bus_url=rabbit_url,
                        database_url=f"sqlite+aiosqlite:///{tmp_path / 'server.db'}",
                        admin_password=PASSWORD, identity={"bcrypt_rounds": 4},
                        compute={"host": f"vxs-{uuid.uuid4().hex[:8]}"},
                        network={"backend": "linuxbridge", "agent_report_interval": 1.0})
    stack = Stack(settings)
    try:
        await run_bootstrap(stack)
        app = await root_app(stack, ["identity-api", "network-api"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=ROOT) as client:
            response = await client.post("/identity/v3/auth/tokens", json={"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "admin", "domain": {"id": "default"}, "password": PASSWORD}}},
                "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
            assert response.status_code == 201, response.text
            yield Api(client, {"X-Auth-Token": response.headers["X-Subject-Token"]})
    finally:
        await stack.aclose()


async def test_three_hosts_joined_by_vxlan(api: Api, rabbit_url: str,
                                           tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:7]
    underlay = f"vxu{tag}"
    rabbit_port = TransportURL.parse(rabbit_url).hosts[0].port
    hosts = []
    for i in range(3):
        name, namespace = f"vx{tag}-{i}", f"vxhost-{tag}-{i}"
        env = base_env(STRATUS_BUS_URL=rabbit_url, STRATUS_NETWORK__BACKEND="linuxbridge",
                       STRATUS_COMPUTE__HOST=name, STRATUS_COMPUTE__FAKE_HOSTS="1",
                       STRATUS_NETWORK__TUNNEL_IP=f"172.31.250.{10 + i}",
                       STRATUS_NETWORK__AGENT_REPORT_INTERVAL="0.5",
                       STRATUS_NETWORK__FIREWALL_TABLE="",
                       STRATUS_METADATA__URL="http://127.0.0.1:9",
                       STRATUS_METADATA__SHARED_SECRET="s")
        units = ("dhcp-agent", "l2-agent") if i == 0 else ("l2-agent",)
        hosts.append(Host(name, namespace, f"172.31.250.{10 + i}", f"vxo{tag}{i}",
                          AgentProcess(units, tmp_path / name, env, tmp_path / f"{name}.log",
                                       namespace=namespace)))
    forwarders: list[asyncio.Server] = []
    network_id = ""
    try:
        await asyncio.to_thread(make_underlay, underlay, hosts)
        for host in hosts:
            forwarders.append(await forward_into(host.namespace, rabbit_port))
            host.agents.start()

        async def l2_agents() -> dict[str, dict[str, Any]]:
            listed = (await api.request("GET", "/agents?agent_type=Linux bridge agent"))
            return {a["host"]: a for a in listed["agents"]}

        for _ in range(600):
            if len(await l2_agents()) == 3:
                break
            await asyncio.sleep(0.1)
        agents = await l2_agents()
        assert {h: a["configurations"]["tunnel_ip"] for h, a in agents.items()} == {
            h.name: h.tunnel_ip for h in hosts}, [h.agents.log.read_text() for h in hosts]

        network = (await api.request("POST", "/networks", {"network": {
            "name": f"vx-{tag}", "provider:network_type": "vxlan"}}, 201))["network"]
        network_id, vni = network["id"], network["provider:segmentation_id"]
        await api.request("POST", "/subnets", {"subnet": {
            "network_id": network_id, "cidr": "10.99.0.0/24", "ip_version": 4}}, 201)

        async def bind(host: Host) -> dict[str, Any]:
            port: dict[str, Any] = (await api.request("POST", "/ports", {"port": {
                "network_id": network_id, "device_id": str(uuid.uuid4()),
                "device_owner": "compute:nova", "binding:host_id": host.name}}, 201))["port"]
            return port

        async def all_active(count: int) -> list[dict[str, Any]]:
            for _ in range(600):
                ports = (await api.request("GET", f"/ports?network_id={network_id}"))["ports"]
                if len(ports) == count and {p["status"] for p in ports} == {"ACTIVE"}:
                    break
                await asyncio.sleep(0.1)
            assert len(ports) == count and {p["status"] for p in ports} == {"ACTIVE"}, ports
            return list(ports)

        async def entries_everywhere(ports: list[dict[str, Any]],
                                     among: list[Host] = hosts) -> None:
            """Every host holds a flood entry and the port MACs of each other host with
            ports on the network (the DHCP port's with the first host's), nothing toward
            itself."""
            macs = {h.tunnel_ip: {p["mac_address"] for p in ports
                                  if p["binding:host_id"] == h.name} for h in among}
            for host in among:
                await until_equal(functools.partial(fdb, host, vni), {
                    (mac, ip) for ip, found in macs.items() if ip != host.tunnel_ip and found
                    for mac in {FLOOD_MAC, *found}})

        # The first host serves DHCP and has no server port yet; the others each have one.
        ports = [await bind(hosts[1]), await bind(hosts[2])]
        listed = await all_active(3)
        dhcp = next(p for p in listed if p["device_owner"] == "network:dhcp")
        assert dhcp["binding:host_id"] == hosts[0].name
        await entries_everywhere(listed)

        # Guests on the hosts' bridges: each gets its port's address from the dnsmasq on
        # the first host, and reaches the guests on the others over TCP.
        guests = [Guest(bridge_name(network_id), port["mac_address"],
                        tmp_path / f"guest-{i}", host_namespace=host.namespace)
                  for i, (host, port) in enumerate(zip(hosts[1:], ports, strict=True))]
        async with guests[0], guests[1]:
            for guest, port in zip(guests, ports, strict=True):
                lease = await guest.dhcp()
                assert lease["ip"] == port["fixed_ips"][0]["ip_address"]
            with guests[1].listen(7000):
                assert await guests[0].connect(guests[1].lease["ip"], 7000, wait=5)

            # Then a server port on the first host too.
            ports.append(await bind(hosts[0]))
            await entries_everywhere(listed := await all_active(4))
            async with Guest(bridge_name(network_id), ports[2]["mac_address"],
                             tmp_path / "guest-2", host_namespace=hosts[0].namespace) as third:
                lease = await third.dhcp()
                assert lease["ip"] == ports[2]["fixed_ips"][0]["ip_address"]
                with third.listen(7000):
                    assert await guests[0].connect(lease["ip"], 7000, wait=5)
                    assert await guests[1].connect(lease["ip"], 7000, wait=5)

        # An admin removes the third host: its agent stopped (nothing tells the server its
        # ports went down: the entries stay), then its agent record deleted.
        gone = hosts[2]
        assert await asyncio.to_thread(gone.agents.signal, signal.SIGTERM) == 0
        for host in hosts[:2]:
            assert gone.tunnel_ip in {ip for _, ip in await fdb(host, vni)}
        await api.request("DELETE", f"/agents/{agents[gone.name]['id']}", expect=204)
        await entries_everywhere(listed, among=hosts[:2])
    finally:
        for host in hosts:
            if host.agents.process is not None and host.agents.process.poll() is None:
                # Off the event loop: the forwarders carry the agents' last bus calls.
                try:
                    await asyncio.to_thread(host.agents.signal, signal.SIGTERM)
                except subprocess.TimeoutExpired:
                    host.agents.signal(signal.SIGKILL)
        for server in forwarders:
            server.close()
        if network_id:
            await asyncio.to_thread(linux.delete_namespace, dhcp_namespace(network_id))
        await asyncio.to_thread(remove_underlay, underlay, hosts)
