"""The network agents against the real kernel, dnsmasq and bus.

The agents' counterpart, the network server, is played by ``ServerDouble``: a real
``RPCServer`` on the ``network`` topic whose manager keeps networks in memory and records what
the agents report, so the tests assert what crossed the bus. Every test uses fresh uuids, so
bridges (``brq<id[:11]>``), namespaces and taps never collide with a concurrent run; a
finalizer removes whatever a failing test left.

Root and dnsmasq are required: skipped locally without them, failed under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stratus.core.bus import RPCServer, Target, Transport, get_transport
from stratus.core.context import RequestContext
from stratus.network.agents import linux
from stratus.network.agents.dhcp import dnsmasq
from stratus.network.objects import (
    DHCP_DEVICE_OWNER,
    AgentState,
    DeviceDetails,
    FdbEntries,
    FixedIP,
    NetworkInfo,
    PortInfo,
    RouterInfo,
    SecurityGroupsSnapshot,
    SubnetInfo,
    bridge_name,
    dhcp_namespace,
    tap_name,
)
from stratus.network.rpcapi import NETWORK_TOPIC, NetworkServerAPI
from tests.conftest import backend_unavailable


def random_mac() -> str:
    return "fa:16:3e:" + ":".join(f"{random.randint(0, 255):02x}" for _ in range(3))


async def eventually(predicate: Callable[[], object], within: float = 30.0,
                     message: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {within}s")
        await asyncio.sleep(0.02)


def hosts_text(state: Path) -> str:
    """Every ``dhcp-host`` line of a network's dnsmasq (its ``hosts/`` directory, one file
    per port; '' while there is none)."""
    try:
        files = sorted((state / dnsmasq.HOSTS_DIR).iterdir())
    except FileNotFoundError:
        return ""
    text = []
    for path in files:
        if not path.name.startswith("."):
            with contextlib.suppress(FileNotFoundError):
                text.append(path.read_text())
    return "".join(text)


def make_network(cidr: str | None = None, **fields: object) -> NetworkInfo:
    """A flat network with one DHCP-enabled /24 subnet (gateway .1), no ports yet."""
    network_id = str(uuid.uuid4())
    if cidr is None:
        cidr = f"10.{random.randint(64, 250)}.{random.randint(0, 255)}.0/24"
    prefix = cidr.rsplit(".", 1)[0]
    subnet = SubnetInfo(id=str(uuid.uuid4()), network_id=network_id, cidr=cidr,
                        gateway_ip=f"{prefix}.1", dns_nameservers=["192.0.2.53"])
    base: dict[str, object] = {"id": network_id, "project_id": "p-" + uuid.uuid4().hex[:8],
                               "mtu": 1450, "subnets": [subnet]}
    base.update(fields)
    return NetworkInfo.model_validate(base)


def make_port(network: NetworkInfo, host_part: int, **fields: object) -> PortInfo:
    subnet = network.subnets[0]
    prefix = subnet.cidr.rsplit(".", 1)[0]
    base: dict[str, object] = {
        "id": str(uuid.uuid4()), "network_id": network.id, "project_id": network.project_id,
        "mac_address": random_mac(), "device_id": str(uuid.uuid4()),
        "device_owner": "compute:nova",
        "fixed_ips": [FixedIP(subnet_id=subnet.id, ip_address=f"{prefix}.{host_part}")]}
    base.update(fields)
    return PortInfo.model_validate(base)


def groups_of(details: list[DeviceDetails], group_ids: list[str]) -> SecurityGroupsSnapshot:
    """``get_security_groups`` answered from ports' details: the groups asked for that
    they hold, and the members of the remote groups those groups' rules name."""
    groups = {g.id: g for d in details for g in d.security_groups if g.id in group_ids}
    infos = [groups[g] for g in sorted(groups)]
    remote = {r.remote_group_id for g in infos for r in g.rules if r.remote_group_id}
    members = {g: m for d in details for g, m in d.remote_group_members.items() if g in remote}
    return SecurityGroupsSnapshot(security_groups=infos, remote_group_members=members)


@dataclass
class ServerDouble:
    """The network server's agent RPC, in memory: what the agents ask for and report."""

    METHODS = ("report_state", "get_active_networks", "get_network", "ensure_dhcp_port",
               "release_dhcp_port", "get_device_details", "get_security_groups",
               "get_group_members", "get_bound_ports", "get_fdb_entries", "update_device_up",
               "update_device_down", "get_routers", "update_floatingip_statuses")

    networks: dict[str, NetworkInfo] = field(default_factory=dict)
    bound: dict[str, list[DeviceDetails]] = field(default_factory=dict)
    states: list[AgentState] = field(default_factory=list)
    dhcp_ports: dict[tuple[str, str], PortInfo] = field(default_factory=dict)
    released: list[tuple[str, str]] = field(default_factory=list)
    up: list[tuple[str, str]] = field(default_factory=list)
    down: list[tuple[str, str]] = field(default_factory=list)
    #: While True, get_active_networks and get_bound_ports fail (a server not ready yet).
    unavailable: bool = False
    #: When set, get_active_networks answers only once it is set (after snapshot_taken).
    hold_snapshot: asyncio.Event | None = None
    snapshot_taken: asyncio.Event = field(default_factory=asyncio.Event)
    #: The routers scheduled per host (l3-agent), and the floating IP statuses reported.
    routers: dict[str, list[RouterInfo]] = field(default_factory=dict)
    fip_statuses: dict[str, str] = field(default_factory=dict)
    #: How many times each question about ports' security was asked.
    asked: Counter[str] = field(default_factory=Counter)

    async def report_state(self, ctx: RequestContext, state: AgentState) -> None:
        self.states.append(state)

    async def get_active_networks(self, ctx: RequestContext, host: str) -> list[NetworkInfo]:
        if self.unavailable:
            raise RuntimeError("the server is starting")
        snapshot = [self._with_dhcp_ports(n) for n in self.networks.values()]
        if self.hold_snapshot is not None:  # a slow answer: the snapshot was taken before
            self.snapshot_taken.set()
            await self.hold_snapshot.wait()
        return snapshot

    async def get_network(self, ctx: RequestContext, network_id: str) -> NetworkInfo | None:
        network = self.networks.get(network_id)
        return self._with_dhcp_ports(network) if network is not None else None

    def _with_dhcp_ports(self, network: NetworkInfo) -> NetworkInfo:
        extra = [p for (n, _), p in self.dhcp_ports.items() if n == network.id]
        return network.model_copy(update={"ports": [*network.ports, *extra]})

    async def ensure_dhcp_port(self, ctx: RequestContext, network_id: str,
                               host: str) -> PortInfo:
        network = self.networks[network_id]
        existing = self.dhcp_ports.get((network_id, host))
        if existing is not None:
            return existing
        fixed = [FixedIP(subnet_id=s.id, ip_address=s.cidr.rsplit(".", 1)[0] + ".2")
                 for s in network.subnets if s.enable_dhcp]
        port = PortInfo(id=str(uuid.uuid4()), network_id=network_id,
                        project_id=network.project_id, mac_address=random_mac(),
                        fixed_ips=fixed, device_id=f"dhcp-{host}",
                        device_owner=DHCP_DEVICE_OWNER, binding_host_id=host)
        self.dhcp_ports[(network_id, host)] = port
        return port

    async def release_dhcp_port(self, ctx: RequestContext, network_id: str,
                                host: str) -> None:
        self.released.append((network_id, host))
        self.dhcp_ports.pop((network_id, host), None)

    async def get_device_details(self, ctx: RequestContext, port_id: str,
                                 host: str) -> DeviceDetails | None:
        self.asked["get_device_details"] += 1
        for details in self.bound.get(host, []):
            if details.port.id == port_id:
                return details
        return None

    async def get_security_groups(self, ctx: RequestContext,
                                  group_ids: list[str]) -> SecurityGroupsSnapshot:
        self.asked["get_security_groups"] += 1
        return groups_of([d for ds in self.bound.values() for d in ds], group_ids)

    async def get_group_members(self, ctx: RequestContext,
                                members: dict[str, list[str]]) -> dict[str, list[str]]:
        """Of the addresses asked about, those the bound ports' details hold as members."""
        self.asked["get_group_members"] += 1
        held: dict[str, set[str]] = {}
        for details in (d for ds in self.bound.values() for d in ds):
            for group_id, addresses in details.remote_group_members.items():
                held.setdefault(group_id, set()).update(addresses)
        return {g: sorted(set(a) & held.get(g, set())) for g, a in members.items()}

    async def get_bound_ports(self, ctx: RequestContext, host: str) -> list[DeviceDetails]:
        if self.unavailable:
            raise RuntimeError("the server is starting")
        return list(self.bound.get(host, []))

    async def get_fdb_entries(self, ctx: RequestContext, host: str) -> FdbEntries:
        return FdbEntries()  # one host: no other endpoint

    async def update_device_up(self, ctx: RequestContext, port_id: str, host: str) -> None:
        self.up.append((port_id, host))

    async def update_device_down(self, ctx: RequestContext, port_id: str, host: str) -> None:
        self.down.append((port_id, host))

    async def get_routers(self, ctx: RequestContext, host: str,
                          router_ids: list[str] | None = None) -> list[RouterInfo]:
        if self.unavailable:
            raise RuntimeError("the server is starting")
        return [r for r in self.routers.get(host, [])
                if router_ids is None or r.id in router_ids]

    async def update_floatingip_statuses(self, ctx: RequestContext, router_id: str,
                                         statuses: dict[str, str]) -> None:
        self.fip_statuses.update(statuses)


def require_root_and_dnsmasq() -> None:
    if os.geteuid() != 0:
        backend_unavailable("the network agents' tests need root (namespaces, bridges, taps)")
    if shutil.which("dnsmasq") is None:
        backend_unavailable("dnsmasq is not installed")


@dataclass
class AgentBus:
    transport: Transport
    server: ServerDouble
    api: NetworkServerAPI


@contextlib.asynccontextmanager
async def network_server(bus_url: str) -> AsyncIterator[ServerDouble]:
    """A ``ServerDouble`` serving the agents' calls on ``network`` (server ``server-1``) on
    the bus at ``bus_url``; its transport is ``double.transport``, for the test's calls."""
    require_root_and_dnsmasq()
    transport = get_transport(bus_url)
    await transport.start()
    double = ServerDouble()
    rpc = RPCServer(transport, Target(NETWORK_TOPIC, server="server-1"), double,
                    ServerDouble.METHODS)
    await rpc.start()
    double.transport = transport  # type: ignore[attr-defined]
    try:
        yield double
    finally:
        await rpc.stop()
        await transport.close()


@pytest.fixture
async def agent_bus(bus_url: str) -> AsyncIterator[AgentBus]:
    """A bus with the server double serving ``network``; the agents' client of it."""
    async with network_server(bus_url) as double:
        transport = double.transport  # type: ignore[attr-defined]
        yield AgentBus(transport, double, NetworkServerAPI(transport, timeout=20))


@pytest.fixture
def kernel_cleanup() -> Callable[..., None]:
    """Register network ids / device names; whatever of theirs is left is removed after
    the test (a failed test must not leave bridges or namespaces on the machine)."""
    networks: list[str] = []
    devices: list[str] = []
    dirs: list[Path] = []

    def register(*, network: str | None = None, device: str | None = None,
                 directory: Path | None = None) -> None:
        if network is not None:
            networks.append(network)
        if device is not None:
            devices.append(device)
        if directory is not None:
            dirs.append(directory)

    yield register  # type: ignore[misc]

    for directory in dirs:
        pid = dnsmasq._pid_of(directory)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
    for name in devices:
        linux.delete_link(name)
    for network_id in networks:
        linux.delete_namespace(dhcp_namespace(network_id))
        for port in linux.bridge_ports(bridge_name(network_id)):
            linux.delete_link(port.name)
        linux.delete_link(bridge_name(network_id))


def port_tap(port: PortInfo) -> str:
    return tap_name(port.id)
