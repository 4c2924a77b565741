"""The l2-agent's firewall under overlapping events: a security group change that races a
port's binding is in force as soon as the agent has handled its events (not at some later
resync), and a state the server was asked for earlier never replaces one asked for later.

The port's binding (``port_bound``, carrying details the server read when it bound the
port) and group changes (``security_groups_updated``, a fanout) travel on different
queues: either may arrive first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from stratus.core.context import RequestContext
from stratus.network.agents.l2 import L2AgentManager, L2AgentOptions
from stratus.network.agents.l2.firewall import NoopFirewall
from stratus.network.objects import (
    DeviceDetails,
    FixedIP,
    NetworkInfo,
    PortInfo,
    SecurityGroupInfo,
    SecurityGroupRuleInfo,
    SecurityGroupsSnapshot,
)

HOST = "h1"
CTX = RequestContext.for_service("test")
NETWORK = NetworkInfo(id="n1", project_id="p1", mtu=1450)
PORT = PortInfo(id="port1", network_id="n1", project_id="p1", mac_address="fa:16:3e:00:00:01",
                fixed_ips=[FixedIP(subnet_id="s1", ip_address="10.0.0.5")],
                device_owner="compute:nova", binding_host_id=HOST, security_group_ids=["g1"])
SSH = SecurityGroupRuleInfo(id="r-ssh", direction="ingress", protocol="tcp",
                            port_range_min=22, port_range_max=22)
BEFORE = DeviceDetails(port=PORT, network=NETWORK, security_groups=[SecurityGroupInfo(id="g1")])
AFTER = BEFORE.model_copy(update={"security_groups": [SecurityGroupInfo(id="g1",
                                                                        rules=[SSH])]})


class Server:
    """The network server's agent RPC: ``current`` is its state; a question may be held
    (``hold``) and answered later with the state as it was when asked."""

    def __init__(self) -> None:
        self.current: dict[str, DeviceDetails] = {}
        self.hold: asyncio.Event | None = None
        self.asked = asyncio.Event()
        self.up: list[str] = []
        #: The questions asked, by method name.
        self.questions: list[str] = []
        #: What each ``get_group_members`` asked about.
        self.asked_members: list[dict[str, list[str]]] = []

    async def _answer(self) -> dict[str, DeviceDetails]:
        state, gate = dict(self.current), self.hold
        self.asked.set()
        if gate is not None:
            await gate.wait()
        return state

    async def get_device_details(self, ctx: RequestContext, port_id: str,
                                 host: str) -> DeviceDetails | None:
        self.questions.append("get_device_details")
        return (await self._answer()).get(port_id)

    async def get_bound_ports(self, ctx: RequestContext, host: str) -> list[DeviceDetails]:
        return list((await self._answer()).values())

    async def get_security_groups(self, ctx: RequestContext,
                                  group_ids: list[str]) -> SecurityGroupsSnapshot:
        self.questions.append("get_security_groups")
        details = list((await self._answer()).values())
        groups = {g.id: g for d in details for g in d.security_groups if g.id in group_ids}
        members = {g: m for d in details for g, m in d.remote_group_members.items()}
        return SecurityGroupsSnapshot(security_groups=[groups[g] for g in sorted(groups)],
                                      remote_group_members=members)

    async def get_group_members(self, ctx: RequestContext,
                                members: dict[str, list[str]]) -> dict[str, list[str]]:
        self.questions.append("get_group_members")
        self.asked_members.append(members)
        details = list((await self._answer()).values())
        now = {g: set(m) for d in details for g, m in d.remote_group_members.items()}
        return {g: sorted(set(a) & now.get(g, set())) for g, a in members.items()}

    async def update_device_up(self, ctx: RequestContext, port_id: str, host: str) -> None:
        self.up.append(port_id)

    async def update_device_down(self, ctx: RequestContext, port_id: str, host: str) -> None:
        pass


class Firewall(NoopFirewall):
    """Records the ruleset last applied: what the kernel would enforce."""

    def __init__(self) -> None:
        super().__init__()
        self.in_force: dict[str, DeviceDetails] = {}

    async def apply(self) -> None:
        self.in_force = dict(self.ports)


class Plugs:
    """The agent's tap plugging, in memory; ``gate`` holds a plug (the kernel is slow)."""

    def __init__(self) -> None:
        self.plugged: set[str] = set()
        self.gate: asyncio.Event | None = None
        self.plugging = asyncio.Event()
        self.loop = asyncio.get_running_loop()

    def plug(self, port: PortInfo, network: NetworkInfo) -> bool:
        self.loop.call_soon_threadsafe(self.plugging.set)
        if self.gate is not None:  # _plug runs in a worker thread
            asyncio.run_coroutine_threadsafe(self.gate.wait(), self.loop).result()
        self.plugged.add(port.id)
        return False  # no VXLAN device made: these networks are flat

    def unplug(self, port_id: str, network_id: str) -> None:
        self.plugged.discard(port_id)


@pytest.fixture
async def agent() -> AsyncIterator[tuple[L2AgentManager, Server, Firewall, Plugs]]:
    server, firewall, plugs = Server(), Firewall(), Plugs()
    manager = L2AgentManager([HOST], server,  # type: ignore[arg-type]
                             L2AgentOptions(firewall_batch_delay=0))
    manager.firewall = firewall
    manager._firewall_live = True  # as after the first resync
    manager._plug = plugs.plug  # type: ignore[method-assign]
    manager._unplug = plugs.unplug  # type: ignore[method-assign]
    yield manager, server, firewall, plugs


def rules_in_force(firewall: Firewall) -> list[SecurityGroupRuleInfo]:
    details = firewall.in_force.get(PORT.id)
    assert details is not None, "the port is filtered"
    return [r for g in details.security_groups for r in g.rules]


async def bound(manager: L2AgentManager, server: Server, details: DeviceDetails) -> None:
    """The server holds ``details`` for its port and has told the agent, which has handled
    the binding (plugged, filtered, reported up)."""
    server.current[details.port.id] = details
    await manager.port_bound(CTX, HOST, details)
    await manager.settled()


async def test_a_rule_change_before_the_binding_arrives(
        agent: tuple[L2AgentManager, Server, Firewall, Plugs]) -> None:
    manager, server, firewall, _ = agent
    server.current[PORT.id] = AFTER  # the rule is committed after the port was bound ...
    # ... and its notice arrives before the binding, which carries the earlier state.
    await manager.security_groups_updated(CTX, ["g1"], [])
    await manager.port_bound(CTX, HOST, BEFORE)
    await manager.settled()
    assert rules_in_force(firewall) == [SSH]


async def test_a_rule_change_while_the_port_is_being_plugged(
        agent: tuple[L2AgentManager, Server, Firewall, Plugs]) -> None:
    manager, server, firewall, plugs = agent
    server.current[PORT.id] = BEFORE
    plugs.gate = asyncio.Event()
    binding = asyncio.create_task(manager.port_bound(CTX, HOST, BEFORE))
    await plugs.plugging.wait()  # filtered, the tap not plugged yet
    assert PORT.id in firewall.in_force
    server.current[PORT.id] = AFTER
    await manager.security_groups_updated(CTX, ["g1"], [])
    await manager.settled()  # the refresh finds the port not plugged yet
    plugs.gate.set()
    await binding
    await manager.settled()
    assert rules_in_force(firewall) == [SSH]
    assert server.up == [PORT.id]


async def test_a_resync_listed_before_a_change_does_not_undo_it(
        agent: tuple[L2AgentManager, Server, Firewall, Plugs]) -> None:
    manager, server, firewall, _ = agent
    server.current[PORT.id] = BEFORE
    listed = server.hold = asyncio.Event()
    resync = asyncio.create_task(manager.resync(HOST))  # lists BEFORE, answers last
    await server.asked.wait()
    server.hold, server.current[PORT.id] = None, AFTER
    await manager.port_bound(CTX, HOST, AFTER)
    await manager.settled()
    assert rules_in_force(firewall) == [SSH]
    listed.set()
    await resync
    assert rules_in_force(firewall) == [SSH]


async def test_a_stale_answer_does_not_plug_an_unbound_port_again(
        agent: tuple[L2AgentManager, Server, Firewall, Plugs]) -> None:
    manager, server, firewall, plugs = agent
    await bound(manager, server, BEFORE)
    listed = server.hold = asyncio.Event()
    resync = asyncio.create_task(manager.resync(HOST))  # lists the port still bound
    await server.asked.wait()
    del server.current[PORT.id]
    await manager.port_unbound(CTX, HOST, PORT.id, NETWORK.id)
    listed.set()
    await resync
    assert PORT.id not in plugs.plugged
    assert PORT.id not in firewall.in_force


def member_of_g1(port: PortInfo, members: list[str]) -> DeviceDetails:
    """``port`` in g1, whose rule admits SSH from g1's members ``members``."""
    rule = SSH.model_copy(update={"remote_group_id": "g1"})
    return DeviceDetails(port=port, network=NETWORK,
                         security_groups=[SecurityGroupInfo(id="g1", rules=[rule])],
                         remote_group_members={"g1": members})


async def test_a_member_change_is_one_question_for_every_port_of_the_group(
        agent: tuple[L2AgentManager, Server, Firewall, Plugs]) -> None:
    """A port joining a group changes its members only: the agent asks once for the
    group, not for each of its ports that use it, and every port's ruleset follows."""
    manager, server, firewall, _ = agent
    second = PORT.model_copy(update={"id": "port2", "mac_address": "fa:16:3e:00:00:02",
                                     "fixed_ips": [FixedIP(subnet_id="s1",
                                                           ip_address="10.0.0.6")]})
    members = ["10.0.0.5", "10.0.0.6"]
    for port in (PORT, second):
        server.current[port.id] = member_of_g1(port, members)
        await manager.port_bound(CTX, HOST, server.current[port.id])
    await manager.settled()
    server.questions.clear()
    joined = [*members, "10.0.0.7"]  # a third port joined g1 on another host
    for port in (PORT, second):
        server.current[port.id] = member_of_g1(port, joined)
    await manager.security_groups_updated(CTX, ["g1"], [])
    await manager.settled()
    assert server.questions == ["get_security_groups"]
    for port in (PORT, second):
        assert firewall.in_force[port.id].remote_group_members == {"g1": joined}
        assert firewall.in_force[port.id].port == port


async def test_member_changes_coming_fast_are_gathered_into_one_round() -> None:
    """A stream of member changes (a burst of port creates in a group): the changes that
    arrive within a round interval of the last round are asked about together, while the
    first change is asked about at once."""
    server, firewall, plugs = Server(), Firewall(), Plugs()
    manager = L2AgentManager([HOST], server,  # type: ignore[arg-type]
                             L2AgentOptions(firewall_batch_delay=0,
                                            firewall_round_interval=1.0))
    manager.firewall, manager._firewall_live = firewall, True
    manager._plug = plugs.plug  # type: ignore[method-assign]
    manager._unplug = plugs.unplug  # type: ignore[method-assign]
    await bound(manager, server, member_of_g1(PORT, ["10.0.0.5"]))
    server.questions.clear()
    created = ["10.0.0.7", "10.0.0.8", "10.0.0.9"]
    server.current[PORT.id] = member_of_g1(PORT, ["10.0.0.5", *created])
    await manager.security_group_members_changed(CTX, {"g1": created[:1]})
    await manager.settled()
    assert server.asked_members == [{"g1": created[:1]}]
    for address in created[1:]:  # the next creates' notices, one after the other
        await manager.security_group_members_changed(CTX, {"g1": [address]})
        for _ in range(5):
            await asyncio.sleep(0)
    await manager.settled()
    assert server.asked_members == [{"g1": created[:1]}, {"g1": created[1:]}]
    assert firewall.in_force[PORT.id].remote_group_members == {
        "g1": ["10.0.0.5", *created]}


async def test_a_port_named_by_a_change_is_fetched_whole(
        agent: tuple[L2AgentManager, Server, Firewall, Plugs]) -> None:
    manager, server, firewall, _ = agent
    await bound(manager, server, BEFORE)
    server.questions.clear()
    moved = PORT.model_copy(update={"fixed_ips": [FixedIP(subnet_id="s1",
                                                          ip_address="10.0.0.9")]})
    server.current[PORT.id] = BEFORE.model_copy(update={"port": moved})
    await manager.security_groups_updated(CTX, ["g1"], [PORT.id])
    await manager.settled()
    assert server.questions == ["get_device_details"]
    assert firewall.in_force[PORT.id].port == moved


async def test_a_group_answer_asked_before_a_binding_does_not_undo_it(
        agent: tuple[L2AgentManager, Server, Firewall, Plugs]) -> None:
    manager, server, firewall, _ = agent
    server.current[PORT.id] = BEFORE
    await manager.port_bound(CTX, HOST, BEFORE, as_of=manager._order.ask())
    held = server.hold = asyncio.Event()
    server.asked.clear()
    await manager.security_groups_updated(CTX, ["g1"], [])  # answers BEFORE, held
    await server.asked.wait()
    server.hold, server.current[PORT.id] = None, AFTER
    await manager.port_bound(CTX, HOST, AFTER, as_of=manager._order.ask())
    held.set()
    await manager.settled()
    assert rules_in_force(firewall) == [SSH]
