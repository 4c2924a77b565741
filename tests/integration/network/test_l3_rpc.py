"""The network server's side of the l3-agent contract, over the bus (memory and RabbitMQ): a
router is scheduled to an alive l3-agent when it first needs one, its legs bound to that
host; the agent hears ``routers_updated`` / ``router_deleted`` after each change, fetches
``RouterInfo`` snapshots (``get_routers``) and reports floating IP statuses.

A recorder stands where the l3-agent would be: a real ``RPCServer`` on ``l3_agent.<host>``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from stratus.core.bus import RPCServer, Target
from stratus.core.context import RequestContext
from stratus.network.l3_agents import L3_AGENT_BINARY, L3_AGENT_TYPE
from stratus.network.objects import AgentState
from stratus.network.rpcapi import L3_AGENT_TOPIC, NetworkServerAPI
from tests.integration.network.conftest import CloudFactory, NetCloud
from tests.integration.network.test_agent_rpc import WAIT, Recorder
from tests.integration.network.test_routers import external_network

HOST = "l3-host"


class L3Recorder(Recorder):
    async def routers_updated(self, ctx: RequestContext, router_ids: list[str]) -> None:
        await self.record("routers_updated", router_ids=router_ids)

    async def router_deleted(self, ctx: RequestContext, router_id: str) -> None:
        await self.record("router_deleted", router_id=router_id)


def l3_state(host: str = HOST) -> AgentState:
    return AgentState(host=host, binary=L3_AGENT_BINARY, agent_type=L3_AGENT_TYPE,
                      topic=L3_AGENT_TOPIC)


@pytest.fixture
async def l3(make_cloud: CloudFactory, bus_url: str) -> Any:
    cloud = await make_cloud(backend="linuxbridge", bus=bus_url)
    transport = await cloud.stack.transport()
    agent = L3Recorder()
    server = RPCServer(transport, Target(L3_AGENT_TOPIC, server=HOST), agent,
                       ("routers_updated", "router_deleted"))
    await server.start()
    try:
        yield cloud, NetworkServerAPI(transport), agent
    finally:
        await server.stop()


async def report(cloud: NetCloud, api: NetworkServerAPI, host: str) -> None:
    """An l3-agent's heartbeat (a cast), waited for until the agent is listed."""
    await api.report_state(RequestContext(), l3_state(host))
    async with asyncio.timeout(WAIT):
        while True:
            agents = (await cloud.call("GET", "/agents", params={
                "agent_type": L3_AGENT_TYPE})).json()["agents"]
            if host in {a["host"] for a in agents}:
                return
            await asyncio.sleep(0.02)


async def _admin_port(cloud: NetCloud, port_id: str) -> dict[str, Any]:
    port: dict[str, Any] = (await cloud.call("GET", f"/ports/{port_id}")).json()["port"]
    return port


async def test_l3_agent_contract(l3: Any) -> None:
    cloud: NetCloud
    cloud, api, agent = l3
    ctx = RequestContext()
    # Made before any l3-agent is alive: it waits, unscheduled.
    early = await cloud.create("router", name="early")
    public, public_sub = await external_network(cloud)
    set_gw = await cloud.call("PUT", f"/routers/{early['id']}", json={"router": {
        "external_gateway_info": {"network_id": public["id"]}}})
    assert set_gw.status_code == 200
    await report(cloud, api, HOST)
    # The agent's first full sync takes the waiting router.
    [info] = await api.get_routers(ctx, HOST)
    assert info.id == early["id"] and info.gateway is not None
    assert info.gateway.network.id == public["id"] and info.gateway.network.ports == []
    assert info.gateway.network.subnets[0].id == public_sub["id"]
    assert (await _admin_port(cloud, info.gateway.id))["binding:host_id"] == HOST

    # A router made now is scheduled at its first leg, its legs bound to the agent's host.
    member = await cloud.project()
    net, sub = await cloud.network_with_subnet(member, cidr="10.60.0.0/24")
    router = await cloud.create("router", member, name="r", external_gateway_info=None)
    added = await cloud.call("PUT", f"/routers/{router['id']}/add_router_interface", member,
                             json={"subnet_id": sub["id"]})
    leg_id = added.json()["port_id"]
    await agent.wait_for("routers_updated", lambda k: router["id"] in k["router_ids"])
    leg = await _admin_port(cloud, leg_id)
    assert leg["binding:host_id"] == HOST and leg["status"] == "DOWN"
    await api.update_device_up(ctx, leg_id, HOST)  # the agent plugged its qr- leg
    assert (await _admin_port(cloud, leg_id))["status"] == "ACTIVE"
    gw = await cloud.call("PUT", f"/routers/{router['id']}", member, json={"router": {
        "external_gateway_info": {"network_id": public["id"]}, "routes": []}})
    assert gw.status_code == 200, gw.text

    # A floating IP on a server's port: the router's agent hears of it and reports it up.
    vm_port = await cloud.create("port", member, network_id=net["id"],
                                 device_id=str(uuid.uuid4()), device_owner="compute:nova")
    fip = await cloud.create("floatingip", member, floating_network_id=public["id"],
                             port_id=vm_port["id"])
    assert fip["status"] == "DOWN" and fip["router_id"] == router["id"]
    agent.calls.clear()
    routes = [{"destination": "192.168.9.0/24", "nexthop": "10.60.0.9"}]
    assert (await cloud.call("PUT", f"/routers/{router['id']}", member, json={"router": {
        "routes": routes}})).status_code == 200
    await agent.wait_for("routers_updated", lambda k: k["router_ids"] == [router["id"]])
    [info] = await api.get_routers(ctx, HOST, [router["id"]])
    assert info.project_id == member.project_id and info.enable_snat is True
    assert [i.id for i in info.interfaces] == [leg_id]
    assert info.interfaces[0].fixed_ips[0].ip_address == "10.60.0.1"
    assert info.interfaces[0].network.id == net["id"]
    assert info.gateway is not None
    assert info.gateway.fixed_ips[0].subnet_id == public_sub["id"]
    assert [r.model_dump() for r in info.routes] == routes
    assert [(f.id, f.floating_ip_address, f.fixed_ip_address, f.port_id)
            for f in info.floating_ips] == [(fip["id"], fip["floating_ip_address"],
                                             vm_port["fixed_ips"][0]["ip_address"],
                                             vm_port["id"])]
    assert {r.id for r in await api.get_routers(ctx, HOST)} == {early["id"], router["id"]}
    assert await api.get_routers(ctx, "elsewhere") == []

    await api.update_floatingip_statuses(ctx, router["id"], {fip["id"]: "ACTIVE",
                                                             str(uuid.uuid4()): "ACTIVE"})
    shown = (await cloud.call("GET", f"/floatingips/{fip['id']}", member)).json()["floatingip"]
    assert shown["status"] == "ACTIVE"
    await api.update_floatingip_statuses(ctx, early["id"], {fip["id"]: "ERROR"})  # not its
    shown = (await cloud.call("GET", f"/floatingips/{fip['id']}", member)).json()["floatingip"]
    assert shown["status"] == "ACTIVE"

    # Deleting the server's port disassociates: the agent is told, the IP goes DOWN.
    agent.calls.clear()
    assert (await cloud.call("DELETE", f"/ports/{vm_port['id']}", member)).status_code == 204
    await agent.wait_for("routers_updated", lambda k: router["id"] in k["router_ids"])
    [info] = await api.get_routers(ctx, HOST, [router["id"]])
    assert info.floating_ips == []
    shown = (await cloud.call("GET", f"/floatingips/{fip['id']}", member)).json()["floatingip"]
    assert shown["status"] == "DOWN"

    # Emptied (the route first: it needs the interface) and deleted: router_deleted.
    needed = await cloud.call("PUT", f"/routers/{router['id']}/remove_router_interface",
                              member, json={"port_id": leg_id})
    assert needed.status_code == 409
    assert (await cloud.call("PUT", f"/routers/{router['id']}", member, json={"router": {
        "routes": []}})).status_code == 200
    assert (await cloud.call("PUT", f"/routers/{router['id']}/remove_router_interface",
                             member, json={"port_id": leg_id})).status_code == 200
    assert (await cloud.call("DELETE", f"/routers/{router['id']}", member)).status_code == 204
    await agent.wait_for("router_deleted", lambda k: k["router_id"] == router["id"])
    assert [r.id for r in await api.get_routers(ctx, HOST)] == [early["id"]]


async def test_routers_go_to_the_least_loaded_agent(l3: Any) -> None:
    cloud: NetCloud
    cloud, api, _ = l3
    ctx = RequestContext()
    for host in (HOST, "l3-other"):
        await report(cloud, api, host)
    public, _ = await external_network(cloud, cidr="172.24.9.0/24", name="pub2")
    routers = [await cloud.create("router", name=f"r{i}", external_gateway_info={
        "network_id": public["id"]}) for i in range(4)]
    mine = {r.id for r in await api.get_routers(ctx, HOST)}
    theirs = {r.id for r in await api.get_routers(ctx, "l3-other")}
    assert len(mine) == len(theirs) == 2 and mine | theirs == {r["id"] for r in routers}
    # A router with no leg needs no agent.
    bare = await cloud.create("router", name="bare")
    assert bare["id"] not in {r.id for r in await api.get_routers(ctx, HOST)}
