"""Remote groups' members changed by deltas, on the real kernel: the l2-agent (over the bus,
the server a double) hears which addresses joined or left a group, asks about those alone
and adds or deletes those elements of the group's set; namespace guests behind the ports'
taps see each change; and the full resync of an agent started again makes exactly the
ruleset the deltas had made."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable

from stratus.core.bus import RPCServer, Target
from stratus.core.context import RequestContext
from stratus.network.agents import linux
from stratus.network.agents.l2 import L2AgentManager, L2AgentOptions
from stratus.network.objects import (
    DeviceDetails,
    SecurityGroupInfo,
    SecurityGroupRuleInfo,
    bridge_name,
    tap_name,
)
from stratus.network.rpcapi import L2_AGENT_TOPIC, L2AgentAPI
from tests.integration.network_agents.conftest import AgentBus, make_network, make_port
from tests.integration.network_agents.test_firewall import NsGuest, recorded

CTX = RequestContext(user_id="network-server", project_id="service", roles=["service"])
HOST = "delta-host"


def rule(direction: str, **fields: object) -> SecurityGroupRuleInfo:
    return SecurityGroupRuleInfo(id=str(uuid.uuid4()), direction=direction, **fields)


def ruleset(table: str) -> str:
    """Our tables as the kernel lists them (no handles), each set's elements in order (a
    hash set lists them as they were added): comparable across applies."""
    text = "".join(subprocess.run(["nft", "list", "table", family, table],
                                  capture_output=True, text=True, check=False).stdout
                   for family in ("bridge", "inet"))
    return re.sub(r"elements = \{([^}]*)\}", lambda m: "elements = { " + ", ".join(
        sorted(e.strip() for e in m.group(1).split(","))) + " }", text)


def is_member(table: str, set_name: str, address: str) -> bool:
    return subprocess.run(["nft", "get", "element", "inet", table, set_name,
                           f"{{ {address} }}"], capture_output=True).returncode == 0


async def until(check: Callable[[], Awaitable[bool]], wanted: bool,
                within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while await check() != wanted:
        assert time.monotonic() < deadline, f"not {wanted} within {within}s"
        await asyncio.sleep(0.05)


async def start_agent(agent_bus: AgentBus, table: str) -> tuple[L2AgentManager, RPCServer]:
    agent = L2AgentManager([HOST], agent_bus.api, L2AgentOptions(
        report_interval=0.2, firewall_table=table))
    rpc = RPCServer(agent_bus.transport, Target(L2_AGENT_TOPIC, server=HOST),
                    agent.endpoint(HOST), L2AgentManager.METHODS)
    await rpc.start()
    await agent.start()
    return agent, rpc


async def test_member_deltas_reach_the_guests_and_a_resync_makes_the_same_ruleset(
        agent_bus: AgentBus, kernel_cleanup: Callable[..., None]) -> None:
    server = agent_bus.server
    table = f"sgtest-{uuid.uuid4().hex[:8]}"
    network = make_network()
    prefix = network.subnets[0].cidr.rsplit(".", 1)[0]
    web = SecurityGroupInfo(id=str(uuid.uuid4()))
    web = web.model_copy(update={"rules": [
        rule("egress", ethertype="IPv4"),
        rule("ingress", protocol="tcp", port_range_min=22, port_range_max=22,
             remote_group_id=web.id)]})
    outsider = SecurityGroupInfo(id=str(uuid.uuid4()), rules=[rule("egress",
                                                                   ethertype="IPv4")])
    port_a = make_port(network, 10, binding_host_id=HOST, security_group_ids=[outsider.id])
    port_b = make_port(network, 11, binding_host_id=HOST, security_group_ids=[web.id])
    a_ip, b_ip, leaver = f"{prefix}.10", f"{prefix}.11", f"{prefix}.77"
    kernel_cleanup(network=network.id, device=tap_name(port_a.id))
    kernel_cleanup(device=tap_name(port_b.id))

    def publish(members: list[str]) -> None:
        """The server's state: b's group has these members (a is never in it: only the
        addresses count, as when another port holds them)."""
        server.bound[HOST] = [
            DeviceDetails(port=port_b, network=network, security_groups=[web],
                          remote_group_members={web.id: sorted(members)}),
            DeviceDetails(port=port_a, network=network, security_groups=[outsider])]

    publish([b_ip, leaver])
    await asyncio.to_thread(linux.ensure_bridge, bridge_name(network.id))
    a, b = NsGuest(bridge_name(network.id), port_a), NsGuest(bridge_name(network.id), port_b)
    guests = [a, b]
    for guest in guests:  # the veths named as the taps: the agent enslaves them
        await asyncio.to_thread(guest.plug)
    agent, rpc = await start_agent(agent_bus, table)
    notify = L2AgentAPI(agent_bus.transport)
    try:
        set_name = f"rg4-{web.id.replace('-', '')}"
        await until(lambda: asyncio.to_thread(is_member, table, set_name, leaver), True)

        async def a_reaches_b() -> bool:
            return await asyncio.to_thread(a.connect, b_ip, 22)

        with b.listen(22):
            assert not await a_reaches_b()
            scripts = recorded(agent.firewall)  # type: ignore[arg-type]
            whole = server.asked["get_security_groups"] + server.asked["get_device_details"]

            # a's address joins the group, another leaves: one notice, one question.
            publish([b_ip, a_ip])
            await notify.security_group_members_changed(CTX, {web.id: [a_ip, leaver]})
            await until(a_reaches_b, True)
            assert not is_member(table, set_name, leaver)
            assert scripts == [f"delete element inet {table} {set_name} {{ {leaver} }}\n"
                               f"add element inet {table} {set_name} {{ {a_ip} }}\n"]
            assert server.asked["get_group_members"] == 1

            # It leaves: new connections refused again.
            publish([b_ip])
            await notify.security_group_members_changed(CTX, {web.id: [a_ip]})
            await until(a_reaches_b, False)
            # Joins again; a notice about an address that is no member changes nothing.
            publish([b_ip, a_ip])
            await notify.security_group_members_changed(CTX, {web.id: [a_ip, leaver]})
            await until(a_reaches_b, True)
            await notify.security_group_members_changed(CTX, {web.id: [f"{prefix}.99"]})
            await until(lambda: asyncio.to_thread(
                lambda: server.asked["get_group_members"] == 4), True)
            await agent.settled()
            assert all(s.startswith(("delete element", "add element")) for s in scripts)
            assert len(scripts) == 3
            # Never a whole group or port fetched for a member change.
            assert server.asked["get_security_groups"] + server.asked[
                "get_device_details"] == whole
            by_deltas = ruleset(table)

            # The agent stops (its tables stay in force) and starts again: its full
            # resync rebuilds the tables from the server's state whole, and they are
            # what the deltas had made (a's element, taken out meanwhile, is back).
            await rpc.stop()
            await agent.stop(unplug=False)
            assert ruleset(table) == by_deltas
            await asyncio.to_thread(subprocess.run, ["nft", "delete", "element", "inet",
                                                     table, set_name, f"{{ {a_ip} }}"],
                                    check=True)
            assert ruleset(table) != by_deltas
            agent, rpc = await start_agent(agent_bus, table)
            assert agent.firewall.ports and agent._firewall_live
            assert ruleset(table) == by_deltas
            assert await a_reaches_b()
    finally:
        await rpc.stop()
        await agent.stop()
        await agent.firewall.clear()
        for guest in guests:
            await asyncio.to_thread(guest.unplug)
        await asyncio.to_thread(linux.delete_link, bridge_name(network.id))
