"""Split mode: ``stratus serve l3-agent`` as a process of its own on RabbitMQ, SIGKILLed and
started again.

The test plays the network server (``ServerDouble`` on ``network``) and the world around a
router: an external test bridge with an "outside" namespace at the external gateway
address, an internal network's bridge with a namespace guest. While the killed agent is
down its router keeps forwarding and NATing; the next process adopts the namespace without
duplicating an address, route or rule; a SIGTERM at the end leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratus.network.agents import linux
from stratus.network.agents.l3.router import (
    RouterDriver,
    gateway_device,
    internal_device,
    outer_device,
    run_in,
)
from stratus.network.objects import FloatingIPInfo, RouterInfo, bridge_name, router_namespace
from tests.e2e.cloud import base_env
from tests.e2e.split import AgentProcess, network_server
from tests.integration.network_agents.conftest import (
    ServerDouble,
    eventually,
    make_network,
    make_port,
)
from tests.integration.network_agents.guest import Guest
from tests.integration.network_agents.l3net import (
    Listener,
    Outside,
    address,
    external_network,
    leg,
)

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]


@pytest.fixture
async def server(rabbit_url: str) -> AsyncIterator[ServerDouble]:
    async with network_server(rabbit_url) as double:
        yield double


def _state(router: RouterInfo, driver: RouterDriver) -> tuple[list[str], list[str], int, str]:
    """What the router's namespace holds: its links, the gateway leg's addresses, the
    number of NAT rules, and its routes."""
    namespace = router_namespace(router.id)
    assert router.gateway is not None
    with linux.ipr_in(namespace) as ns:
        links = sorted(m.get("IFLA_IFNAME") for m in ns.get_links())
        index = ns.link_lookup(ifname=gateway_device(router.gateway.id))[0]
        addresses = sorted(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}"
                           for m in ns.get_addr(index=index, family=2))
    routes = run_in(namespace, ["ip", "-4", "route"], None)
    return links, addresses, len(driver.nat_rules(router.id)), routes


async def test_l3_agent_process_killed_and_restarted(server: ServerDouble, rabbit_url: str,
                                                     tmp_path: Path) -> None:
    host = f"l3split-{uuid.uuid4().hex[:8]}"
    tag = uuid.uuid4().hex[:8]
    bridge, physnet = f"bx{tag}", f"ext-{tag}"
    external = external_network(physnet)
    internal = make_network()
    guest_port = make_port(internal, 5)
    floating_ip = address(external, 40)
    router = RouterInfo(
        id=str(uuid.uuid4()), project_id=internal.project_id, gateway=leg(external, 10),
        interfaces=[leg(internal, 1)],
        floating_ips=[FloatingIPInfo(id="fip-1", floating_ip_address=floating_ip,
                                     fixed_ip_address=address(internal, 5),
                                     port_id=guest_port.id)])
    server.routers[host] = [router]
    driver = RouterDriver(physical_bridges={physnet: bridge})
    agent = AgentProcess(("l3-agent",), tmp_path / "data", base_env(
        STRATUS_BUS_URL=rabbit_url, STRATUS_NETWORK__BACKEND="linuxbridge",
        STRATUS_COMPUTE__HOST=host, STRATUS_NETWORK__AGENT_REPORT_INTERVAL="0.5",
        STRATUS_NETWORK__PHYSICAL_BRIDGES=json.dumps({physnet: bridge})),
        tmp_path / "l3-agent.log")
    await asyncio.to_thread(linux.ensure_bridge, bridge_name(internal.id))
    try:
        async with (Outside(bridge, external.subnets[0].cidr) as outside,
                    Guest(bridge_name(internal.id), guest_port.mac_address,
                          tmp_path / "guest") as guest):
            await guest.add_address(f"{address(internal, 5)}/24")
            await asyncio.to_thread(_default_route, guest.namespace, address(internal, 1))
            agent.start()
            await eventually(lambda: server.fip_statuses.get("fip-1") == "ACTIVE", within=60,
                             message=f"floating IP ACTIVE; log:\n{agent.log}")
            assert {s.agent_type for s in server.states} == {"L3 agent"}
            async with (Listener(guest.namespace) as on_guest,
                        Listener(outside.namespace) as out):
                assert await on_guest.seen_from(outside.namespace,
                                                floating_ip) == outside.address
                assert await out.seen_from(guest.namespace, outside.address) == floating_ip
                before = await asyncio.to_thread(_state, router, driver)
                assert before[1] == [f"{address(external, 10)}/24", f"{floating_ip}/32"]
                assert before[2] == 5  # DNAT x2, SNAT, hairpin, subnet SNAT

                # SIGKILL: nothing cleaned up, the router keeps working meanwhile.
                assert agent.signal(signal.SIGKILL) == -signal.SIGKILL
                assert await on_guest.seen_from(outside.namespace,
                                                floating_ip) == outside.address
                assert await out.seen_from(guest.namespace, outside.address) == floating_ip

                # Started again: adopts it; nothing duplicated.
                server.states.clear()
                server.fip_statuses.clear()
                agent.start()
                await eventually(lambda: server.fip_statuses.get("fip-1") == "ACTIVE",
                                 within=60, message="floating IP ACTIVE again")
                assert await asyncio.to_thread(_state, router, driver) == before
                assert await on_guest.seen_from(outside.namespace,
                                                floating_ip) == outside.address
                assert await out.seen_from(guest.namespace, outside.address) == floating_ip

            # A clean stop removes the router: nothing of it is left on the machine.
            await eventually(lambda: agent.serving(), within=60, message="serving")
            assert agent.signal(signal.SIGTERM) == 0
            assert not await asyncio.to_thread(linux.namespace_exists,
                                               router_namespace(router.id))
            for port in (router.gateway, *router.interfaces):
                assert port is not None
                for inner in (gateway_device(port.id), internal_device(port.id)):
                    assert await asyncio.to_thread(linux.get_link, outer_device(inner)) is None
    finally:
        if agent.process is not None and agent.process.poll() is None:
            agent.signal(signal.SIGKILL)
        await asyncio.to_thread(driver.remove, router.id)
        await asyncio.to_thread(linux.delete_link, bridge)
        await asyncio.to_thread(linux.delete_link, bridge_name(internal.id))


def _default_route(namespace: str, gateway: str) -> None:
    with linux.ipr_in(namespace) as ns:
        ns.route("replace", dst="0.0.0.0/0", gateway=gateway)
