"""The dhcp-agent on the real kernel and dnsmasq, driven over the bus (memory and RabbitMQ)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stratus.core.bus import RPCServer, Target
from stratus.core.context import RequestContext
from stratus.network.agents import linux
from stratus.network.agents.dhcp import DhcpAgentManager, DhcpAgentOptions
from stratus.network.agents.dhcp.manager import inner_device
from stratus.network.objects import bridge_name, dhcp_namespace, tap_name
from stratus.network.rpcapi import DHCP_AGENT_TOPIC, DhcpAgentAPI
from tests.integration.network_agents.conftest import (
    AgentBus,
    eventually,
    hosts_text,
    make_network,
    make_port,
)

CTX = RequestContext(user_id="network-server", project_id="service", roles=["service"])


def ns_addresses(namespace: str, device: str) -> set[str]:
    with linux.ipr_in(namespace) as ns:
        index = ns.link_lookup(ifname=device)[0]
        return {f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}"
                for m in ns.get_addr(index=index, family=2)}


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


async def start_agent(agent_bus: AgentBus, state_dir: Path,
                      host: str = "net-host-1") -> tuple[DhcpAgentManager, RPCServer]:
    agent = DhcpAgentManager(host, agent_bus.api,
                             DhcpAgentOptions(state_dir=state_dir, report_interval=0.2,
                                              resync_interval=3600))
    rpc = RPCServer(agent_bus.transport, Target(DHCP_AGENT_TOPIC, server=host), agent,
                    agent.METHODS)
    await rpc.start()
    await agent.start()
    return agent, rpc


async def test_network_lifecycle(agent_bus: AgentBus, tmp_path: Path,
                                 kernel_cleanup: Callable[..., None]) -> None:
    network = make_network()
    vm1 = make_port(network, 10, hostname="vm-one")
    network = network.model_copy(update={"ports": [vm1]})
    agent_bus.server.networks[network.id] = network
    kernel_cleanup(network=network.id, directory=tmp_path / "dhcp" / network.id)
    agent, rpc = await start_agent(agent_bus, tmp_path / "dhcp")
    try:
        # Resync on start: namespace, veth in the bridge, addresses, dnsmasq with its files.
        served = agent.networks[network.id]
        dhcp_port = served.dhcp_port
        namespace = dhcp_namespace(network.id)
        assert await asyncio.to_thread(linux.namespace_exists, namespace)
        bridge_ports = {p.name: p for p in await asyncio.to_thread(
            linux.bridge_ports, bridge_name(network.id))}
        assert bridge_ports[tap_name(dhcp_port.id)].kind == "veth"
        assert await asyncio.to_thread(ns_addresses, namespace, inner_device(dhcp_port.id)) == {
            f"{dhcp_port.fixed_ips[0].ip_address}/24", "169.254.169.254/32"}
        pid = served.process.pid
        assert alive(pid)
        assert pid is not None
        args = cmdline(pid)
        directory = tmp_path / "dhcp" / network.id
        assert f"--dhcp-hostsdir={directory / 'hosts'}" in args
        assert f"--interface={inner_device(dhcp_port.id)}" in args
        prefix = network.subnets[0].cidr.rsplit(".", 1)[0]
        assert [p.name for p in (directory / "hosts").iterdir()] == [vm1.id]
        hosts = (directory / "hosts" / vm1.id).read_text()
        assert hosts == f"{vm1.mac_address},{prefix}.10,vm-one\n"
        opts = (directory / "opts").read_text()
        tag = f"tag:subnet-{network.subnets[0].id}"
        assert f"{tag},option:router,{prefix}.1\n" in opts
        assert f"{tag},option:dns-server,192.0.2.53\n" in opts
        assert f"{tag},option:mtu,1450\n" in opts
        routes = f"169.254.169.254/32,{prefix}.2,0.0.0.0/0,{prefix}.1"
        assert f"{tag},option:classless-static-route,{routes}\n" in opts
        assert f"{tag},249,{routes}\n" in opts
        # dnsmasq runs inside the namespace.
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(
            f"/run/netns/{namespace}").st_ino
        assert agent_bus.server.states[0].agent_type == "DHCP agent"
        assert agent_bus.server.states[0].binary == "stratus-dhcp-agent"
        assert agent_bus.server.states[0].start_flag

        # Port events over the bus write or remove the port's file in hosts/: dnsmasq reads
        # a new one by itself, and is reloaded (not restarted) for one removed.
        api = DhcpAgentAPI(agent_bus.transport)
        vm2 = make_port(network, 11)
        await api.port_updated(CTX, vm2)
        await eventually(lambda: f"{prefix}.11,host-{prefix.replace('.', '-')}-11"
                         in hosts_text(directory), message="vm2 in hosts")
        assert served.process.pid == pid and served.process.reloads == 0
        await api.port_deleted(CTX, network.id, vm1.id)
        await eventually(lambda: vm1.mac_address not in hosts_text(directory),
                         message="vm1 gone from hosts")
        # The file goes before the leases are released and dnsmasq reloaded.
        await eventually(lambda: served.process.reloads == 1, message="dnsmasq reloaded")
        assert served.process.pid == pid

        # A dnsmasq that dies is started again.
        os.kill(pid, signal.SIGKILL)
        await eventually(lambda: served.process.restarts == 1, message="dnsmasq restarted")
        assert served.process.pid not in (None, pid)
        assert alive(served.process.pid)

        # Heartbeats keep coming.
        await eventually(lambda: len(agent_bus.server.states) >= 2, message="heartbeat")

        # Deleting the network leaves nothing behind.
        new_pid = served.process.pid
        await api.network_deleted(CTX, network.id)
        await eventually(lambda: network.id not in agent.networks, message="network removed")
        await eventually(lambda: (network.id, "net-host-1") in agent_bus.server.released,
                         message="DHCP port released")
        assert not alive(new_pid)
        assert not await asyncio.to_thread(linux.namespace_exists, namespace)
        assert await asyncio.to_thread(linux.get_link, tap_name(dhcp_port.id)) is None
        assert await asyncio.to_thread(linux.get_link, bridge_name(network.id)) is None
        assert not directory.exists()
    finally:
        await rpc.stop()
        await agent.stop()


async def test_network_without_dhcp_is_not_served(agent_bus: AgentBus, tmp_path: Path,
                                                  kernel_cleanup: Callable[..., None]) -> None:
    network = make_network()
    kernel_cleanup(network=network.id)
    agent, rpc = await start_agent(agent_bus, tmp_path / "dhcp")
    try:
        api = DhcpAgentAPI(agent_bus.transport)
        agent_bus.server.networks[network.id] = network
        await api.network_updated(CTX, network)
        await eventually(lambda: network.id in agent.networks, message="served")
        subnet = network.subnets[0].model_copy(update={"enable_dhcp": False})
        off = network.model_copy(update={"subnets": [subnet]})
        agent_bus.server.networks[network.id] = off
        await api.network_updated(CTX, off)
        await eventually(lambda: agent_bus.server.released, message="DHCP port released")
        assert network.id not in agent.networks
        assert not await asyncio.to_thread(linux.namespace_exists, dhcp_namespace(network.id))
        assert agent_bus.server.released == [(network.id, "net-host-1")]
    finally:
        await rpc.stop()
        await agent.stop()


async def test_restart_after_crash(agent_bus: AgentBus, tmp_path: Path,
                                   kernel_cleanup: Callable[..., None]) -> None:
    """An agent that died without cleaning up: the next one adopts the networks still active
    (a fresh dnsmasq replaces the orphan) and removes those deleted meanwhile."""
    state_dir = tmp_path / "dhcp"
    kept, deleted = make_network(), make_network()
    for network in (kept, deleted):
        network = network.model_copy(update={"ports": [make_port(network, 20)]})
        agent_bus.server.networks[network.id] = network
        kernel_cleanup(network=network.id, directory=state_dir / network.id)
    crashed, rpc = await start_agent(agent_bus, state_dir)
    await rpc.stop()
    orphans = {n: s.process.pid for n, s in crashed.networks.items()}
    deleted_port = crashed.networks[deleted.id].dhcp_port
    # A crash: the agent's tasks stop, its dnsmasq processes and namespaces stay.
    for served in crashed.networks.values():
        served.process._stopping = True
        if served.process._watcher is not None:
            served.process._watcher.cancel()
    crashed.networks.clear()
    assert all(alive(pid) for pid in orphans.values())

    del agent_bus.server.networks[deleted.id]
    # Meanwhile the kept network lost its port and gained another; a write was cut short.
    hosts = state_dir / kept.id / "hosts"
    (gone,) = agent_bus.server.networks[kept.id].ports
    assert [p.name for p in hosts.iterdir()] == [gone.id]
    added = make_port(kept, 21)
    agent_bus.server.networks[kept.id] = kept.model_copy(update={"ports": [added]})
    (hosts / f".{added.id}.tmp").write_text("half a line")
    agent, rpc = await start_agent(agent_bus, state_dir)
    try:
        assert set(agent.networks) == {kept.id}
        # The resync made hosts/ the truth: the stale file and the cut write are gone.
        assert [p.name for p in hosts.iterdir()] == [added.id]
        assert added.mac_address in hosts_text(state_dir / kept.id)
        assert not any(alive(pid) for pid in orphans.values())
        assert alive(agent.networks[kept.id].process.pid)
        assert await asyncio.to_thread(linux.namespace_exists, dhcp_namespace(kept.id))
        assert not await asyncio.to_thread(linux.namespace_exists, dhcp_namespace(deleted.id))
        assert await asyncio.to_thread(linux.get_link, tap_name(deleted_port.id)) is None
        assert await asyncio.to_thread(linux.get_link, bridge_name(deleted.id)) is None
        assert not (state_dir / deleted.id).exists()
    finally:
        await rpc.stop()
        await agent.stop()
    # A clean stop removes everything it made.
    assert not await asyncio.to_thread(linux.namespace_exists, dhcp_namespace(kept.id))
    assert await asyncio.to_thread(linux.get_link, bridge_name(kept.id)) is None
    assert not (state_dir / kept.id).exists()


async def test_an_event_during_a_resync_wins_over_its_older_snapshot(
        agent_bus: AgentBus, tmp_path: Path, kernel_cleanup: Callable[..., None]) -> None:
    agent, rpc = await start_agent(agent_bus, tmp_path / "dhcp")
    try:
        network = make_network()
        kernel_cleanup(network=network.id, directory=tmp_path / "dhcp" / network.id)
        agent_bus.server.hold_snapshot = asyncio.Event()
        resync = asyncio.create_task(agent.resync())
        await agent_bus.server.snapshot_taken.wait()  # the snapshot lacks the network
        agent_bus.server.networks[network.id] = network
        await DhcpAgentAPI(agent_bus.transport).network_updated(CTX, network)
        await eventually(lambda: network.id in agent.networks and agent.networks[
            network.id].process.pid is not None, message="served")
        agent_bus.server.hold_snapshot.set()
        await resync
        assert network.id in agent.networks
        assert await asyncio.to_thread(linux.namespace_exists, dhcp_namespace(network.id))
        assert agent_bus.server.released == []
    finally:
        await rpc.stop()
        await agent.stop()


async def test_stop_removes_every_network(agent_bus: AgentBus, tmp_path: Path,
                                          kernel_cleanup: Callable[..., None]) -> None:
    networks = [make_network() for _ in range(6)]
    for network in networks:
        agent_bus.server.networks[network.id] = network
        kernel_cleanup(network=network.id, directory=tmp_path / "dhcp" / network.id)
    agent, rpc = await start_agent(agent_bus, tmp_path / "dhcp")
    pids = [s.process.pid for s in agent.networks.values()]
    assert len(pids) == 6 and all(alive(p) for p in pids)
    await rpc.stop()
    await agent.stop()
    assert not any(alive(p) for p in pids)
    for network in networks:
        assert not await asyncio.to_thread(linux.namespace_exists, dhcp_namespace(network.id))
        assert await asyncio.to_thread(linux.get_link, bridge_name(network.id)) is None
    assert list((tmp_path / "dhcp").iterdir()) == []


async def test_concurrent_port_events_all_land(agent_bus: AgentBus, tmp_path: Path,
                                               kernel_cleanup: Callable[..., None]) -> None:
    network = make_network()
    agent_bus.server.networks[network.id] = network
    directory = tmp_path / "dhcp" / network.id
    kernel_cleanup(network=network.id, directory=directory)
    agent, rpc = await start_agent(agent_bus, tmp_path / "dhcp")
    refresh = agent._refresh
    refreshes = 0

    async def counted(*args: Any, **kwargs: Any) -> None:
        nonlocal refreshes
        refreshes += 1
        await refresh(*args, **kwargs)

    agent._refresh = counted  # type: ignore[method-assign]
    try:
        api = DhcpAgentAPI(agent_bus.transport)
        ports = [make_port(network, 100 + i) for i in range(12)]
        # A refresh under way holds the network's lock while the events arrive: they wait,
        # and are then applied together, with one refresh.
        async with agent._lock(network.id):
            await asyncio.gather(*(api.port_updated(CTX, p) for p in ports))
            await eventually(lambda: len(agent._queued.get(network.id, [])) == len(ports),
                             message="every event waiting")
        await eventually(lambda: all(p.mac_address in hosts_text(directory)
                                     for p in ports), message="every port in hosts")
        assert refreshes == 1
        assert agent.networks[network.id].process.reloads == 0
        await asyncio.gather(*(api.port_deleted(CTX, network.id, p.id) for p in ports[:6]))
        await eventually(lambda: not any(p.mac_address in hosts_text(directory)
                                         for p in ports[:6]), message="six ports gone")
        assert all(p.mac_address in hosts_text(directory) for p in ports[6:])
        assert sorted(p.name for p in (directory / "hosts").iterdir()) == sorted(
            p.id for p in ports[6:])
    finally:
        await rpc.stop()
        await agent.stop()


async def test_a_failed_first_resync_is_retried_at_the_next_heartbeat(
        agent_bus: AgentBus, tmp_path: Path, kernel_cleanup: Callable[..., None]) -> None:
    network = make_network()
    agent_bus.server.networks[network.id] = network
    kernel_cleanup(network=network.id, directory=tmp_path / "dhcp" / network.id)
    agent_bus.server.unavailable = True
    agent, rpc = await start_agent(agent_bus, tmp_path / "dhcp")  # resync_interval: 1 h
    try:
        assert agent.networks == {}
        agent_bus.server.unavailable = False
        await eventually(lambda: network.id in agent.networks
                         and agent.networks[network.id].process.pid is not None,
                         message="served after the server came up")
    finally:
        await rpc.stop()
        await agent.stop()
