"""The l2-agent on the real kernel, driven over the bus (memory and RabbitMQ)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import random
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from stratus.core.bus import RPCServer, Target, UnknownMethod, get_transport
from stratus.core.context import RequestContext
from stratus.network.agents import linux
from stratus.network.agents.l2 import L2AgentManager, L2AgentOptions
from stratus.network.agents.l2.manager import vxlan_name
from stratus.network.objects import DeviceDetails, bridge_name, tap_name
from stratus.network.rpcapi import L2_AGENT_TOPIC, NETWORK_TOPIC, L2AgentAPI, NetworkServerAPI
from tests.integration.network_agents.conftest import (
    AgentBus,
    ServerDouble,
    eventually,
    make_network,
    make_port,
)

CTX = RequestContext(user_id="network-server", project_id="service", roles=["service"])
HOSTS = ("l2-host-a", "l2-host-b")


@dataclass
class RunningAgent:
    agent: L2AgentManager
    servers: list[RPCServer]

    async def stop(self) -> None:
        for rpc in self.servers:
            await rpc.stop()
        await self.agent.stop()


async def start_agent(agent_bus: AgentBus, tunnel_ip: str | None = None,
                      state_file: Path | None = None) -> RunningAgent:
    agent = L2AgentManager(HOSTS, agent_bus.api,
                           L2AgentOptions(tunnel_ip=tunnel_ip, report_interval=0.2,
                                          state_file=state_file))
    servers = []
    for host in HOSTS:
        rpc = RPCServer(agent_bus.transport, Target(L2_AGENT_TOPIC, server=host),
                        agent.endpoint(host), L2AgentManager.METHODS)
        await rpc.start()
        servers.append(rpc)
    await agent.start()
    return RunningAgent(agent, servers)


@pytest.fixture
async def l2(agent_bus: AgentBus) -> AsyncIterator[tuple[AgentBus, L2AgentAPI]]:
    yield agent_bus, L2AgentAPI(agent_bus.transport)


def in_kernel(fn: Callable[..., object], *args: object) -> asyncio.Future[object]:
    return asyncio.ensure_future(asyncio.to_thread(fn, *args))


async def test_port_bound_and_unbound(l2: tuple[AgentBus, L2AgentAPI],
                                      kernel_cleanup: Callable[..., None]) -> None:
    agent_bus, api = l2
    network = make_network(mtu=1400)
    port = make_port(network, 30, binding_host_id=HOSTS[1])
    kernel_cleanup(network=network.id, device=tap_name(port.id))
    running = await start_agent(agent_bus)
    try:
        states = {(s.host, s.agent_type, s.binary) for s in agent_bus.server.states}
        assert states == {(h, "Linux bridge agent", "stratus-l2-agent") for h in HOSTS}

        await api.port_bound(CTX, HOSTS[1], DeviceDetails(port=port, network=network))
        await eventually(lambda: (port.id, HOSTS[1]) in agent_bus.server.up,
                         message="update_device_up")
        tap = await in_kernel(linux.get_link, tap_name(port.id))
        bridge = await in_kernel(linux.get_link, bridge_name(network.id))
        assert isinstance(tap, linux.Link) and isinstance(bridge, linux.Link)
        assert tap.kind == "tun" and tap.up and tap.mtu == 1400
        assert bridge.kind == "bridge" and tap.master == bridge.index
        # Only the named host answered.
        assert agent_bus.server.up == [(port.id, HOSTS[1])]

        # Bound twice (a redelivery): still one tap, reported up again.
        await api.port_bound(CTX, HOSTS[1], DeviceDetails(port=port, network=network))
        await eventually(lambda: len(agent_bus.server.up) == 2, message="second up")

        await api.port_unbound(CTX, HOSTS[1], port.id, network.id)
        await eventually(lambda: (port.id, HOSTS[1]) in agent_bus.server.down,
                         message="update_device_down")
        assert await in_kernel(linux.get_link, tap_name(port.id)) is None
        assert await in_kernel(linux.get_link, bridge_name(network.id)) is None
    finally:
        await running.stop()


async def test_bridge_stays_while_dhcp_veth_uses_it(l2: tuple[AgentBus, L2AgentAPI],
                                                    kernel_cleanup: Callable[..., None]
                                                    ) -> None:
    agent_bus, api = l2
    network = make_network()
    port = make_port(network, 31)
    veth = "tap" + port.id[-11:]  # stands for the DHCP agent's veth end in the bridge
    kernel_cleanup(network=network.id, device=veth)
    running = await start_agent(agent_bus)
    try:
        await api.port_bound(CTX, HOSTS[0], DeviceDetails(port=port, network=network))
        await eventually(lambda: agent_bus.server.up, message="up")

        def add_veth() -> None:
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                ipr.link("add", ifname=veth, kind="veth", peer=veth[:-1] + "p")
                index = ipr.link_lookup(ifname=veth)[0]
                ipr.link("set", index=index,
                         master=ipr.link_lookup(ifname=bridge_name(network.id))[0])

        await asyncio.to_thread(add_veth)
        await api.port_unbound(CTX, HOSTS[0], port.id, network.id)
        await eventually(lambda: agent_bus.server.down, message="down")
        assert await in_kernel(linux.get_link, tap_name(port.id)) is None
        assert await in_kernel(linux.get_link, bridge_name(network.id)) is not None

        # network_deleted (fanout) removes the bridge whatever is left in it.
        await api.network_deleted(CTX, network.id)

        async def bridge_gone() -> None:
            while await in_kernel(linux.get_link, bridge_name(network.id)):  # noqa: ASYNC110
                await asyncio.sleep(0.02)

        await asyncio.wait_for(bridge_gone(), 10)
    finally:
        await running.stop()


async def test_vxlan_network(l2: tuple[AgentBus, L2AgentAPI],
                             kernel_cleanup: Callable[..., None]) -> None:
    agent_bus, api = l2
    vni = random.randint(100_000, 16_000_000)
    network = make_network(network_type="vxlan", segmentation_id=vni)
    port = make_port(network, 32)
    kernel_cleanup(network=network.id, device=tap_name(port.id))
    kernel_cleanup(device=vxlan_name(vni))
    running = await start_agent(agent_bus, tunnel_ip="127.0.0.1")
    try:
        await api.port_bound(CTX, HOSTS[0], DeviceDetails(port=port, network=network))
        await eventually(lambda: agent_bus.server.up, message="up")
        vxlan = await in_kernel(linux.get_link, vxlan_name(vni))
        bridge = await in_kernel(linux.get_link, bridge_name(network.id))
        assert isinstance(vxlan, linux.Link) and isinstance(bridge, linux.Link)
        assert vxlan.kind == "vxlan" and vxlan.master == bridge.index
        await api.port_unbound(CTX, HOSTS[0], port.id, network.id)
        await eventually(lambda: agent_bus.server.down, message="down")
        assert await in_kernel(linux.get_link, vxlan_name(vni)) is None
        assert await in_kernel(linux.get_link, bridge_name(network.id)) is None
    finally:
        await running.stop()


async def test_resync_plugs_bound_ports(l2: tuple[AgentBus, L2AgentAPI],
                                        kernel_cleanup: Callable[..., None]) -> None:
    agent_bus, _ = l2
    network = make_network()
    ports = [make_port(network, 40 + i, binding_host_id=host) for i, host in enumerate(HOSTS)]
    for port in ports:
        kernel_cleanup(device=tap_name(port.id))
        agent_bus.server.bound.setdefault(port.binding_host_id, []).append(
            DeviceDetails(port=port, network=network))
    kernel_cleanup(network=network.id)
    running = await start_agent(agent_bus)
    try:
        assert sorted(agent_bus.server.up) == sorted((p.id, p.binding_host_id) for p in ports)
        bridge = await in_kernel(linux.bridge_ports, bridge_name(network.id))
        assert isinstance(bridge, list)
        assert {p.name for p in bridge} == {tap_name(p.id) for p in ports}
    finally:
        await running.stop()
    # A clean stop unplugs what it plugged.
    for port in ports:
        assert await in_kernel(linux.get_link, tap_name(port.id)) is None
    assert await in_kernel(linux.get_link, bridge_name(network.id)) is None


async def test_restart_after_crash(l2: tuple[AgentBus, L2AgentAPI], tmp_path: Path,
                                   kernel_cleanup: Callable[..., None]) -> None:
    """Taps outlive an agent that crashed; the next one reads what it had plugged: a port
    still bound here is reported up again, one deleted meanwhile is unplugged."""
    agent_bus, api = l2
    network = make_network()
    kept, gone = (make_port(network, 50 + i, binding_host_id=HOSTS[0]) for i in range(2))
    for port in (kept, gone):
        kernel_cleanup(device=tap_name(port.id))
    kernel_cleanup(network=network.id)
    state_file = tmp_path / "l2-agent.json"
    crashed = await start_agent(agent_bus, state_file=state_file)
    for port in (kept, gone):
        await api.port_bound(CTX, HOSTS[0], DeviceDetails(port=port, network=network))
    await eventually(lambda: len(agent_bus.server.up) == 2, message="both up")
    for rpc in crashed.servers:
        await rpc.stop()
    await crashed.agent.stop(unplug=False)  # a crash: nothing is cleaned up

    # Meanwhile the server deleted one port; the other is still bound here.
    agent_bus.server.bound[HOSTS[0]] = [DeviceDetails(port=kept, network=network)]
    agent_bus.server.up.clear()
    running = await start_agent(agent_bus, state_file=state_file)
    try:
        assert (kept.id, HOSTS[0]) in agent_bus.server.up
        assert await in_kernel(linux.get_link, tap_name(kept.id)) is not None
        assert await in_kernel(linux.get_link, tap_name(gone.id)) is None
        assert set(running.agent.ports) == {kept.id}
    finally:
        await running.stop()
    assert await in_kernel(linux.get_link, tap_name(kept.id)) is None


async def test_port_moving_between_hosts_of_the_agent(l2: tuple[AgentBus, L2AgentAPI],
                                                      kernel_cleanup: Callable[..., None]
                                                      ) -> None:
    """Bound on the new host before unbound from the old one (the two hosts' queues race):
    the tap stays, for the new host."""
    agent_bus, api = l2
    network = make_network()
    port = make_port(network, 60)
    kernel_cleanup(network=network.id, device=tap_name(port.id))
    running = await start_agent(agent_bus)
    try:
        await api.port_bound(CTX, HOSTS[0], DeviceDetails(port=port, network=network))
        await eventually(lambda: (port.id, HOSTS[0]) in agent_bus.server.up, message="up a")
        await api.port_bound(CTX, HOSTS[1], DeviceDetails(port=port, network=network))
        await eventually(lambda: (port.id, HOSTS[1]) in agent_bus.server.up, message="up b")
        await api.port_unbound(CTX, HOSTS[0], port.id, network.id)
        await eventually(lambda: (port.id, HOSTS[0]) in agent_bus.server.down,
                         message="down a")
        assert await in_kernel(linux.get_link, tap_name(port.id)) is not None
        assert running.agent.ports[port.id] == (HOSTS[1], network.id)
    finally:
        await running.stop()


def _hold_tap(name: str) -> int:
    """Open the tap as a guest's QEMU does (TUNSETIFF on /dev/net/tun): its carrier goes up."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0002 | 0x1000))
    except BaseException:
        os.close(fd)
        raise
    return fd


async def test_a_tap_in_use_outlives_a_clean_stop(l2: tuple[AgentBus, L2AgentAPI],
                                                  tmp_path: Path,
                                                  kernel_cleanup: Callable[..., None]) -> None:
    """A guest that outlives the process keeps its tap; the next start takes it over."""
    agent_bus, api = l2
    network = make_network()
    held, idle = (make_port(network, 70 + i, binding_host_id=HOSTS[0]) for i in range(2))
    for port in (held, idle):
        kernel_cleanup(device=tap_name(port.id))
    kernel_cleanup(network=network.id)
    state_file = tmp_path / "l2-agent.json"
    running = await start_agent(agent_bus, state_file=state_file)
    fd = None
    try:
        for port in (held, idle):
            await api.port_bound(CTX, HOSTS[0], DeviceDetails(port=port, network=network))
        await eventually(lambda: len(agent_bus.server.up) == 2, message="both up")
        fd = await asyncio.to_thread(_hold_tap, tap_name(held.id))
        for _ in range(500):
            link = await in_kernel(linux.get_link, tap_name(held.id))
            if isinstance(link, linux.Link) and link.carrier:
                break
            await asyncio.sleep(0.01)
        assert isinstance(link, linux.Link) and link.carrier
        await running.stop()
        assert await in_kernel(linux.get_link, tap_name(held.id)) is not None
        assert await in_kernel(linux.get_link, tap_name(idle.id)) is None
        agent_bus.server.bound[HOSTS[0]] = [DeviceDetails(port=held, network=network)]
        agent_bus.server.up.clear()
        running = await start_agent(agent_bus, state_file=state_file)
        assert (held.id, HOSTS[0]) in agent_bus.server.up
        assert set(running.agent.ports) == {held.id}
    finally:
        if fd is not None:
            os.close(fd)
        await running.stop()
    assert await in_kernel(linux.get_link, tap_name(held.id)) is None


async def test_a_failed_resync_is_retried(l2: tuple[AgentBus, L2AgentAPI],
                                          kernel_cleanup: Callable[..., None]) -> None:
    agent_bus, _ = l2
    network = make_network()
    port = make_port(network, 80, binding_host_id=HOSTS[0])
    kernel_cleanup(network=network.id, device=tap_name(port.id))
    agent_bus.server.bound[HOSTS[0]] = [DeviceDetails(port=port, network=network)]
    agent_bus.server.unavailable = True
    running = await start_agent(agent_bus)
    try:
        assert agent_bus.server.up == []
        agent_bus.server.unavailable = False
        await eventually(lambda: (port.id, HOSTS[0]) in agent_bus.server.up,
                         message="plugged once the server answered")
    finally:
        await running.stop()


async def test_resync_with_a_server_that_cannot_list_bound_ports(bus_url: str) -> None:
    """A server without ``get_bound_ports`` answers ``UnknownMethod``, which reaches the
    agent as that type: the resync is skipped, not failed."""
    transport = get_transport(bus_url)
    await transport.start()
    older = tuple(m for m in ServerDouble.METHODS if m != "get_bound_ports")
    rpc = RPCServer(transport, Target(NETWORK_TOPIC, server="server-1"), ServerDouble(),
                    older)
    await rpc.start()
    try:
        with pytest.raises(UnknownMethod):
            await NetworkServerAPI(transport, timeout=20).get_bound_ports(CTX, HOSTS[0])
        agent = L2AgentManager(HOSTS, NetworkServerAPI(transport, timeout=20),
                               L2AgentOptions(report_interval=0.2))
        await agent.resync(HOSTS[0])  # returns: nothing to plug, nothing raised
    finally:
        await rpc.stop()
        await transport.close()
