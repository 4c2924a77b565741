"""Routers through the Network API (noop backend): CRUD with Neutron's filters, fields and
sorting, the external gateway, interfaces by subnet and by port, extra routes, quotas, and
Neutron's errors for each rule a router keeps."""

from __future__ import annotations

from typing import Any

from tests.integration.network.conftest import NetCloud, assert_neutron_error


async def external_network(cloud: NetCloud, cidr: str = "172.24.4.0/24",
                           name: str = "public") -> tuple[dict[str, Any], dict[str, Any]]:
    """An admin's external network with one subnet (no DHCP, as ``stratus up`` makes it)."""
    net = await cloud.create("network", name=name, **{"router:external": True})
    sub = await cloud.create("subnet", network_id=net["id"], cidr=cidr, enable_dhcp=False)
    return net, sub


async def test_router_extensions_are_listed(cloud: NetCloud) -> None:
    aliases = {e["alias"] for e in (await cloud.call("GET", "/extensions")).json()["extensions"]}
    assert {"router", "ext-gw-mode", "extraroute", "fip-port-details"} <= aliases
    shown = await cloud.call("GET", "/extensions/router")
    assert shown.status_code == 200 and shown.json()["extension"]["alias"] == "router"
    resources = (await cloud.call("GET", "")).json()["resources"]
    assert {"routers", "floatingips"} <= {r["collection"] for r in resources}


async def test_router_crud_filters_fields_and_sorting(cloud: NetCloud) -> None:
    member = await cloud.project()
    created = await cloud.call("POST", "/routers", member, json={"router": {
        "name": "r1", "description": "first", "admin_state_up": True}})
    assert created.status_code == 201, created.text
    r1 = created.json()["router"]
    assert r1["name"] == "r1" and r1["description"] == "first" and r1["status"] == "ACTIVE"
    assert r1["external_gateway_info"] is None and r1["routes"] == []
    assert r1["project_id"] == member.project_id == r1["tenant_id"]
    assert r1["revision_number"] == 1 and r1["created_at"].endswith("Z")
    r2 = await cloud.create("router", member, name="r2", admin_state_up=False)
    other = await cloud.project()
    await cloud.create("router", other, name="theirs")

    listed = (await cloud.call("GET", "/routers", member)).json()["routers"]
    assert [r["name"] for r in listed] == ["r1", "r2"]  # a project sees its own
    assert len((await cloud.call("GET", "/routers")).json()["routers"]) == 3  # admin: all
    down = (await cloud.call("GET", "/routers", member, params={"admin_state_up": "false"}))
    assert [r["id"] for r in down.json()["routers"]] == [r2["id"]]
    by_name = await cloud.call("GET", "/routers", member, params={"name": "r1",
                                                                  "fields": ["id", "name"]})
    assert by_name.json()["routers"] == [{"id": r1["id"], "name": "r1"}]
    desc = await cloud.call("GET", "/routers", member, params={"sort_key": "name",
                                                                "sort_dir": "desc"})
    assert [r["name"] for r in desc.json()["routers"]] == ["r2", "r1"]
    bad = await cloud.call("GET", "/routers", member, params={"colour": "blue"})
    assert_neutron_error(bad, 400, "InvalidInput")
    shown = await cloud.call("GET", f"/routers/{r1['id']}", member, params={"fields": "name"})
    assert shown.json() == {"router": {"name": "r1"}}
    hidden = await cloud.call("GET", f"/routers/{r1['id']}", other)
    assert_neutron_error(hidden, 404, "RouterNotFound")

    updated = await cloud.call("PUT", f"/routers/{r1['id']}", member, json={"router": {
        "name": "renamed", "admin_state_up": False}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["router"]["name"] == "renamed"
    assert updated.json()["router"]["revision_number"] == 2
    unknown = await cloud.call("PUT", f"/routers/{r1['id']}", member,
                               json={"router": {"colour": "red"}})
    assert_neutron_error(unknown, 400, "InvalidInput")
    tagged = await cloud.call("PUT", f"/routers/{r1['id']}/tags", member,
                              json={"tags": ["edge"]})
    assert tagged.status_code == 200
    assert [r["id"] for r in (await cloud.call("GET", "/routers", member, params={
        "tags": "edge"})).json()["routers"]] == [r1["id"]]
    assert (await cloud.call("DELETE", f"/routers/{r1['id']}", member)).status_code == 204
    gone = await cloud.call("GET", f"/routers/{r1['id']}", member)
    assert_neutron_error(gone, 404, "RouterNotFound")


async def _ports_of(cloud: NetCloud, router_id: str, owner: str) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = (await cloud.call("GET", "/ports", params={
        "device_id": router_id, "device_owner": owner})).json()["ports"]
    return ports


async def test_external_gateway(cloud: NetCloud) -> None:
    public, public_sub = await external_network(cloud)
    member = await cloud.project()
    internal, _ = await cloud.network_with_subnet(member, cidr="10.10.0.0/24")
    # Everyone sees external networks (to route to and float from) and their subnets.
    seen = (await cloud.call("GET", "/networks", member, params={"name": "public"})).json()
    assert [n["id"] for n in seen["networks"]] == [public["id"]]
    assert (await cloud.call("GET", f"/subnets/{public_sub['id']}", member)).status_code == 200
    on_public = await cloud.call("POST", "/ports", member, json={"port": {
        "network_id": public["id"]}})
    assert_neutron_error(on_public, 403, "PolicyNotAuthorized")

    router = await cloud.create("router", member, name="gw", external_gateway_info={
        "network_id": public["id"]})
    gateway = router["external_gateway_info"]
    assert gateway["network_id"] == public["id"] and gateway["enable_snat"] is True
    [fixed] = gateway["external_fixed_ips"]
    assert fixed["subnet_id"] == public_sub["id"] and fixed["ip_address"].startswith("172.24.4.")
    [gw_port] = await _ports_of(cloud, router["id"], "network:router_gateway")
    assert gw_port["network_id"] == public["id"] and gw_port["status"] == "ACTIVE"
    assert gw_port["fixed_ips"] == [fixed]
    # Not the member's port: it does not count, nor show, in the member's project.
    assert (await cloud.call("GET", "/ports", member, params={
        "device_id": router["id"]})).json()["ports"] == []

    not_external = await cloud.call("PUT", f"/routers/{router['id']}", member, json={
        "router": {"external_gateway_info": {"network_id": internal["id"]}}})
    message = assert_neutron_error(not_external, 400, "BadRequest")
    assert message == (f"Bad router request: Network {internal['id']} is not an external "
                       "network.")
    missing = await cloud.call("POST", "/routers", member, json={"router": {
        "external_gateway_info": {"network_id": "no-such-network"}}})
    assert_neutron_error(missing, 404, "NetworkNotFound")
    snat = await cloud.call("PUT", f"/routers/{router['id']}", member, json={"router": {
        "external_gateway_info": {"network_id": public["id"], "enable_snat": False}}})
    assert_neutron_error(snat, 403, "PolicyNotAuthorized")
    fixed_ips = await cloud.call("POST", "/routers", member, json={"router": {
        "external_gateway_info": {"network_id": public["id"], "external_fixed_ips": [
            {"ip_address": "172.24.4.50"}]}}})
    assert_neutron_error(fixed_ips, 403, "PolicyNotAuthorized")

    # An admin may turn SNAT off (the port stays) and choose the gateway's address.
    no_snat = await cloud.call("PUT", f"/routers/{router['id']}", json={"router": {
        "external_gateway_info": {"network_id": public["id"], "enable_snat": False}}})
    assert no_snat.json()["router"]["external_gateway_info"]["enable_snat"] is False
    assert (await _ports_of(cloud, router["id"], "network:router_gateway"))[0]["id"] == \
        gw_port["id"]
    moved = await cloud.call("PUT", f"/routers/{router['id']}", json={"router": {
        "external_gateway_info": {"network_id": public["id"], "external_fixed_ips": [
            {"ip_address": "172.24.4.50"}]}}})
    assert moved.status_code == 200, moved.text
    assert moved.json()["router"]["external_gateway_info"]["external_fixed_ips"] == [
        {"subnet_id": public_sub["id"], "ip_address": "172.24.4.50"}]
    taken = await cloud.call("POST", "/routers", json={"router": {
        "external_gateway_info": {"network_id": public["id"], "external_fixed_ips": [
            {"ip_address": "172.24.4.50"}]}}})
    assert_neutron_error(taken, 409, "IpAddressAlreadyAllocated")

    # Clearing it ({} as `router unset --external-gateway` sends) frees the port.
    cleared = await cloud.call("PUT", f"/routers/{router['id']}", member, json={
        "router": {"external_gateway_info": {}}})
    assert cleared.json()["router"]["external_gateway_info"] is None
    assert await _ports_of(cloud, router["id"], "network:router_gateway") == []
    gw_direct = await cloud.create("router", name="admin-gw", external_gateway_info={
        "network_id": public["id"]})
    [admin_gw_port] = await _ports_of(cloud, gw_direct["id"], "network:router_gateway")
    refused = await cloud.call("DELETE", f"/ports/{admin_gw_port['id']}")
    assert_neutron_error(refused, 409, "ServicePortInUse")
    assert (await cloud.call("DELETE", f"/networks/{public['id']}")).status_code == 409
    assert (await cloud.call("DELETE", f"/routers/{gw_direct['id']}")).status_code == 204
    assert await _ports_of(cloud, gw_direct["id"], "network:router_gateway") == []


async def test_interfaces_by_subnet_and_by_port(cloud: NetCloud) -> None:
    member = await cloud.project()
    net, sub = await cloud.network_with_subnet(member, cidr="10.20.0.0/24")
    router = await cloud.create("router", member, name="r")
    path = f"/routers/{router['id']}"

    added = await cloud.call("PUT", f"{path}/add_router_interface", member,
                             json={"subnet_id": sub["id"]})
    assert added.status_code == 200, added.text
    info = added.json()
    assert info["id"] == router["id"] and info["subnet_id"] == sub["id"]
    assert info["subnet_ids"] == [sub["id"]] and info["network_id"] == net["id"]
    assert info["project_id"] == member.project_id == info["tenant_id"]
    port = (await cloud.call("GET", f"/ports/{info['port_id']}", member)).json()["port"]
    assert port["device_owner"] == "network:router_interface"
    assert port["device_id"] == router["id"] and port["status"] == "ACTIVE"
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.20.0.1"}]
    listed = await cloud.call("GET", "/ports", member, params={
        "device_id": router["id"], "device_owner": "network:router_interface"})
    assert [p["id"] for p in listed.json()["ports"]] == [info["port_id"]]

    twice = await cloud.call("PUT", f"{path}/add_router_interface", member,
                             json={"subnet_id": sub["id"]})
    assert assert_neutron_error(twice, 400, "BadRequest") == (
        f"Bad router request: Router already has a port on subnet {sub['id']}.")
    _, overlapping = await cloud.network_with_subnet(member, cidr="10.20.0.0/16")
    overlap = await cloud.call("PUT", f"{path}/add_router_interface", member,
                               json={"subnet_id": overlapping["id"]})
    assert "overlaps with cidr 10.20.0.0/24" in assert_neutron_error(overlap, 400,
                                                                     "BadRequest")
    _, no_gateway = await cloud.network_with_subnet(member, cidr="10.21.0.0/24",
                                                    gateway_ip=None)
    gatewayless = await cloud.call("PUT", f"{path}/add_router_interface", member,
                                   json={"subnet_id": no_gateway["id"]})
    assert assert_neutron_error(gatewayless, 400, "BadRequest") == (
        "Bad router request: Subnet for router interface must have a gateway IP.")
    for body in ({}, {"subnet_id": sub["id"], "port_id": info["port_id"]}):
        wrong = await cloud.call("PUT", f"{path}/add_router_interface", member, json=body)
        assert_neutron_error(wrong, 400, "BadRequest")

    # By port: the member's unused port joins; a port in use does not.
    net2, sub2 = await cloud.network_with_subnet(member, cidr="10.22.0.0/24")
    own = await cloud.create("port", member, network_id=net2["id"])
    joined = await cloud.call("PUT", f"{path}/add_router_interface", member,
                              json={"port_id": own["id"]})
    assert joined.status_code == 200, joined.text
    assert joined.json()["port_id"] == own["id"] and joined.json()["subnet_ids"] == [sub2["id"]]
    shown = (await cloud.call("GET", f"/ports/{own['id']}", member)).json()["port"]
    assert shown["device_owner"] == "network:router_interface"
    assert shown["device_id"] == router["id"]
    busy = await cloud.create("port", member, network_id=net2["id"], device_id="vm-1",
                              device_owner="compute:nova")
    in_use = await cloud.call("PUT", f"{path}/add_router_interface", member,
                              json={"port_id": busy["id"]})
    assert_neutron_error(in_use, 409, "PortInUse")

    # What a router uses cannot be deleted from under it.
    assert_neutron_error(await cloud.call("DELETE", path, member), 409, "RouterInUse")
    assert_neutron_error(await cloud.call("DELETE", f"/subnets/{sub['id']}", member), 409,
                         "SubnetInUse")
    assert_neutron_error(await cloud.call("DELETE", f"/networks/{net['id']}", member), 409,
                         "NetworkInUse")
    direct = await cloud.call("DELETE", f"/ports/{info['port_id']}", member)
    assert assert_neutron_error(direct, 409, "ServicePortInUse") == (
        f"Port {info['port_id']} cannot be deleted directly via the port API: has device "
        "owner network:router_interface.")

    # Removal: by subnet, by port; what is not there is a 404.
    removed = await cloud.call("PUT", f"{path}/remove_router_interface", member,
                               json={"subnet_id": sub["id"]})
    assert removed.status_code == 200 and removed.json()["port_id"] == info["port_id"]
    assert (await cloud.call("GET", f"/ports/{info['port_id']}", member)).status_code == 404
    again = await cloud.call("PUT", f"{path}/remove_router_interface", member,
                             json={"subnet_id": sub["id"]})
    assert_neutron_error(again, 404, "RouterInterfaceNotFoundForSubnet")
    wrong_port = await cloud.call("PUT", f"{path}/remove_router_interface", member,
                                  json={"port_id": busy["id"]})
    assert_neutron_error(wrong_port, 404, "RouterInterfaceNotFound")
    by_port = await cloud.call("PUT", f"{path}/remove_router_interface", member,
                               json={"port_id": own["id"]})
    assert by_port.status_code == 200 and by_port.json()["subnet_ids"] == [sub2["id"]]
    assert (await cloud.call("DELETE", path, member)).status_code == 204
    assert (await cloud.call("DELETE", f"/subnets/{sub['id']}", member)).status_code == 204


async def test_extra_routes(cloud: NetCloud) -> None:
    member = await cloud.project()
    _, sub = await cloud.network_with_subnet(member, cidr="10.30.0.0/24")
    router = await cloud.create("router", member, name="routes")
    path = f"/routers/{router['id']}"
    routes = [{"destination": "192.168.5.0/24", "nexthop": "10.30.0.5"}]
    unconnected = await cloud.call("PUT", path, member, json={"router": {"routes": routes}})
    assert "the nexthop is not connected with router" in assert_neutron_error(
        unconnected, 400, "InvalidRoutes")
    assert (await cloud.call("PUT", f"{path}/add_router_interface", member,
                             json={"subnet_id": sub["id"]})).status_code == 200
    updated = await cloud.call("PUT", path, member, json={"router": {"routes": routes}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["router"]["routes"] == routes
    own_address = await cloud.call("PUT", path, member, json={"router": {"routes": [
        {"destination": "192.168.6.0/24", "nexthop": "10.30.0.1"}]}})
    assert "the nexthop is used by router" in assert_neutron_error(own_address, 400,
                                                                   "InvalidRoutes")
    bad_cidr = await cloud.call("PUT", path, member, json={"router": {"routes": [
        {"destination": "not-a-cidr", "nexthop": "10.30.0.5"}]}})
    assert_neutron_error(bad_cidr, 400, "InvalidRoutes")
    needed = await cloud.call("PUT", f"{path}/remove_router_interface", member,
                              json={"subnet_id": sub["id"]})
    assert_neutron_error(needed, 409, "RouterInterfaceInUseByRoute")
    cleared = await cloud.call("PUT", path, member, json={"router": {"routes": []}})
    assert cleared.json()["router"]["routes"] == []
    assert (await cloud.call("PUT", f"{path}/remove_router_interface", member,
                             json={"subnet_id": sub["id"]})).status_code == 200


async def test_router_and_floatingip_quotas(cloud: NetCloud) -> None:
    member = await cloud.project()
    project = member.project_id
    defaults = (await cloud.call("GET", f"/quotas/{project}/default", member)).json()["quota"]
    assert defaults["router"] == 10 and defaults["floatingip"] == 50
    limits = (await cloud.call("GET", f"/quotas/{project}", member)).json()["quota"]
    assert limits["router"] == 10 and limits["floatingip"] == 50
    await cloud.create("router", member, name="one")
    details = (await cloud.call("GET", f"/quotas/{project}/details", member)).json()["quota"]
    assert details["router"] == {"limit": 10, "used": 1, "reserved": 0}
    assert details["floatingip"] == {"limit": 50, "used": 0, "reserved": 0}
    set_to = await cloud.call("PUT", f"/quotas/{project}", json={"quota": {"router": 1,
                                                                           "floatingip": 0}})
    assert set_to.json()["quota"]["router"] == 1
    over = await cloud.call("POST", "/routers", member, json={"router": {"name": "two"}})
    assert_neutron_error(over, 409, "OverQuota")
    public, _ = await external_network(cloud, cidr="172.25.0.0/24", name="quota-public")
    no_fip = await cloud.call("POST", "/floatingips", member, json={"floatingip": {
        "floating_network_id": public["id"]}})
    assert_neutron_error(no_fip, 409, "OverQuota")

