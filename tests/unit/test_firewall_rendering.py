"""The nftables firewall driver's rendering: rules as written, per port, from the server's
``DeviceDetails`` (the kernel side is tests/integration/network_agents/test_firewall.py)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from stratus.network.agents.l2.firewall import (
    NoopFirewall,
    admits_no_less,
    build,
    filtered,
    member_sets,
    render,
)
from stratus.network.objects import (
    AddressPair,
    DeviceDetails,
    FixedIP,
    NetworkInfo,
    PortInfo,
    SecurityGroupInfo,
    SecurityGroupRuleInfo,
)

NETWORK = NetworkInfo(id="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", project_id="p")


def details(*rules: SecurityGroupRuleInfo, members: dict[str, list[str]] | None = None,
            **port: object) -> DeviceDetails:
    group = SecurityGroupInfo(id="9a8b7c6d-0000-0000-0000-000000000000", rules=list(rules))
    fields: dict[str, object] = {
        "id": str(uuid.uuid4()), "network_id": NETWORK.id, "project_id": "p",
        "mac_address": "fa:16:3e:12:34:56", "device_owner": "compute:nova",
        "fixed_ips": [FixedIP(subnet_id="s", ip_address="10.0.0.5")],
        "security_group_ids": [group.id]}
    fields.update(port)
    return DeviceDetails(port=PortInfo.model_validate(fields), network=NETWORK,
                         security_groups=[group], remote_group_members=members or {})


def rule(direction: str, **fields: object) -> SecurityGroupRuleInfo:
    return SecurityGroupRuleInfo(id=str(uuid.uuid4()), direction=direction, **fields)


def chain(script: str, prefix: str, d: DeviceDetails) -> list[str]:
    name = f"{prefix}-{d.port.id.replace('-', '')}"
    body = re.search(rf"chain {name} {{\n(.*?)\n\t}}", script, re.S)
    assert body is not None, f"no chain {name}"
    return [line.strip() for line in body.group(1).splitlines()]


def test_protocols_by_name_or_number_render_alike() -> None:
    by_name = details(rule("ingress", protocol="tcp", port_range_min=22, port_range_max=22))
    by_number = details(rule("ingress", protocol="6", port_range_min=22, port_range_max=22),
                        id=by_name.port.id)
    assert render("t", [by_name]) == render("t", [by_number])
    lines = chain(render("t", [by_name]), "in", by_name)
    assert "meta nfproto ipv4 meta l4proto 6 th dport 22 return" in lines
    assert lines[-1] == "drop"


def test_ranges_icmp_prefixes_and_directions() -> None:
    d = details(rule("ingress", protocol="17", port_range_min=1000, port_range_max=2000,
                     remote_ip_prefix="192.0.2.0/24"),
                rule("ingress", protocol="icmp", port_range_min=8, port_range_max=0),
                rule("ingress", ethertype="IPv6", protocol="icmp", port_range_min=128),
                rule("egress", protocol="tcp", remote_ip_prefix="198.51.100.7/32"),
                rule("egress", protocol="any", remote_ip_prefix="0.0.0.0/0"))
    script = render("t", [d])
    ingress, egress = chain(script, "in", d), chain(script, "out", d)
    assert ("meta nfproto ipv4 meta l4proto 17 th dport 1000-2000 ip saddr 192.0.2.0/24 "
            "return") in ingress
    assert "meta nfproto ipv4 meta l4proto 1 icmp type 8 icmp code 0 return" in ingress
    assert "meta nfproto ipv6 meta l4proto 58 icmpv6 type 128 return" in ingress
    assert "meta nfproto ipv4 meta l4proto 6 ip daddr 198.51.100.7/32 return" in egress
    assert "meta nfproto ipv4 return" in egress  # any protocol, anywhere
    # DHCP and metadata always pass; everything else not written is dropped.
    assert "meta nfproto ipv4 udp sport 68 udp dport 67 return" in egress
    assert "ip daddr 169.254.169.254 tcp dport 80 return" in egress
    assert egress[-1] == "drop" and ingress[-1] == "drop"


def test_remote_groups_are_sets_of_their_members() -> None:
    group_id = "9a8b7c6d-0000-0000-0000-000000000000"
    d = details(rule("ingress", remote_group_id=group_id),
                members={group_id: ["10.0.0.5", "10.0.0.9", "10.0.0.64/27"]})
    script = render("t", [d])
    key = group_id.replace("-", "")
    # Addresses in a plain set, the CIDRs of address pairs in an interval set beside it.
    ingress = chain(script, "in", d)
    assert f"meta nfproto ipv4 ip saddr @rg4-{key} return" in ingress
    assert f"meta nfproto ipv4 ip saddr @rn4-{key} return" in ingress
    hosts = re.search(rf"set rg4-{key} {{\n\t\ttype ipv4_addr\n\t\telements = {{ (.*?) }}",
                      script)
    cidrs = re.search(rf"set rn4-{key} {{\n\t\ttype ipv4_addr\n\t\tflags interval\n"
                      rf"\t\telements = {{ (.*?) }}", script)
    assert hosts is not None and cidrs is not None
    assert hosts.group(1).split(", ") == ["10.0.0.5", "10.0.0.9"]
    assert cidrs.group(1).split(", ") == ["10.0.0.64/27"]
    # No CIDR member: no interval set, one statement.
    plain = render("t", [details(rule("ingress", remote_group_id=group_id),
                                 members={group_id: ["10.0.0.5"]})])
    assert f"rn4-{key}" not in plain and f"rg4-{key}" in plain


def test_anti_spoofing_names_macs_addresses_and_pairs() -> None:
    d = details(allowed_address_pairs=[
        AddressPair(ip_address="10.0.0.100", mac_address="fa:16:3e:aa:bb:cc"),
        AddressPair(ip_address="10.0.1.0/24", mac_address="fa:16:3e:12:34:56")])
    script = render("t", [d])
    spoof = chain(script, "spoof", d)
    assert "ether saddr != { fa:16:3e:12:34:56, fa:16:3e:aa:bb:cc } drop" in spoof
    assert ("ether type ip ether saddr . ip saddr != { fa:16:3e:12:34:56 . 10.0.0.5, "
            "fa:16:3e:aa:bb:cc . 10.0.0.100, fa:16:3e:12:34:56 . 10.0.1.0/24 } drop") in spoof
    assert "ether type ip udp sport 67 drop" in spoof  # no DHCP server in a guest
    assert '"tap' + d.port.id[:11] + '" : jump spoof-' in script
    # Both the port's MAC and the pair's lead to the port's chains.
    key = d.port.id.replace("-", "")
    assert script.count(f"jump in-{key}") == 2 and script.count(f"jump out-{key}") == 2


def test_unfiltered_ports_and_nothing_left() -> None:
    off = details(port_security_enabled=False)
    router = details(device_owner="network:router_interface")
    assert not filtered(off) and not filtered(router)
    only_deletes = ("table bridge t {}\ndelete table bridge t\n"
                    "table inet t {}\ndelete table inet t\n")
    assert render("t", [off, router]) == only_deletes
    assert render("t", []) == only_deletes


async def test_the_noop_firewall_filters_nothing() -> None:
    firewall = NoopFirewall()
    firewall.set_port(details())
    await firewall.apply()
    await firewall.clear()
    assert firewall.ports == {}


def test_which_tracked_connections_the_rules_still_admit() -> None:
    from stratus.network.agents.l2.flows import Flow, admitted

    group_id = "9a8b7c6d-0000-0000-0000-000000000000"
    d = details(rule("ingress", protocol="tcp", port_range_min=22, port_range_max=22),
                rule("ingress", protocol="icmp", port_range_min=8),
                rule("ingress", protocol="udp", remote_group_id=group_id),
                rule("egress", protocol="6", remote_ip_prefix="192.0.2.0/24"),
                members={group_id: ["10.0.0.7"]})
    ssh = Flow(4, 6, "198.51.100.1", "10.0.0.5", 40000, 22)
    assert admitted(d, ssh)
    assert not admitted(d, Flow(4, 6, "198.51.100.1", "10.0.0.5", 40000, 23))
    assert admitted(d, Flow(4, 1, "198.51.100.1", "10.0.0.5", icmp_type=8, icmp_code=0))
    assert not admitted(d, Flow(4, 1, "198.51.100.1", "10.0.0.5", icmp_type=13))
    assert admitted(d, Flow(4, 17, "10.0.0.7", "10.0.0.5", 5000, 53))  # a member
    assert not admitted(d, Flow(4, 17, "10.0.0.8", "10.0.0.5", 5000, 53))
    assert admitted(d, Flow(4, 6, "10.0.0.5", "192.0.2.10", 40000, 443))  # egress
    assert not admitted(d, Flow(4, 6, "10.0.0.5", "203.0.113.1", 40000, 443))
    assert admitted(d, Flow(4, 6, "10.0.0.5", "169.254.169.254", 40000, 80))  # metadata
    assert admitted(d, Flow(4, 6, "203.0.113.1", "203.0.113.2", 1, 2))  # not the port's


def test_conntrack_lines_give_the_original_direction() -> None:
    from stratus.network.agents.l2.flows import Flow, _parse

    tcp = ("ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.2 dst=10.0.0.5 sport=40000 "
           "dport=22 src=10.0.0.5 dst=10.0.0.2 sport=22 dport=40000 [ASSURED] mark=0 zone=0 "
           "use=2")
    assert _parse(tcp) == Flow(4, 6, "10.0.0.2", "10.0.0.5", 40000, 22)
    icmp = ("ipv4     2 icmp     1 29 src=10.0.0.2 dst=10.0.0.5 type=8 code=0 id=77 "
            "src=10.0.0.5 dst=10.0.0.2 type=0 code=0 id=77 mark=0 zone=0 use=2")
    assert _parse(icmp) == Flow(4, 1, "10.0.0.2", "10.0.0.5", icmp_type=8, icmp_code=0,
                                icmp_id=77)
    assert _parse("garbage") is None


def test_remote_group_members_render_without_overlaps() -> None:
    group_id = "9a8b7c6d-0000-0000-0000-000000000000"
    members = ["10.0.0.9", "10.0.0.7", "10.0.0.7", "10.1.0.0/24", "10.1.0.5", "10.1.0.0/25",
               "fd00::1", "fd00::/120", "2001:db8::2"]
    d = details(rule("ingress", remote_group_id=group_id),
                rule("ingress", ethertype="IPv6", remote_group_id=group_id),
                members={group_id: members})
    script = render("t", [d])
    key = group_id.replace("-", "")

    def elements(name: str) -> list[str]:
        found = re.search(rf"set {name}-{key} {{.*?elements = {{ (.*?) }}", script, re.S)
        assert found is not None, name
        return found.group(1).split(", ")

    # Each address once; the CIDRs merged (an interval set refuses overlaps).
    assert elements("rg4") == ["10.0.0.7", "10.0.0.9", "10.1.0.5"]
    assert elements("rn4") == ["10.1.0.0/24"]
    assert elements("rg6") == ["2001:db8::2", "fd00::1"]
    assert elements("rn6") == ["fd00::/120"]


def test_only_the_changed_ports_connections_are_read_from_the_table(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stratus.network.agents.l2 import flows

    table = tmp_path / "nf_conntrack"
    table.write_text(
        "ipv4     2 tcp      6 100 TIME_WAIT src=127.0.0.1 dst=127.0.0.1 sport=1 dport=2 "
        "src=127.0.0.1 dst=127.0.0.1 sport=2 dport=1 [ASSURED] mark=0 zone=0 use=2\n"
        "ipv4     2 tcp      6 100 ESTABLISHED src=10.0.0.2 dst=10.0.0.5 sport=40000 "
        "dport=23 src=10.0.0.5 dst=10.0.0.2 sport=23 dport=40000 [ASSURED] mark=0 zone=0 "
        "use=2\n"
        "ipv4     2 tcp      6 100 ESTABLISHED src=10.0.0.2 dst=10.0.0.5 sport=40001 "
        "dport=22 src=10.0.0.5 dst=10.0.0.2 sport=22 dport=40001 [ASSURED] mark=0 zone=0 "
        "use=2\n"
        # The kernel writes IPv6 addresses in full; a pair's CIDR covers this one.
        "ipv6     10 tcp      6 100 ESTABLISHED src=2001:0db8:0000:0000:0000:0000:0000:0009 "
        "dst=fd00:0000:0000:0000:0000:0000:0000:0042 sport=5 dport=80 "
        "src=fd00:0000:0000:0000:0000:0000:0000:0042 dst=2001:0db8:0000:0000:0000:0000:0000:0009 "
        "sport=80 dport=5 [ASSURED] mark=0 zone=0 use=2\n")
    monkeypatch.setattr(flows, "CONNTRACK_TABLE", str(table))
    port = details(rule("ingress", protocol="tcp", port_range_min=22, port_range_max=22),
                   allowed_address_pairs=[AddressPair(ip_address="fd00::/120",
                                                              mac_address="fa:16:3e:12:34:56")])
    judged = flows._PortRules(port)
    read = flows._read_table(judged.addresses)
    assert [(f.saddr, f.dport) for f in read] == [
        ("10.0.0.2", 23), ("10.0.0.2", 22), ("2001:0db8:0000:0000:0000:0000:0000:0009", 80)]
    assert len(flows._read_table()) == 4
    # What forget_stale deletes: the connections the port's rules refuse now.
    assert [f.dport for f in read if not judged.admits(f)] == [23, 80]
    # Only members left: only the lines naming one of them are read (the whole address:
    # 10.0.0.2 is not 10.0.0.22).
    assert [f.dport for f in flows._read_table(judged.addresses, {"10.0.0.2"})] == [23, 22]
    assert flows._read_table(judged.addresses, {"10.0.0.22", "10.0.0.20"}) == []


def test_a_port_of_stateless_groups_is_judged_before_conntrack_admits() -> None:
    tracked = details(rule("egress"))
    group = tracked.security_groups[0].model_copy(update={"stateful": False})
    untracked = details(rule("egress"), id=str(uuid.uuid4()), mac_address="fa:16:3e:00:00:02")
    untracked = untracked.model_copy(update={"security_groups": [group]})
    script = render("t", [tracked, untracked])
    forward = re.search(r"chain forward {\n(.*?)\n\t}", script, re.S)
    assert forward is not None
    lines = [line.strip() for line in forward.group(1).splitlines()]
    established = lines.index("ct state established,related accept")
    before, after = "\n".join(lines[:established]), "\n".join(lines[established:])
    key = untracked.port.id.replace("-", "")
    assert f"jump out-{key}" in before and f"jump in-{key}" in before
    assert f"out-{key}" not in after
    assert f"jump in-{tracked.port.id.replace('-', '')}" in after
    assert "ct state invalid drop" not in chain(script, "in", untracked)
    assert "ip saddr 169.254.169.254 tcp sport 80 return" in chain(script, "in", untracked)
    assert chain(script, "in", tracked)[0] == "ct state invalid drop"


def test_a_members_change_updates_the_set_elements_alone() -> None:
    group_id = "9a8b7c6d-0000-0000-0000-000000000000"
    remote = rule("ingress", remote_group_id=group_id)
    before = details(remote, members={group_id: ["10.0.0.5", "10.0.0.9"]})
    after = details(remote, id=before.port.id, members={group_id: ["10.0.0.5", "10.0.0.7"]})
    old, new = build("t", [before]), build("t", [after])
    set_name = f"rg4-{group_id.replace('-', '')}"
    assert new.update_from(old) == (f"delete element inet t {set_name} {{ 10.0.0.9 }}\n"
                                    f"add element inet t {set_name} {{ 10.0.0.7 }}\n")
    assert new.update_from(new) == ""
    # Anything else changed, or nothing known in force: the tables are replaced.
    assert build("t", [after, details()]).update_from(old) is None
    assert new.update_from(None) is None
    assert build("u", [after]).update_from(old) is None


def test_new_members_alone_give_what_a_whole_build_gives() -> None:
    """The driver's shortcut when only members changed (the changed groups' sets worked
    out again, nothing rendered) ends where building the whole ruleset ends, or says it
    cannot (the sets themselves would change)."""
    group_id = "9a8b7c6d-0000-0000-0000-000000000000"
    remote = rule("ingress", remote_group_id=group_id)
    before = details(remote, members={group_id: ["10.0.0.5", "10.0.0.9"]})
    old = build("t", [before])
    for members in (["10.0.0.5", "10.0.0.7", "fd00::7"], [], ["10.0.0.9"]):
        after = before.model_copy(update={"remote_group_members": {group_id: members}})
        sets = member_sets(old, [after], [group_id])
        assert sets is not None
        shortcut, whole = old.with_members(sets), build("t", [after])
        assert shortcut.same_shape(whole) and shortcut.members == whole.members
        assert shortcut.script == whole.script
        assert shortcut.update_from(old) == whole.update_from(old)
    # A CIDR among the members needs a set of its own; a group no rule names any more
    # has no set: only a build makes those.
    cidr = before.model_copy(update={"remote_group_members": {group_id: ["10.1.0.0/16"]}})
    assert member_sets(old, [cidr], [group_id]) is None
    assert member_sets(old, [details(members={group_id: ["10.0.0.5"]})], [group_id]) is None
    assert member_sets(old, [before], []) == {}
    # Groups with CIDRs (address pairs') keep them apart, overlaps merged, addresses
    # written as /32 or /128 among the hosts, in either version.
    with_cidrs = details(remote, members={group_id: ["10.0.0.5", "10.1.0.0/16", "fd00::/64"]})
    old = build("t", [with_cidrs])
    for members in (["10.1.2.0/24", "10.1.0.0/16", "10.0.0.7/32", "fd00::/64", "fd00::9/128"],
                    ["10.0.0.0/8", "10.1.0.0/16", "fd00::/48", "fd00::/64", "10.0.0.5"]):
        after = with_cidrs.model_copy(update={"remote_group_members": {group_id: members}})
        sets = member_sets(old, [after], [group_id])
        assert sets is not None
        shortcut, whole = old.with_members(sets), build("t", [after])
        assert shortcut.members == whole.members and shortcut.script == whole.script


async def test_the_driver_renders_again_only_when_more_than_members_changed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from stratus.network.agents.l2 import firewall as module

    group_id = "9a8b7c6d-0000-0000-0000-000000000000"
    remote = rule("ingress", remote_group_id=group_id)
    port = details(remote, members={group_id: ["10.0.0.5"]})
    driver = module.NftablesFirewall(table="t")
    scripts: list[str] = []

    class Runner:
        name = "recorded"

        async def run(self, script: str) -> str:
            scripts.append(script)
            return ""

    driver._runner = Runner()  # type: ignore[assignment]
    builds: list[int] = []
    original = module.build
    monkeypatch.setattr(module, "build", lambda *a: builds.append(1) or original(*a))
    driver.set_port(port)
    await driver.apply()
    driver.set_port(port.model_copy(update={"remote_group_members": {
        group_id: ["10.0.0.5", "10.0.0.6"]}}))
    await driver.apply()
    assert len(builds) == 1 and scripts[-1].startswith("add element inet t rg4-")
    assert driver._ruleset == original("t", driver.ports.values())
    driver.set_port(details(rule("ingress"), id=port.port.id))  # its rules changed
    await driver.apply()
    assert len(builds) == 2 and scripts[-1].startswith("table bridge t {}")


def test_only_rules_that_admit_less_make_connections_be_forgotten() -> None:
    group_id = "9a8b7c6d-0000-0000-0000-000000000000"
    remote = rule("ingress", remote_group_id=group_id)
    base = details(remote, members={group_id: ["10.0.0.5"]})
    grown = base.model_copy(update={"remote_group_members": {group_id: ["10.0.0.5",
                                                                         "10.0.0.6"]}})
    assert admits_no_less(base, grown)
    assert not admits_no_less(grown, base)  # a member left
    fewer_rules = base.model_copy(update={"security_groups": []})
    assert not admits_no_less(base, fewer_rules)
