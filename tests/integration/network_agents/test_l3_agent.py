"""The l3-agent on the real kernel, driven over the bus (memory and RabbitMQ) by the server
double: resync on start, router events, floating IP statuses, a crash and restart that
adopts what was made, and a clean stop that leaves nothing behind."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stratus.core.bus import RPCServer, Target
from stratus.core.context import RequestContext
from stratus.network.agents import linux
from stratus.network.agents.l3.manager import L3AgentManager, L3AgentOptions
from stratus.network.agents.l3.router import (
    RouterDriver,
    gateway_device,
    internal_device,
    outer_device,
)
from stratus.network.objects import (
    FloatingIPInfo,
    NetworkInfo,
    RouterInfo,
    bridge_name,
    router_namespace,
)
from stratus.network.rpcapi import L3_AGENT_TOPIC, L3AgentAPI
from tests.integration.network_agents.conftest import (
    AgentBus,
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
    reachable,
)

CTX = RequestContext(user_id="network-server", project_id="service", roles=["service"])
HOST = "l3-host-1"


@dataclass
class Setup:
    bus: AgentBus
    physical_bridges: dict[str, str]
    external: NetworkInfo
    internal: NetworkInfo
    outside: Outside
    guest: Guest
    made: int = 0
    router_ids: list[str] = field(default_factory=list)

    def router(self, *floating: str) -> RouterInfo:
        """A router with addresses of its own: the first is the guest's gateway (.1),
        later ones sit beside it (.100, .101, ...) so they never answer for it."""
        self.made += 1
        inside = 1 if self.made == 1 else 98 + self.made
        self.router_ids.append(str(uuid.uuid4()))
        return RouterInfo(id=self.router_ids[-1], project_id=self.internal.project_id,
                          gateway=leg(self.external, 9 + self.made),
                          interfaces=[leg(self.internal, inside)],
                          floating_ips=[FloatingIPInfo(
                              id=str(uuid.uuid4()), floating_ip_address=f,
                              fixed_ip_address=address(self.internal, 5),
                              port_id="p") for f in floating])


def _guest_route(namespace: str, gateway: str) -> None:
    with linux.ipr_in(namespace) as ns:
        ns.route("replace", dst="0.0.0.0/0", gateway=gateway)


@pytest.fixture
async def setup(agent_bus: AgentBus, tmp_path: Path,
                kernel_cleanup: Callable[..., None]) -> AsyncIterator[Setup]:
    """An external network on a test bridge with the outside namespace, an internal
    network's bridge with a guest at .5 whose default route is the router's .1."""
    suffix = uuid.uuid4().hex[:8]
    bridge, physnet = f"bx{suffix}", f"ext-{suffix}"
    external = external_network(physnet)
    internal = make_network()
    kernel_cleanup(device=bridge)
    kernel_cleanup(network=internal.id)
    await asyncio.to_thread(linux.ensure_bridge, bridge_name(internal.id))
    port = make_port(internal, 5)
    async with (Outside(bridge, external.subnets[0].cidr) as outside,
                Guest(bridge_name(internal.id), port.mac_address, tmp_path / "g") as guest):
        await guest.add_address(f"{address(internal, 5)}/24")
        await asyncio.to_thread(_guest_route, guest.namespace, address(internal, 1))
        made = Setup(agent_bus, {physnet: bridge}, external, internal, outside, guest)
        try:
            yield made
        finally:  # what a failed test (a "crashed" agent) left behind
            driver = RouterDriver(physical_bridges=made.physical_bridges)
            for router_id in made.router_ids:
                await asyncio.to_thread(driver.remove, router_id)


async def start_agent(setup: Setup, state_dir: Path) -> tuple[L3AgentManager, RPCServer]:
    agent = L3AgentManager(HOST, setup.bus.api, L3AgentOptions(
        state_dir=state_dir, physical_bridges=setup.physical_bridges, report_interval=0.2,
        resync_interval=3600))
    rpc = RPCServer(setup.bus.transport, Target(L3_AGENT_TOPIC, server=HOST), agent,
                    agent.METHODS)
    await rpc.start()
    await agent.start()
    return agent, rpc


def qg_addresses(router: RouterInfo) -> set[str]:
    assert router.gateway is not None
    with linux.ipr_in(router_namespace(router.id)) as ns:
        index = ns.link_lookup(ifname=gateway_device(router.gateway.id))[0]
        return {f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}"
                for m in ns.get_addr(index=index, family=2)}


async def exists(router: RouterInfo) -> bool:
    return await asyncio.to_thread(linux.namespace_exists, router_namespace(router.id))


async def test_events_statuses_crash_and_clean_stop(setup: Setup, tmp_path: Path) -> None:
    server = setup.bus.server
    floating_ip = address(setup.external, 30)
    router = setup.router()
    doomed = setup.router()  # deleted while the agent is down
    foreign = setup.router()  # another agent's: never touched by this one
    server.routers[HOST] = [router, doomed]
    state_dir = tmp_path / "l3"
    other_agent = L3AgentManager("other-host", setup.bus.api, L3AgentOptions(
        state_dir=tmp_path / "l3-other", physical_bridges=setup.physical_bridges))
    try:
        await other_agent.apply(foreign.model_copy(update={"interfaces": []}))
        agent, rpc = await start_agent(setup, state_dir)
        try:
            # Resync on start.
            assert await exists(router) and await exists(doomed)
            assert {s.agent_type for s in server.states} == {"L3 agent"}
            assert server.states[0].binary == "stratus-l3-agent"
            assert server.states[0].topic == "l3_agent" and server.states[0].start_flag
            async with Listener(setup.outside.namespace) as out:
                assert await out.seen_from(setup.guest.namespace,
                                           setup.outside.address) == address(setup.external, 10)

            # A floating IP associated: the server tells the agent, which applies it and
            # reports it ACTIVE.
            with_fip = router.model_copy(update={"floating_ips": [FloatingIPInfo(
                id="fip-1", floating_ip_address=floating_ip,
                fixed_ip_address=address(setup.internal, 5), port_id="p")]})
            server.routers[HOST] = [with_fip, doomed]
            api = L3AgentAPI(setup.bus.transport)
            await api.routers_updated(CTX, HOST, [router.id])
            await eventually(lambda: server.fip_statuses.get("fip-1") == "ACTIVE",
                             message="floating IP reported ACTIVE")
            async with Listener(setup.guest.namespace) as on_guest:
                assert await on_guest.seen_from(setup.outside.namespace,
                                                floating_ip) == setup.outside.address
            await eventually(lambda: len(server.states) >= 2, message="heartbeats")
        finally:
            # A crash: the agent's tasks end, what it made stays in the kernel.
            await rpc.stop()
            await agent._periodic.stop()

        # While no agent runs, the NAT stays in force.
        async with Listener(setup.guest.namespace) as on_guest:
            assert await on_guest.seen_from(setup.outside.namespace,
                                            floating_ip) == setup.outside.address
        addresses_before = await asyncio.to_thread(qg_addresses, with_fip)
        rules_before = await asyncio.to_thread(agent.driver.nat_rules, router.id)

        # The doomed router is deleted meanwhile; a new agent adopts the rest.
        server.routers[HOST] = [with_fip]
        server.fip_statuses.clear()
        agent, rpc = await start_agent(setup, state_dir)
        try:
            assert not await exists(doomed)
            assert await exists(foreign)
            assert await asyncio.to_thread(qg_addresses, with_fip) == addresses_before == {
                f"{address(setup.external, 10)}/24", f"{floating_ip}/32"}
            assert await asyncio.to_thread(agent.driver.nat_rules, router.id) == rules_before
            assert len(rules_before) == 5  # DNAT x2, SNAT, hairpin, subnet SNAT
            assert server.fip_statuses == {"fip-1": "ACTIVE"}
            async with Listener(setup.guest.namespace) as on_guest:
                assert await on_guest.seen_from(setup.outside.namespace,
                                                floating_ip) == setup.outside.address
            async with Listener(setup.outside.namespace) as out:
                assert await out.seen_from(setup.guest.namespace,
                                           setup.outside.address) == floating_ip

            # Disassociated: DOWN reported, the address unreachable.
            server.routers[HOST] = [router]
            await api.routers_updated(CTX, HOST, [router.id])
            await eventually(lambda: server.fip_statuses.get("fip-1") == "DOWN",
                             message="floating IP reported DOWN")
            async with Listener(setup.guest.namespace) as on_guest:
                assert not await reachable(setup.outside.namespace, floating_ip,
                                           on_guest.port)

            # Deleted over the bus.
            second = setup.router()
            server.routers[HOST] = [router, second]
            await api.routers_updated(CTX, HOST, [second.id])
            await eventually(lambda: second.id in agent.routers, message="second router")
            server.routers[HOST] = [router]
            await api.router_deleted(CTX, HOST, second.id)
            await eventually(lambda: second.id not in agent.routers, message="deleted")
            assert not await exists(second)
            # Asked about a router the server no longer lists for this host: removed too.
            server.routers[HOST] = []
            await api.routers_updated(CTX, HOST, [router.id])
            await eventually(lambda: router.id not in agent.routers, message="unlisted")
            server.routers[HOST] = [router]
            await api.routers_updated(CTX, HOST, [router.id])
            await eventually(lambda: router.id in agent.routers, message="listed again")
        finally:
            await rpc.stop()
            await agent.stop()
        # A clean stop removes what it made, and only that.
        assert not await exists(router)
        assert await exists(foreign)
        assert list(state_dir.iterdir()) == []
        for made in (router, doomed):
            assert made.gateway is not None
            for inner in (gateway_device(made.gateway.id),
                          internal_device(made.interfaces[0].id)):
                assert await asyncio.to_thread(linux.get_link, outer_device(inner)) is None
    finally:
        await other_agent.stop()
    assert not await exists(foreign)


async def test_a_failed_first_resync_is_retried(setup: Setup, tmp_path: Path) -> None:
    server = setup.bus.server
    router = setup.router()
    server.routers[HOST] = [router]
    server.unavailable = True
    agent, rpc = await start_agent(setup, tmp_path / "l3")
    try:
        assert not await exists(router)
        server.unavailable = False
        await eventually(lambda: router.id in agent.routers, message="resynced")
        assert await exists(router)
    finally:
        await rpc.stop()
        await agent.stop()
    assert not await exists(router)
