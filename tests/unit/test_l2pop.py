"""Which endpoint holds which VXLAN forwarding entries (``stratus.network.l2pop``)."""

from __future__ import annotations

from stratus.network.l2pop import Member, diff, entries, for_endpoint, member_of
from stratus.network.models import Network
from stratus.network.objects import FLOOD_MAC, FdbEntries, FdbNetwork, PortInfo

ENDPOINTS = {"a": "192.0.2.1", "b": "192.0.2.2", "c": "192.0.2.3"}
MAC_A, MAC_B, MAC_C, MAC_B2 = ("fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b",
                               "fa:16:3e:00:00:0c", "fa:16:3e:00:00:1b")


def member(host: str, mac: str, network: str = "n1", vni: int = 7) -> Member:
    return Member(network, vni, host, mac)


def test_each_endpoint_holds_the_others_flood_entry_and_macs() -> None:
    table = entries([member("a", MAC_A), member("b", MAC_B), member("b", MAC_B2),
                     member("c", MAC_C)], ENDPOINTS)
    held = for_endpoint(table, "192.0.2.1")
    assert held == FdbEntries(networks={"n1": FdbNetwork(segmentation_id=7, endpoints={
        "192.0.2.2": [FLOOD_MAC, MAC_B, MAC_B2], "192.0.2.3": [FLOOD_MAC, MAC_C]})})
    # An endpoint without members on a network holds nothing of it.
    assert for_endpoint(entries([member("a", MAC_A), member("b", MAC_B)], ENDPOINTS),
                        "192.0.2.3").networks == {}


def test_hosts_without_an_endpoint_are_left_out() -> None:
    table = entries([member("a", MAC_A), member("gone", "fa:16:3e:00:00:99")], ENDPOINTS)
    assert table.networks["n1"].endpoints == {"192.0.2.1": [FLOOD_MAC, MAC_A]}


def test_hosts_sharing_a_tunnel_ip_share_one_endpoint() -> None:
    """All-in-one: one l2-agent for several compute hosts, one tunnel IP."""
    table = entries([member("a", MAC_A), member("a-2", MAC_B), member("c", MAC_C)],
                    {"a": "192.0.2.1", "a-2": "192.0.2.1", "c": "192.0.2.3"})
    assert for_endpoint(table, "192.0.2.3").networks["n1"].endpoints == {
        "192.0.2.1": [FLOOD_MAC, MAC_A, MAC_B]}
    assert for_endpoint(table, "192.0.2.1", ["n1"]).networks["n1"].endpoints == {
        "192.0.2.3": [FLOOD_MAC, MAC_C]}


def test_a_first_port_on_a_host_adds_its_flood_entry_a_second_only_its_mac() -> None:
    others = [member("a", MAC_A)]
    added, removed = diff(entries(others, ENDPOINTS),
                          entries([*others, member("b", MAC_B)], ENDPOINTS))
    assert removed.networks == {}
    assert added.networks["n1"].endpoints == {"192.0.2.2": [FLOOD_MAC, MAC_B]}

    others.append(member("b", MAC_B))
    added, removed = diff(entries(others, ENDPOINTS),
                          entries([*others, member("b", MAC_B2)], ENDPOINTS))
    assert added.networks["n1"].endpoints == {"192.0.2.2": [MAC_B2]} and not removed.networks


def test_the_last_port_on_a_host_takes_its_flood_entry_away() -> None:
    before = entries([member("a", MAC_A), member("b", MAC_B), member("b", MAC_B2)], ENDPOINTS)
    after_one = entries([member("a", MAC_A), member("b", MAC_B)], ENDPOINTS)
    after_all = entries([member("a", MAC_A)], ENDPOINTS)
    assert diff(before, after_one)[1].networks["n1"].endpoints == {"192.0.2.2": [MAC_B2]}
    assert diff(after_one, after_all)[1].networks["n1"].endpoints == {
        "192.0.2.2": [FLOOD_MAC, MAC_B]}


def test_a_moved_port_leaves_one_endpoint_and_reaches_another() -> None:
    others = [member("a", MAC_A), member("c", MAC_C)]
    added, removed = diff(entries([*others, member("b", MAC_B)], ENDPOINTS),
                          entries([*others, member("c", MAC_B)], ENDPOINTS))
    assert removed.networks["n1"].endpoints == {"192.0.2.2": [FLOOD_MAC, MAC_B]}
    assert added.networks["n1"].endpoints == {"192.0.2.3": [MAC_B]}


def test_a_removed_host_loses_all_its_entries_on_every_network() -> None:
    members = [member("a", MAC_A), member("b", MAC_B), member("b", MAC_B2, "n2", 8),
               member("c", MAC_C, "n2", 8)]
    without_b = {h: ip for h, ip in ENDPOINTS.items() if h != "b"}
    added, removed = diff(entries(members, ENDPOINTS), entries(members, without_b))
    assert not added.networks
    assert removed == FdbEntries(networks={
        "n1": FdbNetwork(segmentation_id=7, endpoints={"192.0.2.2": [FLOOD_MAC, MAC_B]}),
        "n2": FdbNetwork(segmentation_id=8, endpoints={"192.0.2.2": [FLOOD_MAC, MAC_B2]})})
    # And an agent appearing (again) adds the same back.
    assert diff(entries(members, without_b), entries(members, ENDPOINTS))[0] == removed


def test_members_are_bound_active_ports_of_vxlan_networks() -> None:
    vxlan = Network(id="n1", network_type="vxlan", segmentation_id=7)
    flat = Network(id="n2", network_type="flat", segmentation_id=None)
    port = PortInfo(id="p", network_id="n1", project_id="x", mac_address="FA:16:3E:00:00:0A",
                    binding_host_id="a", status="ACTIVE")
    assert member_of(port, vxlan) == member("a", MAC_A)
    assert member_of(port, flat) is None
    assert member_of(port, vxlan, status="DOWN") is None
    assert member_of(port.model_copy(update={"binding_host_id": ""}), vxlan) is None
