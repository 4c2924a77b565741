"""Three compute hosts on one machine, joined by VXLAN with the entries the network server
hands out.

Each host is a network namespace on an "underlay" bridge of this test, with its own tunnel
IP and its own agents: ``stratus serve compute-agent l2-agent`` (fake driver; on the first
host the ``dhcp-agent`` too) started inside it. The control plane runs here in split mode on
RabbitMQ and PostgreSQL: the APIs in one process, a scheduler and a conductor in another;
the hosts reach the broker, the database and the APIs through forwarders this test runs on
each namespace's 127.0.0.1. Servers are booted with the real ``openstack`` CLI into one
availability zone per host; the fake driver's guest is a namespace guest with its port's
MAC on the host's bridge (the l2-agent plugs the port's tap there).

Shown: each server is built on its zone's host, its port bound there and ACTIVE; a guest on
one host gets its lease from the dnsmasq on another and reaches a guest on a third over TCP,
through VXLAN devices that learn nothing: every host's FDB holds a flood entry and the port
MACs of each other host with ports on the network, from the server; an admin removing a host
(its agents stopped, its L2 agent record deleted through the API) takes its entries away on
the others.
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
from sqlalchemy.engine import make_url

from stratus.core.bus.url import TransportURL
from stratus.network.agents import linux
from stratus.network.agents.l2.manager import vxlan_name
from stratus.network.objects import FLOOD_MAC, bridge_name, dhcp_namespace
from tests.e2e.cloud import BIN, Cloud, base_env, free_port
from tests.e2e.split import AgentProcess, Fleet, login
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


API_UNITS = ["identity-api", "image-api", "placement-api", "compute-api", "network-api",
             "metadata-api"]


@dataclass
class Api:
    """The admin's HTTP client of the cloud (the polling; boots go through the real CLI)."""

    cloud: Cloud
    client: httpx.AsyncClient
    headers: dict[str, str]

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                      expect: int = 200) -> dict[str, Any]:
        response = await self.client.request(method, path, headers=self.headers, json=body)
        assert response.status_code == expect, response.text
        return response.json() if response.content else {}

    async def openstack(self, *args: str) -> Any:
        """The real CLI, off the event loop: the forwarders run on it."""
        return await asyncio.to_thread(self.cloud.openstack_json, *args)


def _host(tag: str, i: int, env: dict[str, str], work: Path) -> Host:
    name, namespace, tunnel_ip = f"vx{tag}-{i}", f"vxhost-{tag}-{i}", f"172.31.250.{10 + i}"
    host_env = {**env, "STRATUS_COMPUTE__HOST": name, "STRATUS_COMPUTE__FAKE_HOSTS": "1",
                "STRATUS_NETWORK__TUNNEL_IP": tunnel_ip}
    units = ("compute-agent", "dhcp-agent", "l2-agent") if i == 0 else ("compute-agent",
                                                                        "l2-agent")
    return Host(name, namespace, tunnel_ip, f"vxo{tag}{i}",
                AgentProcess(units, work / name, host_env, work / f"{name}.log",
                             namespace=namespace))


#: Entered for each host once its namespace is on the underlay, before its agents start;
#: left after they stopped. What it gives is added to the host's agents' environment.
HostSetup = Callable[[Host], contextlib.AbstractContextManager[dict[str, str]]]


@dataclass
class Joined:
    """Three hosts joined by VXLAN, their agents started, and the admin's client."""

    api: Api
    hosts: list[Host]
    #: The network the test makes (``"network"``: its id), whose DHCP namespace goes after.
    made: dict[str, str]


@contextlib.asynccontextmanager
async def joined_hosts(db_url: str, rabbit_url: str, tmp_path: Path, *,
                       host_setup: HostSetup | None = None,
                       **settings: str) -> AsyncIterator[Joined]:
    """The control plane here (split, on ``rabbit_url`` and ``db_url``) and three namespace
    hosts on an underlay bridge, each with its compute and L2 agents (the first with the
    DHCP agent and its metadata proxies, which reach this cloud's metadata-api); everything
    stopped and removed after. ``settings``: environment of every process over the
    defaults."""
    tag = uuid.uuid4().hex[:7]
    underlay = f"vxu{tag}"
    port = free_port()
    password = uuid.uuid4().hex
    env = base_env(**{
        "STRATUS_DATABASE_URL": db_url, "STRATUS_BUS_URL": rabbit_url,
        "STRATUS_ADMIN_PASSWORD": password, "STRATUS_AUTH__SERVICE_PASSWORD": password,
        "STRATUS_AUTH__IDENTITY_URL": f"http://127.0.0.1:{port}/identity/v3",
        "STRATUS_COMPUTE__REPORT_INTERVAL": "1",
        "STRATUS_NETWORK__BACKEND": "linuxbridge",
        "STRATUS_NETWORK__AGENT_REPORT_INTERVAL": "0.5",
        "STRATUS_METADATA__URL": f"http://127.0.0.1:{port}/metadata",
        "STRATUS_METADATA__SHARED_SECRET": uuid.uuid4().hex, **settings})
    data_dir = tmp_path / "control"
    for command in (["db", "upgrade"], ["bootstrap", "--port", str(port)]):
        await asyncio.to_thread(
            subprocess.run, [str(BIN / "stratus"), *command, "--data-dir", str(data_dir)],
            env=env, check=True, capture_output=True, timeout=120)
    cloud = Cloud(data_dir, port, env, args=["serve", *API_UNITS])
    control = Fleet(data_dir, env)
    hosts = [_host(tag, i, env, tmp_path) for i in range(3)]
    forwarders: list[asyncio.Server] = []
    made: dict[str, str] = {}
    with contextlib.ExitStack() as setups:
        try:
            await asyncio.to_thread(cloud.start, 60)
            control.start("control", "scheduler", "conductor")
            await asyncio.to_thread(make_underlay, underlay, hosts)
            # The hosts' broker, database and APIs: this machine's loopback, carried into
            # each.
            upstream = [TransportURL.parse(rabbit_url).hosts[0].port or 5672,
                        make_url(db_url).port or 5432, port]
            for host in hosts:
                if host_setup is not None:
                    host.agents.env.update(setups.enter_context(host_setup(host)))
                for carried in upstream:
                    forwarders.append(await forward_into(host.namespace, carried))
                host.agents.start()
            async with httpx.AsyncClient(base_url=cloud.url, timeout=30) as client:
                yield Joined(Api(cloud, client, {"X-Auth-Token": await login(client, password)}),
                             hosts, made)
        finally:
            for host in hosts:
                if host.agents.process is not None and host.agents.process.poll() is None:
                    # Off the event loop: the forwarders carry the agents' last calls.
                    try:
                        await asyncio.to_thread(host.agents.signal, signal.SIGTERM)
                    except subprocess.TimeoutExpired:
                        host.agents.signal(signal.SIGKILL)
            for server in forwarders:
                server.close()
            control.stop_all()
            if cloud.process is not None:
                await asyncio.to_thread(cloud.stop)
            setups.close()  # the hosts' own parts go before their namespaces
            if "network" in made:
                await asyncio.to_thread(linux.delete_namespace, dhcp_namespace(made["network"]))
            await asyncio.to_thread(remove_underlay, underlay, hosts)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_three_compute_hosts_joined_by_vxlan(db_url: str, rabbit_url: str,
                                                   tmp_path: Path) -> None:
    require_root_and_dnsmasq()
    # The guests here are veths beside the ports' taps: no firewall to pass.
    async with joined_hosts(db_url, rabbit_url, tmp_path,
                            STRATUS_NETWORK__FIREWALL_TABLE="") as joined:
        await _run(joined, tmp_path)


async def wait_for_hosts(api: Api, hosts: list[Host]) -> dict[str, dict[str, Any]]:
    """Until each host's compute service is up and its agents alive; its L2 agent record
    by host name."""
    names = {h.name for h in hosts}
    for _ in range(600):
        services = (await api.request("GET", "/compute/v2.1/os-services?binary=nova-compute")
                    )["services"]
        agents = (await api.request("GET", "/network/v2.0/agents"))["agents"]
        up = {s["host"] for s in services if s["state"] == "up"}
        l2 = {a["host"]: a for a in agents
              if a["agent_type"] == "Linux bridge agent" and a["alive"]}
        dhcp = {a["host"] for a in agents if a["agent_type"] == "DHCP agent" and a["alive"]}
        if names <= up and names <= set(l2) and hosts[0].name in dhcp:
            return l2
        await asyncio.sleep(0.1)
    raise AssertionError(([h.agents.log.read_text() for h in hosts], services, agents))


@dataclass
class VxlanNetwork:
    id: str
    vni: int
    #: Each host's L2 agent record, by host name.
    l2_agents: dict[str, dict[str, Any]]


async def zones_and_network(joined: Joined) -> VxlanNetwork:
    """Once the hosts are up: an availability zone per host (``zone-<host>``: where each
    boot goes) and a VXLAN network with a subnet (10.99.0.0/24), made with the real CLI."""
    api, hosts = joined.api, joined.hosts
    l2_agents = await wait_for_hosts(api, hosts)
    assert {h: a["configurations"]["tunnel_ip"] for h, a in l2_agents.items()} == {
        h.name: h.tunnel_ip for h in hosts}
    for i, host in enumerate(hosts):
        aggregate = (await api.request("POST", "/compute/v2.1/os-aggregates", {"aggregate": {
            "name": f"agg-{i}", "availability_zone": f"zone-{host.name}"}}))["aggregate"]
        await api.request("POST", f"/compute/v2.1/os-aggregates/{aggregate['id']}/action",
                          {"add_host": {"host": host.name}})
    network = await api.openstack("network", "create", "--provider-network-type", "vxlan",
                                  "vx-net")
    network_id = joined.made["network"] = network["id"]
    await api.openstack("subnet", "create", "--network", network_id, "--subnet-range",
                        "10.99.0.0/24", "vx-subnet")
    vni = (await api.request("GET", f"/network/v2.0/networks/{network_id}")
           )["network"]["provider:segmentation_id"]
    return VxlanNetwork(network_id, vni, l2_agents)


async def network_ports(api: Api, network_id: str) -> list[dict[str, Any]]:
    return list((await api.request("GET", f"/network/v2.0/ports?network_id={network_id}")
                 )["ports"])


async def entries_everywhere(api: Api, network: VxlanNetwork, among: list[Host]) -> None:
    """Every host holds a flood entry and the port MACs of each other host with ports on
    the network (the DHCP port's with the first host's), nothing toward itself."""
    ports = await network_ports(api, network.id)
    macs = {h.tunnel_ip: {p["mac_address"] for p in ports if p["binding:host_id"] == h.name}
            for h in among}
    for host in among:
        await until_equal(functools.partial(fdb, host, network.vni), {
            (mac, ip) for ip, found in macs.items() if ip != host.tunnel_ip and found
            for mac in {FLOOD_MAC, *found}})


async def _run(joined: Joined, tmp_path: Path) -> None:
    api, hosts = joined.api, joined.hosts
    network = await zones_and_network(joined)
    network_id, vni = network.id, network.vni
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    await api.openstack("image", "create", "--file", str(disk), "--disk-format", "raw",
                        "--container-format", "bare", "vx-image")

    async def boot(host: Host) -> dict[str, Any]:
        """A server in ``host``'s zone: built there, its port bound there; the port."""
        server = await api.openstack(
            "server", "create", "--image", "vx-image", "--flavor", "m1.tiny", "--nic",
            f"net-id={network_id}", "--availability-zone", f"zone-{host.name}", "--wait",
            f"vm-{host.name}")
        assert server["status"] == "ACTIVE", server
        assert server["OS-EXT-SRV-ATTR:host"] == host.name, server
        ports = (await api.request("GET", f"/network/v2.0/ports?device_id={server['id']}")
                 )["ports"]
        assert [(p["binding:host_id"], p["status"]) for p in ports] == [(host.name, "ACTIVE")]
        return dict(ports[0])

    # The first host serves DHCP and has no server yet; the others each get one.
    ports = [await boot(hosts[1]), await boot(hosts[2])]
    dhcp = [p for p in await network_ports(api, network_id)
            if p["device_owner"] == "network:dhcp"]
    assert [p["binding:host_id"] for p in dhcp] == [hosts[0].name]
    await entries_everywhere(api, network, hosts)

    # Guests on the hosts' bridges: each gets its port's address from the dnsmasq on the
    # first host, and reaches the guest on the other over TCP.
    guests = [Guest(bridge_name(network_id), port["mac_address"], tmp_path / f"guest-{i}",
                    host_namespace=host.namespace)
              for i, (host, port) in enumerate(zip(hosts[1:], ports, strict=True))]
    async with guests[0], guests[1]:
        for guest, port in zip(guests, ports, strict=True):
            lease = await guest.dhcp()
            assert lease["ip"] == port["fixed_ips"][0]["ip_address"]
        with guests[1].listen(7000):
            assert await guests[0].connect(guests[1].lease["ip"], 7000, wait=5)

        # Then a server on the first host too.
        ports.append(await boot(hosts[0]))
        await entries_everywhere(api, network, hosts)
        async with Guest(bridge_name(network_id), ports[2]["mac_address"],
                         tmp_path / "guest-2", host_namespace=hosts[0].namespace) as third:
            lease = await third.dhcp()
            assert lease["ip"] == ports[2]["fixed_ips"][0]["ip_address"]
            with third.listen(7000):
                assert await guests[0].connect(lease["ip"], 7000, wait=5)
                assert await guests[1].connect(lease["ip"], 7000, wait=5)

    # An admin removes the third host: its agents stopped (nothing tells the server its
    # ports went down: the entries stay), then its L2 agent record deleted.
    gone = hosts[2]
    assert await asyncio.to_thread(gone.agents.signal, signal.SIGTERM) == 0
    for host in hosts[:2]:
        assert gone.tunnel_ip in {ip for _, ip in await fdb(host, vni)}
    await api.request("DELETE", f"/network/v2.0/agents/{network.l2_agents[gone.name]['id']}",
                      expect=204)
    await entries_everywhere(api, network, hosts[:2])
