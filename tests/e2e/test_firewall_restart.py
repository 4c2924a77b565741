"""The l2-agent's firewall across a crash: ``stratus serve l2-agent`` as a process of its own
on RabbitMQ, the test playing the network server (``ServerDouble``).

Killed with SIGKILL, the agent leaves its nftables tables in force (the guests stay
protected); started again, it rebuilds them from the server's state in one transaction —
the same ruleset, nothing duplicated. A security group change reaches it by fanout and is in
the kernel within a second. A clean stop leaves no table of ours."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratus.core.context import RequestContext
from stratus.network.agents import linux
from stratus.network.objects import (
    DeviceDetails,
    SecurityGroupInfo,
    SecurityGroupRuleInfo,
    bridge_name,
    tap_name,
)
from stratus.network.rpcapi import L2AgentAPI
from tests.e2e.cloud import base_env
from tests.e2e.split import AgentProcess, network_server
from tests.integration.network_agents.conftest import (
    ServerDouble,
    eventually,
    make_network,
    make_port,
)
from tests.integration.network_agents.test_firewall import table_objects, tables_of

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.serial]

CTX = RequestContext(user_id="network-server", project_id="service", roles=["service"])


@pytest.fixture
async def server(rabbit_url: str) -> AsyncIterator[ServerDouble]:
    async with network_server(rabbit_url) as double:
        yield double


def rule(direction: str, **fields: object) -> SecurityGroupRuleInfo:
    return SecurityGroupRuleInfo(id=str(uuid.uuid4()), direction=direction, **fields)


def ruleset(table: str) -> str:
    """Our tables as the kernel lists them, without handles (comparable across runs)."""
    text = ""
    for family in ("bridge", "inet"):
        text += subprocess.run(["nft", "list", "table", family, table], capture_output=True,
                               text=True, check=False).stdout
    return text


async def test_rules_survive_sigkill_and_are_rebuilt_without_duplicates(
        server: ServerDouble, rabbit_url: str, tmp_path: Path) -> None:
    host = f"fw-{uuid.uuid4().hex[:8]}"
    table = f"sgtest-{uuid.uuid4().hex[:8]}"
    network = make_network()
    group = SecurityGroupInfo(id=str(uuid.uuid4()))
    group = group.model_copy(update={"rules": [
        rule("egress"), rule("ingress", remote_group_id=group.id)]})
    ports = [make_port(network, 30 + i, binding_host_id=host,
                       security_group_ids=[group.id]) for i in range(3)]
    members = {group.id: [p.fixed_ips[0].ip_address for p in ports]}
    server.bound[host] = [DeviceDetails(port=p, network=network, security_groups=[group],
                                        remote_group_members=members) for p in ports]
    # The l2-agent alone (no DHCP here).
    agents = AgentProcess(("l2-agent",), tmp_path / "data", base_env(
        STRATUS_BUS_URL=rabbit_url, STRATUS_NETWORK__BACKEND="linuxbridge",
        STRATUS_COMPUTE__HOST=host, STRATUS_NETWORK__AGENT_REPORT_INTERVAL="0.5",
        STRATUS_NETWORK__FIREWALL_TABLE=table), tmp_path / "agent.log")
    transport = server.transport  # type: ignore[attr-defined]
    try:
        agents.start()
        await eventually(lambda: {p.id for p in ports} <= {p for p, _ in server.up},
                         within=90, message="ports plugged and reported up")
        await eventually(lambda: table_objects(table).get("inet chain") == 1 + 2 * 3,
                         within=30, message="the firewall applied for the three ports")
        before, counts = ruleset(table), table_objects(table)
        assert counts == {"bridge table": 1, "bridge chain": 4, "bridge rule": 1 + 3 * 12,
                          "inet table": 1, "inet chain": 7,
                          "inet rule": counts["inet rule"], "inet set": 2}

        # A crash: the ruleset stays in force.
        assert agents.signal(signal.SIGKILL) == -signal.SIGKILL
        assert ruleset(table) == before
        server.up.clear()
        agents.start()
        await eventually(lambda: {p.id for p in ports} <= {p for p, _ in server.up},
                         within=90, message="ports reported up again after the restart")
        try:
            await eventually(lambda: agents.log.read_text().count("firewall applied") == 2,
                             within=30, message="the restarted agent applied its firewall")
        except AssertionError as exc:
            tail = "\n".join(agents.log.read_text().splitlines()[-40:])
            raise AssertionError(f"{exc}; the agents' log ends:\n{tail}") from None
        assert table_objects(table) == counts  # nothing duplicated
        assert ruleset(table) == before

        # A rule change reaches the kernel (how fast: benchmarks/, not here).
        changed = group.model_copy(update={"rules": [
            *group.rules, rule("ingress", protocol="tcp", port_range_min=2222,
                               port_range_max=2222)]})
        server.bound[host] = [d.model_copy(update={"security_groups": [changed]})
                              for d in server.bound[host]]
        await L2AgentAPI(transport).security_groups_updated(CTX, [group.id], [])
        await eventually(lambda: ruleset(table).count("dport 2222") == 3, within=5,
                         message="the new rule in every port's chain")

        # A clean stop unplugs everything: no table of ours is left.
        await eventually(lambda: agents.serving(), within=60, message="serving")
        assert agents.signal(signal.SIGTERM) == 0
        assert await asyncio.to_thread(tables_of, table) == []
    finally:
        if agents.process is not None and agents.process.poll() is None:
            agents.signal(signal.SIGKILL)
        await asyncio.to_thread(_drop_tables, table)
        for port in ports:
            await asyncio.to_thread(linux.delete_link, tap_name(port.id))
        await asyncio.to_thread(linux.delete_link, bridge_name(network.id))


def _drop_tables(table: str) -> None:
    for family in ("inet", "bridge"):
        subprocess.run(["nft", "delete", "table", family, table], capture_output=True,
                       check=False)
