"""dnsmasq's files and command line, and the proxy's signature: pure functions of snapshots."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from stratus.network.agents.dhcp import dnsmasq
from stratus.network.metadata_proxy import sign_instance_id
from stratus.network.objects import FixedIP, HostRoute, NetworkInfo, PortInfo, SubnetInfo

NET = "11111111-2222-3333-4444-555555555555"


def network(**subnet_fields: object) -> NetworkInfo:
    subnet = SubnetInfo.model_validate({
        "id": "sub-1", "network_id": NET, "cidr": "10.1.2.0/24", "gateway_ip": "10.1.2.1",
        **subnet_fields})
    v6 = SubnetInfo(id="sub-6", network_id=NET, cidr="fd00::/64", ip_version=6)
    return NetworkInfo(id=NET, project_id="p", mtu=1450, subnets=[subnet, v6])


def port(port_id: str, ip: str, **fields: object) -> PortInfo:
    return PortInfo.model_validate({
        "id": port_id, "network_id": NET, "project_id": "p",
        "mac_address": "FA:16:3E:00:00:01", "fixed_ips": [FixedIP(subnet_id="sub-1",
                                                                   ip_address=ip)],
        **fields})


DHCP_PORT = port("dhcp-port", "10.1.2.2", device_owner="network:dhcp")


def test_hosts_file_lists_ports_but_not_the_dhcp_port() -> None:
    net = network().model_copy(update={"ports": [
        port("b-port", "10.1.2.11", mac_address="fa:16:3e:00:00:0b"),
        port("a-port", "10.1.2.10", hostname="Web-1"),
        port("bad-name", "10.1.2.12", hostname="not valid!", mac_address="fa:16:3e:00:00:0c"),
        DHCP_PORT,
        port("v6-only", "fd00::5", fixed_ips=[FixedIP(subnet_id="sub-6",
                                                       ip_address="fd00::5")]),
    ]})
    assert dnsmasq.hosts_file(net, DHCP_PORT.id) == (
        "fa:16:3e:00:00:01,set:port-a-port,10.1.2.10,web-1\n"
        "fa:16:3e:00:00:0b,set:port-b-port,10.1.2.11,host-10-1-2-11\n"
        "fa:16:3e:00:00:0c,set:port-bad-name,10.1.2.12,host-10-1-2-12\n")


def test_opts_file_routes_metadata_via_the_dhcp_port_then_host_routes_then_default() -> None:
    net = network(dns_nameservers=["9.9.9.9", "1.1.1.1"],
                  host_routes=[HostRoute(destination="192.168.0.0/16", nexthop="10.1.2.254")])
    routes = ("169.254.169.254/32,10.1.2.2,192.168.0.0/16,10.1.2.254,0.0.0.0/0,10.1.2.1")
    assert dnsmasq.opts_file(net, DHCP_PORT) == (
        "tag:subnet-sub-1,option:router,10.1.2.1\n"
        "tag:subnet-sub-1,option:dns-server,9.9.9.9,1.1.1.1\n"
        "tag:subnet-sub-1,option:mtu,1450\n"
        f"tag:subnet-sub-1,option:classless-static-route,{routes}\n"
        f"tag:subnet-sub-1,249,{routes}\n")


def test_no_gateway_means_no_router_and_no_default_route() -> None:
    opts = dnsmasq.opts_file(network(gateway_ip=None), DHCP_PORT)
    assert "tag:subnet-sub-1,option:router\n" in opts
    assert "0.0.0.0/0" not in opts
    assert "classless-static-route,169.254.169.254/32,10.1.2.2\n" in opts


def test_a_default_host_route_replaces_the_gateway_route() -> None:
    opts = dnsmasq.opts_file(network(host_routes=[
        HostRoute(destination="0.0.0.0/0", nexthop="10.1.2.5")]), DHCP_PORT)
    assert "classless-static-route,169.254.169.254/32,10.1.2.2,0.0.0.0/0,10.1.2.5\n" in opts


def test_command_serves_dhcp_subnets_only(tmp_path: Path) -> None:
    net = network()
    args = dnsmasq.command(dnsmasq.DnsmasqOptions(lease_seconds=600), tmp_path, "ns-dhcp", net)
    assert "--port=0" in args and "--interface=ns-dhcp" in args
    ranges = [a for a in args if a.startswith("--dhcp-range=")]
    assert ranges == ["--dhcp-range=set:subnet-sub-1,10.1.2.0,static,255.255.255.0,600s"]
    assert f"--dhcp-hostsfile={tmp_path / 'host'}" in args
    off = network(enable_dhcp=False)
    assert dnsmasq.dhcp_subnets(off) == []


def test_interface_addresses_carry_the_metadata_address() -> None:
    assert dnsmasq.interface_addresses(network(), DHCP_PORT) == [
        "10.1.2.2/24", "169.254.169.254/32"]


def test_write_if_changed(tmp_path: Path) -> None:
    path = tmp_path / "host"
    assert dnsmasq.write_if_changed(path, "a\n")
    assert not dnsmasq.write_if_changed(path, "a\n")
    assert dnsmasq.write_if_changed(path, "b\n")
    assert path.read_text() == "b\n"


def test_signature_is_hex_hmac_sha256_of_the_instance_id() -> None:
    expected = hmac.new(b"s3cret", b"inst-1", hashlib.sha256).hexdigest()
    assert sign_instance_id("s3cret", "inst-1") == expected
    assert len(expected) == 64 and expected == expected.lower()


def test_stale_leases_are_those_of_ports_gone_or_changed() -> None:
    a = port("a", "10.1.2.10", mac_address="fa:16:3e:00:00:0a")
    b = port("b", "10.1.2.11", mac_address="fa:16:3e:00:00:0b")
    before = network().model_copy(update={"ports": [a, b]})
    moved = b.model_copy(update={"fixed_ips": [FixedIP(subnet_id="sub-1",
                                                       ip_address="10.1.2.12")]})
    after = network().model_copy(update={"ports": [moved]})
    assert dnsmasq.stale_leases(after, before) == {("fa:16:3e:00:00:0a", "10.1.2.10"),
                                                   ("fa:16:3e:00:00:0b", "10.1.2.11")}
    assert dnsmasq.stale_leases(before, before) == set()


def test_drop_leases(tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    leases.write_text("1700000000 fa:16:3e:00:00:0a 10.1.2.10 host-a *\n"
                      "1700000000 fa:16:3e:00:00:0b 10.1.2.11 host-b 01:fa:16:3e:00:00:0b\n")
    released = {("fa:16:3e:00:00:0a", "10.1.2.10")}
    assert dnsmasq.holds_leases(leases, released)
    assert dnsmasq.drop_leases(leases, released)
    assert leases.read_text() == ("1700000000 fa:16:3e:00:00:0b 10.1.2.11 host-b "
                                  "01:fa:16:3e:00:00:0b\n")
    assert not dnsmasq.holds_leases(leases, released)
    assert not dnsmasq.drop_leases(leases, released)
    assert not dnsmasq.drop_leases(tmp_path / "missing", released)
