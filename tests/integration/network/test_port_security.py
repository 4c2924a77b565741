"""Port security, allowed address pairs and security group rules as Neutron checks them:
its errors, by type and status, for what the real clients send."""

from __future__ import annotations

from typing import Any

from tests.integration.network.conftest import NetCloud, assert_neutron_error


async def test_port_security_and_groups(cloud: NetCloud) -> None:
    member = await cloud.project()
    net, _ = await cloud.network_with_subnet(member, cidr="10.50.0.0/24")
    web = await cloud.create("security-group", member, name="web")

    # Groups need port security (400); a port without it gets no default group.
    refused = await cloud.call("POST", "/ports", member, json={"port": {
        "network_id": net["id"], "port_security_enabled": False,
        "security_groups": [web["id"]]}})
    assert "Port security must be enabled" in assert_neutron_error(
        refused, 400, "PortSecurityAndIPRequiredForSecurityGroups")
    bare = await cloud.create("port", member, network_id=net["id"],
                              port_security_enabled=False)
    assert bare["security_groups"] == [] and bare["port_security_enabled"] is False
    refused = await cloud.call("PUT", f"/ports/{bare['id']}", member, json={"port": {
        "security_groups": [web["id"]]}})
    assert_neutron_error(refused, 400, "PortSecurityAndIPRequiredForSecurityGroups")

    # Port security cannot go while groups remain (409), unless they go together.
    port = await cloud.create("port", member, network_id=net["id"],
                              security_groups=[web["id"]])
    refused = await cloud.call("PUT", f"/ports/{port['id']}", member, json={"port": {
        "port_security_enabled": False}})
    assert "Port has security group associated" in assert_neutron_error(
        refused, 409, "PortSecurityPortHasSecurityGroup")
    shown = (await cloud.call("GET", f"/ports/{port['id']}", member)).json()["port"]
    assert shown["port_security_enabled"] is True and shown["security_groups"] == [web["id"]]
    both = await cloud.call("PUT", f"/ports/{port['id']}", member, json={"port": {
        "security_groups": [], "port_security_enabled": False}})
    assert both.status_code == 200, both.text
    assert both.json()["port"]["security_groups"] == []
    assert both.json()["port"]["port_security_enabled"] is False

    # The network's setting is new ports' default.
    closed = await cloud.create("network", member, name="open", port_security_enabled=False)
    await cloud.create("subnet", member, network_id=closed["id"], cidr="10.51.0.0/24",
                       ip_version=4)
    inherited = await cloud.create("port", member, network_id=closed["id"])
    assert inherited["port_security_enabled"] is False and inherited["security_groups"] == []


async def test_allowed_address_pairs(cloud: NetCloud) -> None:
    member = await cloud.project()
    net, _ = await cloud.network_with_subnet(member, cidr="10.52.0.0/24")
    extensions = (await cloud.call("GET", "/extensions", member)).json()["extensions"]
    assert "allowed-address-pairs" in {e["alias"] for e in extensions}
    port = await cloud.create("port", member, network_id=net["id"], allowed_address_pairs=[
        {"ip_address": "10.52.0.200"},
        {"ip_address": "10.52.1.0/24", "mac_address": "fa:16:3e:00:11:22"}])
    assert port["allowed_address_pairs"] == [
        {"ip_address": "10.52.0.200", "mac_address": port["mac_address"]},
        {"ip_address": "10.52.1.0/24", "mac_address": "fa:16:3e:00:11:22"}]
    updated = await cloud.call("PUT", f"/ports/{port['id']}", member, json={"port": {
        "allowed_address_pairs": [{"ip_address": "192.0.2.9"}]}})
    assert updated.json()["port"]["allowed_address_pairs"] == [
        {"ip_address": "192.0.2.9", "mac_address": port["mac_address"]}]

    bad: list[tuple[Any, int, str]] = [
        ([{"mac_address": "fa:16:3e:00:11:22"}], 400, "AllowedAddressPairsMissingIP"),
        ([{"ip_address": "10.0.0.1"}, {"ip_address": "10.0.0.1"}], 400,
         "DuplicateAddressPairInRequest"),
        ([{"ip_address": "not-an-ip"}], 400, "InvalidInput"),
        ([{"ip_address": "10.0.0.1", "color": "red"}], 400, "InvalidInput"),
        ([{"ip_address": f"10.0.0.{i}"} for i in range(11)], 400,
         "AllowedAddressPairExhausted"),
        ("10.0.0.1", 400, "InvalidInput"),
    ]
    for pairs, status, type_name in bad:
        response = await cloud.call("PUT", f"/ports/{port['id']}", member, json={"port": {
            "allowed_address_pairs": pairs}})
        assert_neutron_error(response, status, type_name)
    # Pairs need port security.
    refused = await cloud.call("PUT", f"/ports/{port['id']}", member, json={"port": {
        "security_groups": [], "port_security_enabled": False}})
    assert_neutron_error(refused, 409, "AddressPairAndPortSecurityRequired")
    done = await cloud.call("PUT", f"/ports/{port['id']}", member, json={"port": {
        "security_groups": [], "port_security_enabled": False,
        "allowed_address_pairs": []}})
    assert done.status_code == 200, done.text


async def test_rule_protocols_and_port_ranges(cloud: NetCloud) -> None:
    member = await cloud.project()
    group = await cloud.create("security-group", member, name="rules")

    async def rule(**attrs: Any) -> Any:
        return await cloud.call("POST", "/security-group-rules", member, json={
            "security_group_rule": {"security_group_id": group["id"],
                                    "direction": "ingress", **attrs}})

    udp = await rule(protocol="17", port_range_min=53, port_range_max=53)
    assert udp.status_code == 201 and udp.json()["security_group_rule"]["protocol"] == "17"
    # The same rule by name is a duplicate.
    assert_neutron_error(await rule(protocol="udp", port_range_min=53, port_range_max=53),
                         409, "SecurityGroupRuleExists")
    for created in ({"protocol": "1", "port_range_min": 8, "port_range_max": 0},
                    {"protocol": "vrrp"}, {"protocol": "112", "ethertype": "IPv6"},
                    {"protocol": "icmp", "ethertype": "IPv6", "port_range_min": 128},
                    {"protocol": "sctp", "port_range_min": 10, "port_range_max": 20}):
        response = await rule(**created)
        assert response.status_code == 201, (created, response.text)

    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"protocol": "tcp", "port_range_min": 30, "port_range_max": 20},
         "SecurityGroupInvalidPortRange", "port_range_min must be <= port_range_max"),
        ({"protocol": "tcp", "port_range_min": 0, "port_range_max": 20},
         "SecurityGroupInvalidPortValue", "Invalid value for port 0"),
        ({"protocol": "udp", "port_range_min": 1, "port_range_max": 70000},
         "SecurityGroupInvalidPortValue", "Invalid value for port 70000"),
        ({"protocol": "icmp", "port_range_min": 256},
         "SecurityGroupInvalidIcmpValue", "Invalid value for ICMP type (port_range_min) 256"),
        ({"protocol": "icmp", "port_range_min": 8, "port_range_max": 300},
         "SecurityGroupInvalidIcmpValue", "ICMP code (port_range_max) 300"),
        ({"protocol": "icmp", "port_range_max": 0},
         "SecurityGroupMissingIcmpType", "ICMP type (port-range-min) is missing"),
        ({"port_range_min": 22, "port_range_max": 22},
         "SecurityGroupProtocolRequiredWithPorts", "Must also specify protocol"),
        ({"protocol": "gre", "port_range_min": 22, "port_range_max": 22},
         "SecurityGroupInvalidProtocolForPortRange", "Invalid protocol gre for port range"),
        ({"protocol": "256"}, "SecurityGroupRuleInvalidProtocol", "not supported"),
        ({"protocol": "ipv6-icmp"}, "InvalidInput", "ethertype"),
        ({"remote_ip_prefix": "10.0.0.0/8", "remote_group_id": group["id"]},
         "SecurityGroupRemoteGroupAndRemoteIpPrefix", "Only remote_ip_prefix"),
    ]
    for attrs, type_name, words in cases:
        assert words in assert_neutron_error(await rule(**attrs), 400, type_name), attrs


async def test_one_default_group_per_project(cloud: NetCloud) -> None:
    member = await cloud.project()
    groups = (await cloud.call("GET", "/security-groups", member)).json()["security_groups"]
    assert [g["name"] for g in groups] == ["default"]
    again = await cloud.call("POST", "/security-groups", member, json={
        "security_group": {"name": "default"}})
    assert_neutron_error(again, 409, "SecurityGroupDefaultAlreadyExists")
    other = await cloud.create("security-group", member, name="other")
    renamed = await cloud.call("PUT", f"/security-groups/{other['id']}", member, json={
        "security_group": {"name": "default"}})
    assert_neutron_error(renamed, 409, "SecurityGroupDefaultAlreadyExists")
    default = groups[0]
    renamed = await cloud.call("PUT", f"/security-groups/{default['id']}", member, json={
        "security_group": {"name": "mine"}})
    assert_neutron_error(renamed, 409, "SecurityGroupCannotUpdateDefault")
    names = [g["name"] for g in (await cloud.call("GET", "/security-groups",
                                                  member)).json()["security_groups"]]
    assert sorted(names) == ["default", "other"]
