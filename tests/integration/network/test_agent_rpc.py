"""The agent RPC server over the bus (memory and RabbitMQ), the notifications network
changes send to the agents' topics, and the external events sent to compute.

Recorders stand where the agents would be: real ``RPCServer``s on the DHCP agents' topic
(fanout) and on one host's l2-agent topic; the test asserts what they receive.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from stratus.core.bus import RPCServer, Target
from stratus.core.context import RequestContext
from stratus.network.events import DiscardEvents
from stratus.network.objects import AgentState, DeviceDetails, NetworkInfo, PortInfo
from stratus.network.rpcapi import DHCP_AGENT_TOPIC, L2_AGENT_TOPIC, NetworkServerAPI
from tests.dbcount import statements_of
from tests.integration.network.conftest import CloudFactory, NetCloud

HOST = "node1"
#: How long a cast's effect is waited for: only a failing test waits it out, and on a machine
#: loaded to 20+ (the CI's parallel part at its worst) 10 s was not always enough.
WAIT = 30


class Recorder:
    """Records every call it serves (arguments as JSON-like dicts); ``wait_for`` waits until
    one matches."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.changed = asyncio.Condition()

    async def record(self, name: str, **kwargs: Any) -> None:
        plain = {k: v.model_dump() if hasattr(v, "model_dump") else v
                 for k, v in kwargs.items()}
        async with self.changed:
            self.calls.append((name, plain))
            self.changed.notify_all()

    async def wait_for(self, name: str, check: Any = None) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for method, kwargs in self.calls:
                if method == name and (check is None or check(kwargs)):
                    return kwargs
            return None

        async with asyncio.timeout(WAIT), self.changed:
            while (match := found()) is None:
                await self.changed.wait()
            return match


class DhcpRecorder(Recorder):
    async def network_updated(self, ctx: RequestContext, network: NetworkInfo) -> None:
        await self.record("network_updated", network=network)

    async def network_deleted(self, ctx: RequestContext, network_id: str) -> None:
        await self.record("network_deleted", network_id=network_id)

    async def port_updated(self, ctx: RequestContext, port: PortInfo) -> None:
        await self.record("port_updated", port=port)

    async def port_deleted(self, ctx: RequestContext, network_id: str, port_id: str) -> None:
        await self.record("port_deleted", network_id=network_id, port_id=port_id)


class L2Recorder(Recorder):
    async def port_bound(self, ctx: RequestContext, details: DeviceDetails) -> None:
        await self.record("port_bound", details=details)

    async def port_unbound(self, ctx: RequestContext, port_id: str, network_id: str) -> None:
        await self.record("port_unbound", port_id=port_id, network_id=network_id)

    async def network_deleted(self, ctx: RequestContext, network_id: str) -> None:
        await self.record("network_deleted", network_id=network_id)

    async def security_groups_updated(self, ctx: RequestContext, security_group_ids: list[str],
                                      port_ids: list[str]) -> None:
        await self.record("security_groups_updated", security_group_ids=security_group_ids,
                          port_ids=port_ids)

    async def security_group_members_changed(self, ctx: RequestContext,
                                             members: dict[str, list[str]]) -> None:
        await self.record("security_group_members_changed", members=members)


DHCP_METHODS = ("network_updated", "network_deleted", "port_updated", "port_deleted")
L2_METHODS = ("port_bound", "port_unbound", "network_deleted", "security_groups_updated",
              "security_group_members_changed")


@pytest.fixture
async def wired(make_cloud: CloudFactory, bus_url: str) -> Any:
    cloud = await make_cloud(backend="linuxbridge", bus=bus_url)
    events = DiscardEvents()
    cloud.runtime.events = events
    transport = await cloud.stack.transport()
    dhcp, l2 = DhcpRecorder(), L2Recorder()
    servers = [RPCServer(transport, Target(DHCP_AGENT_TOPIC, server="dhcp-host"), dhcp,
                         DHCP_METHODS),
               RPCServer(transport, Target(L2_AGENT_TOPIC, server=HOST), l2, L2_METHODS)]
    for server in servers:
        await server.start()
    try:
        yield cloud, NetworkServerAPI(transport), dhcp, l2, events
    finally:
        for server in servers:
            await server.stop()


async def test_agent_rpc_and_notifications(wired: Any) -> None:
    cloud: NetCloud
    cloud, api, dhcp, l2, events = wired
    ctx = RequestContext()

    # A network and subnet reach every DHCP agent as a full snapshot.
    net = await cloud.create("network", name="rpc-net")
    sub = await cloud.create("subnet", network_id=net["id"], cidr="10.30.0.0/24")
    snapshot = await dhcp.wait_for("network_updated",
                                   lambda k: k["network"]["id"] == net["id"]
                                   and k["network"]["subnets"])
    assert snapshot["network"]["subnets"][0]["cidr"] == "10.30.0.0/24"
    assert snapshot["network"]["subnets"][0]["gateway_ip"] == "10.30.0.1"

    active = await api.get_active_networks(ctx, "dhcp-host")
    assert [n.id for n in active] == [net["id"]]

    dhcp_port = await api.ensure_dhcp_port(ctx, net["id"], "dhcp-host")
    assert dhcp_port.device_owner == "network:dhcp"
    assert dhcp_port.fixed_ips[0].subnet_id == sub["id"]
    assert (await api.ensure_dhcp_port(ctx, net["id"], "dhcp-host")).id == dhcp_port.id
    await dhcp.wait_for("port_updated", lambda k: k["port"]["id"] == dhcp_port.id)

    # A server's port bound to a host: its l2-agent is told to plug it.
    server_id = str(uuid.uuid4())
    port = await cloud.create("port", network_id=net["id"], device_id=server_id,
                              device_owner="compute:nova", **{"binding:host_id": HOST})
    assert port["status"] == "DOWN"
    assert port["binding:vif_type"] == "bridge"
    assert port["binding:vif_details"]["bridge_name"] == f"brq{net['id'][:11]}"
    bound = await l2.wait_for("port_bound", lambda k: k["details"]["port"]["id"] == port["id"])
    assert bound["details"]["network"]["id"] == net["id"]
    assert bound["details"]["port"]["fixed_ips"] == port["fixed_ips"]
    await dhcp.wait_for("port_updated", lambda k: k["port"]["id"] == port["id"])

    resync = await api.get_bound_ports(ctx, HOST)
    assert [d.port.id for d in resync] == [port["id"]]  # the DHCP port is not an l2 port
    assert resync[0].network.id == net["id"] and resync[0].network.ports == []
    assert await api.get_bound_ports(ctx, "elsewhere") == []
    details = await api.get_device_details(ctx, port["id"], HOST)
    assert details is not None and details.port.mac_address == port["mac_address"]
    network = await api.get_network(ctx, net["id"])
    assert network is not None
    assert {p.id for p in network.ports} == {dhcp_port.id, port["id"]}

    # The agent reports the device up: ACTIVE, and compute hears network-vif-plugged.
    await api.update_device_up(ctx, port["id"], HOST)
    shown = (await cloud.call("GET", f"/ports/{port['id']}")).json()["port"]
    assert shown["status"] == "ACTIVE"
    assert [(e.name, e.server_uuid, e.tag) for e in events.sent] == [
        ("network-vif-plugged", server_id, port["id"])]
    await api.update_device_down(ctx, port["id"], HOST)
    shown = (await cloud.call("GET", f"/ports/{port['id']}")).json()["port"]
    assert shown["status"] == "DOWN"
    assert events.sent[-1].name == "network-vif-unplugged"

    # Moving the binding unplugs from the old host; deleting unplugs and drops the host entry.
    await cloud.call("PUT", f"/ports/{port['id']}", json={"port": {"binding:host_id": ""}})
    await l2.wait_for("port_unbound", lambda k: k["port_id"] == port["id"])
    deleted = await cloud.call("DELETE", f"/ports/{port['id']}")
    assert deleted.status_code == 204
    await dhcp.wait_for("port_deleted", lambda k: k["port_id"] == port["id"])
    assert await api.get_device_details(ctx, port["id"], HOST) is None

    await api.release_dhcp_port(ctx, net["id"], "dhcp-host")
    remaining = (await cloud.call("GET", "/ports", params={"network_id": net["id"]})).json()
    assert remaining["ports"] == []
    assert (await cloud.call("DELETE", f"/networks/{net['id']}")).status_code == 204
    await dhcp.wait_for("network_deleted", lambda k: k["network_id"] == net["id"])
    await l2.wait_for("network_deleted", lambda k: k["network_id"] == net["id"])
    assert await api.get_network(ctx, net["id"]) is None


async def test_agents_from_heartbeats(wired: Any) -> None:
    cloud: NetCloud
    cloud, api, _, _, _ = wired
    ctx = RequestContext()
    state = AgentState(host="dhcp-host", binary="stratus-dhcp-agent", agent_type="DHCP agent",
                       topic=DHCP_AGENT_TOPIC, availability_zone="nova",
                       configurations={"networks": 1}, start_flag=True)
    await api.report_state(ctx, state)
    await api.report_state(ctx, AgentState(host=HOST, binary="stratus-l2-agent",
                                           agent_type="Linux bridge agent",
                                           topic=L2_AGENT_TOPIC))
    async with asyncio.timeout(WAIT):
        while len((await cloud.call("GET", "/agents")).json()["agents"]) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await api.report_state(ctx, state.model_copy(update={"configurations": {"networks": 2},
                                                          "start_flag": False}))
    async with asyncio.timeout(WAIT):
        while True:
            agents = (await cloud.call("GET", "/agents")).json()["agents"]
            dhcp = next(a for a in agents if a["agent_type"] == "DHCP agent")
            if dhcp["configurations"] == {"networks": 2}:
                break
            await asyncio.sleep(0.02)
    assert len(agents) == 2  # one row per (type, host), however often it reports
    assert dhcp["alive"] is True and dhcp["host"] == "dhcp-host"
    assert dhcp["binary"] == "stratus-dhcp-agent" and dhcp["admin_state_up"] is True
    updated = await cloud.call("PUT", f"/agents/{dhcp['id']}",
                               json={"agent": {"admin_state_up": False}})
    assert updated.status_code == 200 and updated.json()["agent"]["admin_state_up"] is False
    filtered = (await cloud.call("GET", "/agents",
                                 params={"agent_type": "Linux bridge agent"})).json()
    assert [a["host"] for a in filtered["agents"]] == [HOST]
    zones = (await cloud.call("GET", "/availability_zones")).json()["availability_zones"]
    assert {"name": "nova", "resource": "network", "state": "unavailable"} in zones

    member = await cloud.project()
    denied = await cloud.call("GET", "/agents", member)
    assert denied.status_code == 403
    assert (await cloud.call("DELETE", f"/agents/{dhcp['id']}")).status_code == 204
    missing = await cloud.call("GET", f"/agents/{dhcp['id']}")
    assert missing.status_code == 404
    assert missing.json()["NeutronError"]["type"] == "AgentNotFound"


async def test_agents_go_down_after_agent_down_time(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(backend="noop", agent_down_time=0.05)
    api = NetworkServerAPI(await cloud.stack.transport())
    await api.report_state(RequestContext(), AgentState(
        host="h", binary="stratus-l2-agent", agent_type="Linux bridge agent",
        topic=L2_AGENT_TOPIC))
    async with asyncio.timeout(WAIT):
        while not (await cloud.call("GET", "/agents")).json()["agents"]:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    agents = (await cloud.call("GET", "/agents")).json()["agents"]
    assert agents[0]["alive"] is False


async def test_noop_backend_wires_bound_ports_at_once(cloud: NetCloud) -> None:
    """The noop backend tells no agent; a server port bound to a host is ACTIVE at once,
    and compute gets its network-vif-plugged."""
    events = DiscardEvents()
    cloud.runtime.events = events
    assert cloud.runtime.backend.name == "noop"
    net, _ = await cloud.network_with_subnet(cidr="10.31.0.0/24")
    server_id = str(uuid.uuid4())
    unbound = await cloud.create("port", network_id=net["id"], device_id=server_id,
                                 device_owner="compute:nova")
    assert unbound["status"] == "DOWN" and events.sent == []
    bound = await cloud.call("PUT", f"/ports/{unbound['id']}",
                             json={"port": {"binding:host_id": "fakehost"}})
    assert bound.json()["port"]["status"] == "ACTIVE"
    assert bound.json()["port"]["binding:host_id"] == "fakehost"
    assert [(e.name, e.server_uuid, e.tag) for e in events.sent] == [
        ("network-vif-plugged", server_id, unbound["id"])]
    at_once = await cloud.create("port", network_id=net["id"], device_id=server_id,
                                 device_owner="compute:nova",
                                 **{"binding:host_id": "fakehost"})
    assert at_once["status"] == "ACTIVE" and len(events.sent) == 2
    plain = await cloud.create("port", network_id=net["id"], **{"binding:host_id": "x"})
    assert plain["status"] == "DOWN" and len(events.sent) == 2  # not a server's port


async def test_security_groups_reach_the_l2_agents(wired: Any) -> None:
    """What the firewall needs crosses the bus: a bound port's groups with their rules and
    remote group members, and a fanout for each change of rules, members or a port's
    security."""
    cloud: NetCloud
    cloud, api, _, l2, _ = wired
    ctx = RequestContext()
    net = await cloud.create("network", name="sg-net")
    await cloud.create("subnet", network_id=net["id"], cidr="10.31.0.0/24")
    web = await cloud.create("security-group", name="web")
    await cloud.create("security-group-rule", security_group_id=web["id"],
                       direction="ingress", remote_group_id=web["id"])
    await l2.wait_for("security_groups_updated",
                      lambda k: k["security_group_ids"] == [web["id"]])
    port = await cloud.create("port", network_id=net["id"], device_owner="compute:nova",
                              device_id=str(uuid.uuid4()), security_groups=[web["id"]],
                              allowed_address_pairs=[{"ip_address": "10.31.0.200"}],
                              **{"binding:host_id": HOST})
    bound = await l2.wait_for("port_bound", lambda k: k["details"]["port"]["id"] == port["id"])
    # Its addresses, fixed and pairs', joined the group.
    await l2.wait_for("security_group_members_changed", lambda k: k["members"] == {
        web["id"]: sorted([port["fixed_ips"][0]["ip_address"], "10.31.0.200"])})
    details = DeviceDetails.model_validate(bound["details"])
    assert details.port.security_group_ids == [web["id"]]
    assert details.port.port_security_enabled is True
    assert [(p.ip_address, p.mac_address) for p in details.port.allowed_address_pairs] == [
        ("10.31.0.200", port["mac_address"])]
    (group,) = details.security_groups
    assert group.id == web["id"]
    assert {(r.direction, r.remote_group_id) for r in group.rules} >= {
        ("ingress", web["id"]), ("egress", None)}
    assert sorted(details.remote_group_members[web["id"]]) == sorted(
        [port["fixed_ips"][0]["ip_address"], "10.31.0.200"])
    # A new member: agents hear which address joined which group, and nothing more.
    l2.calls.clear()
    other = await cloud.create("port", network_id=net["id"], security_groups=[web["id"]])
    joined = other["fixed_ips"][0]["ip_address"]
    await l2.wait_for("security_group_members_changed",
                      lambda k: k["members"] == {web["id"]: [joined]})
    assert not [c for c in l2.calls if c[0] == "security_groups_updated"]
    fetched = await api.get_device_details(ctx, port["id"], HOST)
    assert fetched is not None
    assert joined in fetched.remote_group_members[web["id"]]
    # What the agents ask then: of those addresses, the members now (and of no others),
    # an address pair's among them. The outsider is an address no port holds (IPAM picks
    # addresses at random, so no fixed one is sure to be free).
    held = {port["fixed_ips"][0]["ip_address"], joined, "10.31.0.200"}
    outsider = next(f"10.31.0.{n}" for n in range(2, 255) if f"10.31.0.{n}" not in held)
    assert await api.get_group_members(ctx, {web["id"]: [joined, outsider,
                                                         "10.31.0.200"]}) == {
        web["id"]: sorted([joined, "10.31.0.200"])}
    # What the l2-agent asks once for all its ports of the group: the same groups and members.
    groups = await api.get_security_groups(ctx, [web["id"]])
    assert groups.security_groups == fetched.security_groups
    assert groups.remote_group_members == fetched.remote_group_members
    # The port leaves its groups: the port itself is named, its addresses left the group.
    l2.calls.clear()
    await cloud.call("PUT", f"/ports/{port['id']}", json={"port": {"security_groups": []}})
    await l2.wait_for("security_groups_updated", lambda k: k["port_ids"] == [port["id"]])
    left = sorted([port["fixed_ips"][0]["ip_address"], "10.31.0.200"])
    await l2.wait_for("security_group_members_changed",
                      lambda k: k["members"] == {web["id"]: left})
    assert await api.get_group_members(ctx, {web["id"]: left}) == {web["id"]: []}
    # A member deleted: its address left the group.
    l2.calls.clear()
    await cloud.call("DELETE", f"/ports/{other['id']}")
    await l2.wait_for("security_group_members_changed",
                      lambda k: k["members"] == {web["id"]: [joined]})
    # A rule goes: its group changed.
    l2.calls.clear()
    rule = next(r for r in web["security_group_rules"] if r["direction"] == "egress")
    await cloud.call("DELETE", f"/security-group-rules/{rule['id']}")
    await l2.wait_for("security_groups_updated",
                      lambda k: k["security_group_ids"] == [web["id"]])


async def test_an_unbound_port_create_reads_its_network_once(wired: Any) -> None:
    """With agents, a port created unbound is no VXLAN forwarding member before or after:
    its create reads its network (and subnets) once, for the request, not again for the
    forwarding entries; a port bound at create still reaches its l2-agent."""
    cloud: NetCloud
    cloud, _, _, l2, _ = wired
    net, _ = await cloud.network_with_subnet(cidr="10.32.0.0/24")
    with statements_of(cloud.runtime.db.engine) as ran:
        await cloud.create("port", network_id=net["id"])
    assert len(ran.selecting("network_networks")) == 1, ran.seen
    assert ran.selecting("network_subnets") == [], ran.seen
    bound = await cloud.create("port", network_id=net["id"], device_owner="compute:nova",
                               device_id=str(uuid.uuid4()), **{"binding:host_id": HOST})
    await l2.wait_for("port_bound", lambda k: k["details"]["port"]["id"] == bound["id"])
