"""Split mode: ``stratus serve dhcp-agent l2-agent`` as a process of its own on RabbitMQ.

The test plays the network server on the same virtual host (``ServerDouble`` behind a real
``RPCServer`` on ``network``) and drives the agents through their bus APIs. The process is
then killed (SIGKILL: nothing cleaned up) and started again: the new one adopts the network
(a fresh dnsmasq replaces the orphan) and reports the still-bound port up again. A SIGTERM at
the end leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratus.core.context import RequestContext
from stratus.network.agents import linux
from stratus.network.agents.dhcp import dnsmasq
from stratus.network.objects import DeviceDetails, bridge_name, dhcp_namespace, tap_name
from stratus.network.rpcapi import DhcpAgentAPI, L2AgentAPI
from tests.e2e.cloud import base_env
from tests.e2e.split import AgentProcess, network_server
from tests.integration.network_agents.conftest import (
    ServerDouble,
    eventually,
    hosts_text,
    make_network,
    make_port,
)

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]

CTX = RequestContext(user_id="network-server", project_id="service", roles=["service"])


@pytest.fixture
async def server(rabbit_url: str) -> AsyncIterator[ServerDouble]:
    async with network_server(rabbit_url) as double:
        yield double


async def test_agents_as_a_process_of_their_own(server: ServerDouble, rabbit_url: str,
                                                tmp_path: Path) -> None:
    host = f"split-{uuid.uuid4().hex[:8]}"
    network = make_network()
    port = make_port(network, 30, binding_host_id=host)
    network = network.model_copy(update={"ports": [port]})
    server.networks[network.id] = network
    agents = AgentProcess(("dhcp-agent", "l2-agent"), tmp_path / "data", base_env(
        STRATUS_BUS_URL=rabbit_url, STRATUS_NETWORK__BACKEND="linuxbridge",
        STRATUS_COMPUTE__HOST=host, STRATUS_NETWORK__AGENT_REPORT_INTERVAL="0.5",
        STRATUS_METADATA__URL="http://127.0.0.1:9", STRATUS_METADATA__SHARED_SECRET="s"),
        tmp_path / "agents.log")
    state = tmp_path / "data" / "dhcp" / network.id
    transport = server.transport  # type: ignore[attr-defined]
    try:
        agents.start()
        await eventually(lambda: {s.agent_type for s in server.states if s.start_flag}
                         >= {"DHCP agent", "Linux bridge agent"}, within=60,
                         message="both agents reported in")
        # The resync on start served the network.
        await eventually(lambda: dnsmasq._pid_of(state) is not None, message="dnsmasq runs")
        first = dnsmasq._pid_of(state)
        await L2AgentAPI(transport).port_bound(CTX, host, DeviceDetails(
            port=port, network=network))
        await eventually(lambda: (port.id, host) in server.up, message="port up")
        server.bound[host] = [DeviceDetails(port=port, network=network)]
        vm2 = make_port(network, 31)
        await DhcpAgentAPI(transport).port_updated(CTX, vm2)
        await eventually(lambda: vm2.mac_address in hosts_text(state),
                         message="vm2 in the hosts file")

        # A crash: nothing is cleaned up; the next process takes over.
        assert agents.signal(signal.SIGKILL) == -signal.SIGKILL
        assert await asyncio.to_thread(linux.namespace_exists, dhcp_namespace(network.id))
        server.up.clear()
        server.states.clear()
        agents.start()
        await eventually(lambda: (port.id, host) in server.up, within=60,
                         message="port reported up again after the restart")
        await eventually(lambda: dnsmasq._pid_of(state) not in (None, first),
                         message="a fresh dnsmasq")
        assert first is not None and not _alive(first)
        assert await asyncio.to_thread(linux.get_link, tap_name(port.id)) is not None

        # A clean stop removes everything.
        await eventually(lambda: agents.serving(), within=60, message="serving")
        assert agents.signal(signal.SIGTERM) == 0
        assert await asyncio.to_thread(_left, network.id, port.id) == []
        assert not state.exists()
    finally:
        if agents.process is not None and agents.process.poll() is None:
            agents.signal(signal.SIGKILL)
        pid = dnsmasq._pid_of(state)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(_clean, network.id, port.id)


def _left(network_id: str, port_id: str) -> list[str]:
    """What of the network and port is still on this machine."""
    left = []
    if linux.namespace_exists(dhcp_namespace(network_id)):
        left.append(dhcp_namespace(network_id))
    for name in (bridge_name(network_id), tap_name(port_id)):
        if linux.get_link(name) is not None:
            left.append(name)
    return left


def _clean(network_id: str, port_id: str) -> None:
    linux.delete_link(tap_name(port_id))
    linux.delete_namespace(dhcp_namespace(network_id))
    for link in linux.bridge_ports(bridge_name(network_id)):
        linux.delete_link(link.name)
    linux.delete_link(bridge_name(network_id))


def _alive(pid: int) -> bool:
    """Running (a zombie left for an init that does not reap is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
