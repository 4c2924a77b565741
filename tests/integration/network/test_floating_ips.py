"""Floating IPs through the Network API (noop backend): create on an external network,
association through a router (``router_id`` computed), ``port_details``, Neutron's filters,
disassociation, the port's deletion, and Neutron's errors; compute hears
``network-changed`` for the server whose port gains or loses one."""

from __future__ import annotations

import uuid
from typing import Any

from stratus.network.events import DiscardEvents
from tests.integration.network.conftest import NetCloud, assert_neutron_error
from tests.integration.network.test_routers import external_network


async def _routed(cloud: NetCloud, member: Any, cidr: str = "10.40.0.0/24",
                  public: dict[str, Any] | None = None) -> dict[str, Any]:
    """A member's network and subnet behind a router with its gateway on ``public``."""
    net, sub = await cloud.network_with_subnet(member, cidr=cidr)
    router = await cloud.create("router", member, name=f"r-{cidr}",
                                external_gateway_info={"network_id": public["id"]}
                                if public else None)
    added = await cloud.call("PUT", f"/routers/{router['id']}/add_router_interface", member,
                             json={"subnet_id": sub["id"]})
    assert added.status_code == 200, added.text
    return {"network": net, "subnet": sub, "router": router}


async def test_create_on_external_networks_only(cloud: NetCloud) -> None:
    public, public_sub = await external_network(cloud, cidr="172.24.8.0/29")
    member = await cloud.project()
    internal, _ = await cloud.network_with_subnet(member, cidr="10.41.0.0/24")
    # An external network's subnets are everyone's to see, marked external
    # (subnet-external-network); a project's own are not.
    seen = (await cloud.call("GET", "/subnets", member)).json()["subnets"]
    flags = {s["network_id"]: s["router:external"] for s in seen}
    assert flags == {public["id"]: True, internal["id"]: False}
    shown = (await cloud.call("GET", f"/subnets/{public_sub['id']}", member)).json()
    assert shown["subnet"]["router:external"] is True
    aliases = {e["alias"] for e in (await cloud.call("GET", "/extensions")).json()[
        "extensions"]}
    assert "subnet-external-network" in aliases
    refused = await cloud.call("POST", "/floatingips", member, json={"floatingip": {
        "floating_network_id": internal["id"]}})
    assert assert_neutron_error(refused, 400, "BadRequest") == (
        f"Bad floatingip request: Network {internal['id']} is not a valid external network.")
    missing = await cloud.call("POST", "/floatingips", member, json={"floatingip": {
        "floating_network_id": str(uuid.uuid4())}})
    assert_neutron_error(missing, 404, "NetworkNotFound")

    fip = await cloud.create("floatingip", member, floating_network_id=public["id"],
                             description="web")
    assert fip["floating_ip_address"].startswith("172.24.8.")
    assert fip["status"] == "DOWN" and fip["router_id"] is None and fip["port_id"] is None
    assert fip["fixed_ip_address"] is None and fip["port_details"] is None
    assert fip["project_id"] == member.project_id and fip["description"] == "web"
    [holder] = (await cloud.call("GET", "/ports", params={"device_id": fip["id"]})).json()[
        "ports"]
    assert holder["device_owner"] == "network:floatingip"
    assert holder["network_id"] == public["id"]
    assert holder["fixed_ips"] == [{"subnet_id": public_sub["id"],
                                    "ip_address": fip["floating_ip_address"]}]
    direct = await cloud.call("DELETE", f"/ports/{holder['id']}")
    assert_neutron_error(direct, 409, "ServicePortInUse")

    # Choosing the address is an admin's; a taken one is a 409, and so is an empty pool.
    # (One the first floating IP, given any free address, does not hold.)
    wanted = next(a for a in ("172.24.8.6", "172.24.8.5") if a != fip["floating_ip_address"])
    chosen = await cloud.call("POST", "/floatingips", member, json={"floatingip": {
        "floating_network_id": public["id"], "floating_ip_address": wanted}})
    assert_neutron_error(chosen, 403, "PolicyNotAuthorized")
    mine = await cloud.create("floatingip", floating_network_id=public["id"],
                              floating_ip_address=wanted)
    assert mine["floating_ip_address"] == wanted
    taken = await cloud.call("POST", "/floatingips", json={"floatingip": {
        "floating_network_id": public["id"], "floating_ip_address": wanted}})
    assert_neutron_error(taken, 409, "IpAddressAlreadyAllocated")
    by_subnet = await cloud.create("floatingip", member, floating_network_id=public["id"],
                                   subnet_id=public_sub["id"])
    assert by_subnet["floating_ip_address"].startswith("172.24.8.")
    # A /29 holds six: the gateway and three floating IPs are out, two remain.
    for _ in range(2):
        await cloud.create("floatingip", member, floating_network_id=public["id"])
    exhausted = await cloud.call("POST", "/floatingips", member, json={"floatingip": {
        "floating_network_id": public["id"]}})
    assert_neutron_error(exhausted, 409, "IpAddressGenerationFailure")
    assert (await cloud.call("DELETE", f"/floatingips/{fip['id']}", member)).status_code == 204
    assert_neutron_error(await cloud.call("GET", f"/floatingips/{fip['id']}", member), 404,
                         "FloatingIPNotFound")
    assert (await cloud.call("GET", "/ports", params={"device_id": fip["id"]})).json()[
        "ports"] == []
    again = await cloud.create("floatingip", member, floating_network_id=public["id"])
    assert again["floating_ip_address"] == fip["floating_ip_address"]  # freed with it


async def test_association_through_a_router(cloud: NetCloud) -> None:
    events = DiscardEvents()
    cloud.runtime.events = events
    public, _ = await external_network(cloud)
    member = await cloud.project()
    routed = await _routed(cloud, member, public=public)
    server_id = str(uuid.uuid4())
    port = await cloud.create("port", member, network_id=routed["network"]["id"],
                              device_id=server_id, device_owner="compute:nova")
    fixed = port["fixed_ips"][0]["ip_address"]
    fip = await cloud.create("floatingip", member, floating_network_id=public["id"])

    associated = await cloud.call("PUT", f"/floatingips/{fip['id']}", member, json={
        "floatingip": {"port_id": port["id"]}})
    assert associated.status_code == 200, associated.text
    body = associated.json()["floatingip"]
    assert body["port_id"] == port["id"] and body["fixed_ip_address"] == fixed
    assert body["router_id"] == routed["router"]["id"]
    assert body["status"] == "ACTIVE"  # the noop backend wires at once
    assert body["port_details"] == {
        "name": "", "network_id": routed["network"]["id"], "mac_address": port["mac_address"],
        "admin_state_up": True, "status": port["status"], "device_id": server_id,
        "device_owner": "compute:nova"}
    assert [(e.name, e.server_uuid, e.tag) for e in events.sent] == [
        ("network-changed", server_id, port["id"])]

    # Neutron's filters.
    for name, value in (("port_id", port["id"]), ("router_id", routed["router"]["id"]),
                        ("floating_ip_address", fip["floating_ip_address"]),
                        ("fixed_ip_address", fixed), ("status", "ACTIVE"),
                        ("floating_network_id", public["id"])):
        found = (await cloud.call("GET", "/floatingips", member, params={name: value})).json()
        assert [f["id"] for f in found["floatingips"]] == [fip["id"]], name
    assert (await cloud.call("GET", "/floatingips", member, params={
        "status": "DOWN"})).json()["floatingips"] == []
    fields = (await cloud.call("GET", "/floatingips", member, params={
        "fields": ["id", "port_id"]})).json()["floatingips"]
    assert fields == [{"id": fip["id"], "port_id": port["id"]}]
    assert (await cloud.call("GET", "/floatingips", params={"colour": "x"})).status_code == 400

    # One floating IP per fixed IP and external network.
    second = await cloud.create("floatingip", member, floating_network_id=public["id"])
    clash = await cloud.call("PUT", f"/floatingips/{second['id']}", member, json={
        "floatingip": {"port_id": port["id"]}})
    assert_neutron_error(clash, 409, "FloatingIPPortAlreadyAssociated")
    # What the floating IP needs stays: the router's interface and its gateway.
    interface = await cloud.call("PUT",
                                 f"/routers/{routed['router']['id']}/remove_router_interface",
                                 member, json={"subnet_id": routed["subnet"]["id"]})
    assert_neutron_error(interface, 409, "RouterInterfaceInUseByFloatingIP")
    gateway = await cloud.call("PUT", f"/routers/{routed['router']['id']}", member, json={
        "router": {"external_gateway_info": {}}})
    assert_neutron_error(gateway, 409, "RouterExternalGatewayInUseByFloatingIp")

    # Disassociation with a null port.
    freed = await cloud.call("PUT", f"/floatingips/{fip['id']}", member, json={
        "floatingip": {"port_id": None}})
    body = freed.json()["floatingip"]
    assert body["port_id"] is None and body["router_id"] is None
    assert body["fixed_ip_address"] is None and body["status"] == "DOWN"
    assert body["port_details"] is None
    assert events.sent[-1].name == "network-changed" and len(events.sent) == 2

    # Deleting the port lets go of its floating IP.
    moved = await cloud.call("PUT", f"/floatingips/{second['id']}", member, json={
        "floatingip": {"port_id": port["id"], "description": "moved"}})
    assert moved.json()["floatingip"]["router_id"] == routed["router"]["id"]
    assert moved.json()["floatingip"]["description"] == "moved"
    assert (await cloud.call("DELETE", f"/ports/{port['id']}", member)).status_code == 204
    after = (await cloud.call("GET", f"/floatingips/{second['id']}", member)).json()[
        "floatingip"]
    assert after["port_id"] is None and after["router_id"] is None
    assert after["status"] == "DOWN"
    assert [e.name for e in events.sent] == ["network-changed"] * 4


async def test_association_errors(cloud: NetCloud) -> None:
    public, _ = await external_network(cloud)
    member = await cloud.project()
    fip = await cloud.create("floatingip", member, floating_network_id=public["id"])
    path = f"/floatingips/{fip['id']}"

    # No router joins the port's subnet to the external network.
    isolated, isolated_sub = await cloud.network_with_subnet(member, cidr="10.50.0.0/24")
    lonely = await cloud.create("port", member, network_id=isolated["id"])
    unreachable = await cloud.call("PUT", path, member, json={"floatingip": {
        "port_id": lonely["id"]}})
    assert assert_neutron_error(unreachable, 404, "ExternalGatewayForFloatingIPNotFound") == (
        f"External network {public['id']} is not reachable from subnet "
        f"{isolated_sub['id']}.  Therefore, cannot associate Port {lonely['id']} with a "
        "Floating IP.")
    # A router with an interface there but no gateway does not do either.
    gatewayless = await _routed(cloud, member, cidr="10.51.0.0/24")
    port = await cloud.create("port", member, network_id=gatewayless["network"]["id"])
    still = await cloud.call("PUT", path, member, json={"floatingip": {"port_id": port["id"]}})
    assert_neutron_error(still, 404, "ExternalGatewayForFloatingIPNotFound")
    # Created already associated: the same rule.
    at_create = await cloud.call("POST", "/floatingips", member, json={"floatingip": {
        "floating_network_id": public["id"], "port_id": lonely["id"]}})
    assert_neutron_error(at_create, 404, "ExternalGatewayForFloatingIPNotFound")

    # A port of two addresses needs fixed_ip_address, one of its own.
    routed = await _routed(cloud, member, cidr="10.52.0.0/24", public=public)
    two = await cloud.create("port", member, network_id=routed["network"]["id"], fixed_ips=[
        {"subnet_id": routed["subnet"]["id"]}, {"subnet_id": routed["subnet"]["id"]}])
    ambiguous = await cloud.call("PUT", path, member, json={"floatingip": {
        "port_id": two["id"]}})
    assert "multiple fixed IPv4 addresses" in assert_neutron_error(ambiguous, 400,
                                                                   "BadRequest")
    foreign = await cloud.call("PUT", path, member, json={"floatingip": {
        "port_id": two["id"], "fixed_ip_address": "10.99.0.1"}})
    assert "does not have fixed ip 10.99.0.1" in assert_neutron_error(foreign, 400,
                                                                      "BadRequest")
    second_ip = two["fixed_ips"][1]["ip_address"]
    chosen = await cloud.call("PUT", path, member, json={"floatingip": {
        "port_id": two["id"], "fixed_ip_address": second_ip}})
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["floatingip"]["fixed_ip_address"] == second_ip
    created_associated = await cloud.call("POST", "/floatingips", member, json={
        "floatingip": {"floating_network_id": public["id"], "port_id": two["id"],
                       "fixed_ip_address": two["fixed_ips"][0]["ip_address"]}})
    assert created_associated.status_code == 201, created_associated.text
    assert created_associated.json()["floatingip"]["router_id"] == routed["router"]["id"]

    # Another project's port is not to be seen; a router leg cannot float.
    other = await cloud.project()
    theirs, _ = await cloud.network_with_subnet(other, cidr="10.53.0.0/24")
    their_port = await cloud.create("port", other, network_id=theirs["id"])
    hidden = await cloud.call("PUT", path, member, json={"floatingip": {
        "port_id": their_port["id"]}})
    assert_neutron_error(hidden, 404, "PortNotFound")
    [leg] = (await cloud.call("GET", "/ports", member, params={
        "device_id": routed["router"]["id"]})).json()["ports"]
    leg_fip = await cloud.call("PUT", path, member, json={"floatingip": {"port_id": leg["id"]}})
    assert_neutron_error(leg_fip, 400, "BadRequest")
    stranger = await cloud.call("GET", path, other)
    assert_neutron_error(stranger, 404, "FloatingIPNotFound")
