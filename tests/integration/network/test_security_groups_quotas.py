"""Security groups and rules (the per-project ``default`` group), and quotas."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.integration.network.conftest import CloudFactory, NetCloud, assert_neutron_error


@contextmanager
def _statements() -> Iterator[list[str]]:
    """The SQL statements every engine of the process sends meanwhile."""
    seen: list[str] = []

    def sent(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", sent)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", sent)


async def test_a_first_port_makes_the_default_group_and_the_next_ones_join_it(
        cloud: NetCloud) -> None:
    """A project's first port (no default group yet) makes the group and is in it; the
    ports after it are put in that same group, and a port with port security off in none."""
    member = await cloud.project()
    net = await cloud.create("network", member, name="first-ports")
    await cloud.create("subnet", member, network_id=net["id"], cidr="10.44.0.0/24")
    first = await cloud.create("port", member, network_id=net["id"])
    groups = (await cloud.call("GET", "/security-groups", member)).json()["security_groups"]
    assert [g["name"] for g in groups] == ["default"]
    assert first["security_groups"] == [groups[0]["id"]]
    second = await cloud.create("port", member, network_id=net["id"])
    assert second["security_groups"] == [groups[0]["id"]]
    shown = (await cloud.call("GET", f"/ports/{second['id']}", member)).json()["port"]
    assert shown["security_groups"] == [groups[0]["id"]]
    bare = await cloud.create("port", member, network_id=net["id"],
                              port_security_enabled=False)
    assert bare["security_groups"] == []


async def test_default_group_is_made_once_with_its_rules(cloud: NetCloud) -> None:
    member = await cloud.project()
    # Many first requests at once still make one default group.
    lists = await asyncio.gather(*(cloud.call("GET", "/security-groups", member)
                                   for _ in range(10)))
    ids = {g["id"] for r in lists for g in r.json()["security_groups"]}
    assert len(ids) == 1
    group = lists[0].json()["security_groups"][0]
    assert group["name"] == "default" and group["project_id"] == member.project_id
    rules = {(r["direction"], r["ethertype"], r["remote_group_id"])
             for r in group["security_group_rules"]}
    assert rules == {("egress", "IPv4", None), ("egress", "IPv6", None),
                     ("ingress", "IPv4", group["id"]), ("ingress", "IPv6", group["id"])}
    assert all(r["belongs_to_default_sg"] for r in group["security_group_rules"])

    # The name lookup OSC does: GET /security-groups/default (404) then ?name=default.
    by_name = await cloud.call("GET", "/security-groups/default", member)
    assert_neutron_error(by_name, 404, "SecurityGroupNotFound")
    found = (await cloud.call("GET", "/security-groups", member,
                              params={"name": "default"})).json()["security_groups"]
    assert [g["id"] for g in found] == [group["id"]]

    # Another project sees only its own default group.
    other = await cloud.project()
    theirs = (await cloud.call("GET", "/security-groups", other)).json()["security_groups"]
    assert [g["name"] for g in theirs] == ["default"] and theirs[0]["id"] != group["id"]
    assert_neutron_error(await cloud.call("GET", f"/security-groups/{group['id']}", other),
                         404, "SecurityGroupNotFound")
    cannot = await cloud.call("DELETE", f"/security-groups/{group['id']}", member)
    assert_neutron_error(cannot, 409, "SecurityGroupCannotRemoveDefault")


async def test_rules_create_duplicate_validate_delete(cloud: NetCloud) -> None:
    member = await cloud.project()
    group = (await cloud.call("GET", "/security-groups", member)).json()["security_groups"][0]
    body = {"security_group_id": group["id"], "direction": "ingress", "ethertype": "IPv4",
            "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
            "remote_ip_prefix": "0.0.0.0/0"}
    rule = await cloud.create("security-group-rule", member, **body)
    assert rule["protocol"] == "tcp" and rule["port_range_min"] == 22
    assert rule["remote_group_id"] is None and rule["normalized_cidr"] == "0.0.0.0/0"
    assert rule["project_id"] == member.project_id and rule["belongs_to_default_sg"] is True
    duplicate = await cloud.call("POST", "/security-group-rules", member,
                                 json={"security_group_rule": body})
    message = assert_neutron_error(duplicate, 409, "SecurityGroupRuleExists")
    assert rule["id"] in message
    bad = [
        ({**body, "direction": "sideways"}, "direction", "InvalidInput"),
        ({**body, "port_range_min": 30, "port_range_max": 20}, "port_range",
         "SecurityGroupInvalidPortRange"),
        ({**body, "protocol": "nope"}, "protocol", "SecurityGroupRuleInvalidProtocol"),
        ({**body, "remote_ip_prefix": "::/0"}, "ethertype",
         "SecurityGroupRuleParameterConflict"),
        ({**body, "protocol": None}, "protocol", "SecurityGroupProtocolRequiredWithPorts"),
    ]
    for attrs, words, type_name in bad:
        response = await cloud.call("POST", "/security-group-rules", member,
                                    json={"security_group_rule": attrs})
        assert words in assert_neutron_error(response, 400, type_name), attrs

    # A protocol by number, as a string or an integer (Neutron takes both), kept as text.
    by_number = await cloud.create("security-group-rule", member, **{
        **body, "protocol": 17, "port_range_min": 53, "port_range_max": 53})
    assert by_number["protocol"] == "17"
    assert_neutron_error(await cloud.call("POST", "/security-group-rules", member, json={
        "security_group_rule": {**body, "protocol": "udp", "port_range_min": 53,
                                "port_range_max": 53}}), 409, "SecurityGroupRuleExists")
    assert_neutron_error(await cloud.call("POST", "/security-group-rules", member, json={
        "security_group_rule": {**body, "protocol": True}}), 400, "InvalidInput")

    custom = await cloud.create("security-group", member, name="web", description="w")
    assert {(r["direction"], r["ethertype"]) for r in custom["security_group_rules"]} == {
        ("egress", "IPv4"), ("egress", "IPv6")}
    assert all(not r["belongs_to_default_sg"] for r in custom["security_group_rules"])
    listed = (await cloud.call("GET", "/security-group-rules", member, params={
        "security_group_id": custom["id"]})).json()["security_group_rules"]
    assert len(listed) == 2
    assert (await cloud.call("DELETE", f"/security-group-rules/{rule['id']}",
                             member)).status_code == 204
    assert_neutron_error(await cloud.call("GET", f"/security-group-rules/{rule['id']}",
                                          member), 404, "SecurityGroupRuleNotFound")

    # A group a port uses cannot go; the port names its groups by id.
    net, _ = await cloud.network_with_subnet(member, cidr="10.40.0.0/24")
    port = await cloud.create("port", member, network_id=net["id"],
                              security_groups=[custom["id"]])
    assert port["security_groups"] == [custom["id"]]
    in_use = await cloud.call("DELETE", f"/security-groups/{custom['id']}", member)
    assert_neutron_error(in_use, 409, "SecurityGroupInUse")
    # Nor change its statefulness (its name still changes).
    stateless = await cloud.call("PUT", f"/security-groups/{custom['id']}", member,
                                 json={"security_group": {"stateful": False}})
    assert_neutron_error(stateless, 409, "SecurityGroupInUse")
    renamed = await cloud.call("PUT", f"/security-groups/{custom['id']}", member,
                               json={"security_group": {"name": "www", "stateful": True}})
    assert renamed.status_code == 200, renamed.text
    other = await cloud.project()
    foreign = await cloud.call("POST", "/ports", other, json={"port": {
        "network_id": net["id"], "security_groups": [custom["id"]]}})
    assert foreign.status_code == 404
    await cloud.call("DELETE", f"/ports/{port['id']}", member)
    unused = await cloud.call("PUT", f"/security-groups/{custom['id']}", member,
                              json={"security_group": {"stateful": False}})
    assert unused.status_code == 200 and unused.json()["security_group"]["stateful"] is False
    assert (await cloud.call("DELETE", f"/security-groups/{custom['id']}",
                             member)).status_code == 204


async def test_quotas_are_enforced_and_reported(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(quota_port=3)
    member = await cloud.project()
    default = (await cloud.call("GET", f"/quotas/{member.project_id}", member)).json()
    assert default["quota"] == {"network": -1, "subnet": -1, "port": 3, "security_group": 10,
                                "security_group_rule": 100, "router": 10, "floatingip": 50}
    net, _ = await cloud.network_with_subnet(member, cidr="10.41.0.0/24")
    results = await asyncio.gather(*(cloud.call("POST", "/ports", member, json={"port": {
        "network_id": net["id"]}}) for _ in range(8)))
    assert sorted(r.status_code for r in results) == [201] * 3 + [409] * 5
    over = next(r for r in results if r.status_code == 409)
    assert_neutron_error(over, 409, "OverQuota")
    details = (await cloud.call("GET", f"/quotas/{member.project_id}/details",
                                member)).json()["quota"]
    assert details["port"] == {"limit": 3, "used": 3, "reserved": 0}
    assert details["network"]["used"] == 1 and details["subnet"]["used"] == 1

    forbidden = await cloud.call("PUT", f"/quotas/{member.project_id}", member,
                                 json={"quota": {"port": 50}})
    assert forbidden.status_code == 403
    raised = await cloud.call("PUT", f"/quotas/{member.project_id}",
                              json={"quota": {"port": 4, "network": 1}})
    assert raised.status_code == 200, raised.text
    assert raised.json()["quota"]["port"] == 4
    assert (await cloud.call("POST", "/ports", member, json={"port": {
        "network_id": net["id"]}})).status_code == 201
    second_net = await cloud.call("POST", "/networks", member, json={"network": {"name": "x"}})
    assert_neutron_error(second_net, 409, "OverQuota")
    listed = (await cloud.call("GET", "/quotas")).json()["quotas"]
    assert [q["project_id"] for q in listed] == [member.project_id]
    bad = await cloud.call("PUT", f"/quotas/{member.project_id}",
                           json={"quota": {"widgets": 4}})
    assert_neutron_error(bad, 400, "InvalidInput")
    assert (await cloud.call("DELETE", f"/quotas/{member.project_id}")).status_code == 204
    assert (await cloud.call("GET", f"/quotas/{member.project_id}")).json()["quota"][
        "port"] == 3
    defaults = (await cloud.call("GET", f"/quotas/{member.project_id}/default")).json()
    assert defaults["quota"]["security_group"] == 10
    # Another project's quota is not a member's to read.
    other = await cloud.project()
    assert (await cloud.call("GET", f"/quotas/{member.project_id}",
                             other)).status_code == 403


async def test_a_port_create_reads_its_network_and_its_port_limit_in_one_statement(
        make_cloud: CloudFactory) -> None:
    """A port create's first statement reads the network, its subnets and the project's own
    port limit, and on PostgreSQL takes the project's quota lock: no statement of its own
    for either (four in all: that read, the port, its default group link, its address). The
    limit it reads is the project's override of the port limit, not another resource's or
    another project's, and the check still refuses at the limit."""
    cloud = await make_cloud()  # ports unlimited by default
    member, other = await cloud.project(), await cloud.project()
    net, _ = await cloud.network_with_subnet(member, cidr="10.42.0.0/24")
    await cloud.create("port", member, network_id=net["id"])  # the default group made
    for project, quota in ((other.project_id, {"port": 0}),
                           (member.project_id, {"network": 0, "subnet": 0})):
        changed = await cloud.call("PUT", f"/quotas/{project}", json={"quota": quota})
        assert changed.status_code == 200, changed.text
    with _statements() as sent:
        await cloud.create("port", member, network_id=net["id"])
    # The create's own (not the token's check, nor a timer's meanwhile).
    seen = [s for s in sent if any(name in s for name in (
        "network_networks", "network_quotas", "network_ports", "network_port_security",
        "network_ip_allocations", "pg_advisory"))]
    assert len(seen) == 4, seen
    assert "network_quotas" in seen[0] and "network_subnets" in seen[0]
    assert not any("network_quotas" in s or "pg_advisory" in s for s in seen[1:]), seen

    limited = await cloud.call("PUT", f"/quotas/{member.project_id}",
                               json={"quota": {"port": 2}})
    assert limited.status_code == 200, limited.text
    refused = await cloud.call("POST", "/ports", member, json={"port": {
        "network_id": net["id"]}})
    assert_neutron_error(refused, 409, "OverQuota")
    raised = await cloud.call("PUT", f"/quotas/{member.project_id}",
                              json={"quota": {"port": 3}})
    assert raised.status_code == 200, raised.text
    assert (await cloud.call("POST", "/ports", member, json={"port": {
        "network_id": net["id"]}})).status_code == 201
    shared = await cloud.create("network", name="shared", shared=True)
    await cloud.create("subnet", network_id=shared["id"], cidr="10.43.0.0/24")
    none_left = await cloud.call("POST", "/ports", other, json={"port": {
        "network_id": shared["id"]}})
    assert_neutron_error(none_left, 409, "OverQuota")
