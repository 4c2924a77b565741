"""dnsmasq's files, command line and lease events, the proxy's signature, and which trace a
guest's requests join."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import time
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider

from stratus.network.agents.dhcp import dnsmasq
from stratus.network.agents.dhcp.port_traces import PortTraces
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


def test_host_files_list_ports_but_not_the_dhcp_port() -> None:
    net = network().model_copy(update={"ports": [
        port("b-port", "10.1.2.11", mac_address="fa:16:3e:00:00:0b"),
        port("a-port", "10.1.2.10", hostname="Web-1"),
        port("bad-name", "10.1.2.12", hostname="not valid!", mac_address="fa:16:3e:00:00:0c"),
        DHCP_PORT,
        port("v6-only", "fd00::5", fixed_ips=[FixedIP(subnet_id="sub-6",
                                                       ip_address="fd00::5")]),
        port("two", "10.1.2.20", mac_address="fa:16:3e:00:00:0d", fixed_ips=[
            FixedIP(subnet_id="sub-1", ip_address="10.1.2.20"),
            FixedIP(subnet_id="sub-6", ip_address="fd00::20"),
            FixedIP(subnet_id="sub-1", ip_address="10.1.2.21")]),
    ]})
    assert dnsmasq.host_files(net, DHCP_PORT.id) == {
        "a-port": "fa:16:3e:00:00:01,10.1.2.10,web-1\n",
        "b-port": "fa:16:3e:00:00:0b,10.1.2.11,host-10-1-2-11\n",
        "bad-name": "fa:16:3e:00:00:0c,10.1.2.12,host-10-1-2-12\n",
        "two": "fa:16:3e:00:00:0d,10.1.2.20,host-10-1-2-20\n"
               "fa:16:3e:00:00:0d,10.1.2.21,host-10-1-2-21\n"}


def test_host_file_names_stay_inside_the_directory_and_are_read_by_dnsmasq() -> None:
    uuid = "0b6f3a8e-9f38-4a57-9d6c-7a1f2b3c4d5e"
    assert dnsmasq.host_file_name(uuid) == uuid
    for odd in (".hidden", "../escape", "a/b", "", "x~", "#x#"):
        name = dnsmasq.host_file_name(odd)
        assert name.startswith("port-") and "/" not in name and name.isascii()
    assert dnsmasq.host_file_name("../a") != dnsmasq.host_file_name("../b")


def test_hosts_dir_converges_and_says_when_a_reload_is_due(tmp_path: Path) -> None:
    hosts = dnsmasq.HostsDir(tmp_path / "hosts")
    (tmp_path / "hosts").mkdir()
    (tmp_path / "hosts" / "stale").write_text("old\n")
    (tmp_path / "hosts" / "kept").write_text("k\n")
    (tmp_path / "hosts" / ".kept.tmp").write_text("half a write")
    change = hosts.converge({"kept": "k\n", "new": "n\n"})
    assert (change.added, change.rewritten, change.removed) == (["new"], [], ["stale"])
    assert change.needs_reload
    assert sorted(p.name for p in (tmp_path / "hosts").iterdir()) == ["kept", "new"]
    # Adding files needs no reload: dnsmasq reads them by itself.
    change = hosts.apply({"more": "m\n", "kept": "k\n"})
    assert change.added == ["more"] and not change.needs_reload
    # Rewriting or removing one does.
    change = hosts.apply({"more": "m2\n"})
    assert change.rewritten == ["more"] and change.needs_reload
    assert (tmp_path / "hosts" / "more").read_text() == "m2\n"
    change = hosts.apply({"more": None, "absent": None})
    assert change.removed == ["more"] and change.needs_reload
    assert not hosts.apply({"kept": "k\n", "absent": ""})
    assert hosts.files == {"kept": "k\n", "new": "n\n"}
    assert sorted(p.name for p in (tmp_path / "hosts").iterdir()) == ["kept", "new"]


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
    assert f"--dhcp-hostsdir={tmp_path / 'hosts'}" in args
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


def test_released_leases_are_those_of_ports_gone_or_changed() -> None:
    a = port("a", "10.1.2.10", mac_address="fa:16:3e:00:00:0a")
    b = port("b", "10.1.2.11", mac_address="FA:16:3E:00:00:0B")
    moved = b.model_copy(update={"fixed_ips": [FixedIP(subnet_id="sub-1",
                                                       ip_address="10.1.2.12")]})
    # a deleted, b moved to another address: both old pairs go.
    assert dnsmasq.released_leases([a, b], {"10.1.2.12": moved}) == {
        ("fa:16:3e:00:00:0a", "10.1.2.10"), ("fa:16:3e:00:00:0b", "10.1.2.11")}
    # The same port as another object (a snapshot from the server): nothing.
    assert dnsmasq.released_leases([b], {"10.1.2.11": b.model_copy()}) == set()
    # An address handed to another port with the same MAC keeps its lease; with another
    # MAC it does not.
    taken = port("c", "10.1.2.10", mac_address="fa:16:3e:00:00:0a")
    assert dnsmasq.released_leases([a], {"10.1.2.10": taken}) == set()
    other = port("d", "10.1.2.10", mac_address="fa:16:3e:00:00:0d")
    assert dnsmasq.released_leases([a], {"10.1.2.10": other}) == {
        ("fa:16:3e:00:00:0a", "10.1.2.10")}
    assert dnsmasq.released_leases([], {"10.1.2.10": a}) == set()


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


def test_the_lease_script_reports_each_lease_given_or_renewed(tmp_path: Path) -> None:
    dnsmasq.write_lease_script(tmp_path)
    script = tmp_path / dnsmasq.LEASE_SCRIPT
    assert f"--dhcp-script={script}" in dnsmasq.command(dnsmasq.DnsmasqOptions(), tmp_path,
                                                         "ns-dhcp", network())
    env = {"DNSMASQ_TAGS": "port-a-port subnet-sub-1 ns-dhcp",
           "DNSMASQ_LEASE_EXPIRES": "1900000000"}
    for action in ("add", "old", "del"):
        subprocess.run([str(script), action, "FA:16:3E:00:00:01", "10.1.2.10", "guest-chosen"],
                       env=env, check=True)
    events, offset = dnsmasq.read_lease_events(tmp_path, 0)
    assert [(e.action, e.mac, e.ip, e.expires, e.port_id) for e in events] == [
        ("add", "fa:16:3e:00:00:01", "10.1.2.10", 1900000000, "a-port"),
        ("old", "fa:16:3e:00:00:01", "10.1.2.10", 1900000000, "a-port")]
    assert abs(events[0].time_ns - time.time_ns()) < 60e9
    assert "guest-chosen" not in (tmp_path / dnsmasq.LEASE_EVENTS).read_text()
    assert dnsmasq.read_lease_events(tmp_path, offset) == ([], offset)


def test_a_lease_read_back_at_a_restart_is_no_reply() -> None:
    now = 1_800_000_000
    def event(action: str, expires: int) -> dnsmasq.LeaseEvent:
        return dnsmasq.LeaseEvent(now * 10**9, action, "fa:16:3e:00:00:01", "10.1.2.10",
                                  expires, ())
    assert event("add", now + 600).is_reply(600)
    assert event("old", now + 600).is_reply(600)  # renewed just now
    assert not event("old", now + 300).is_reply(600)  # read back from the lease file


def test_lease_events_start_afresh_once_read_past_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnsmasq, "LEASE_EVENTS_ROTATE", 100)
    line = "1 add fa:16:3e:00:00:01 10.1.2.10 0 port-p\n"
    (tmp_path / dnsmasq.LEASE_EVENTS).write_text(line * 3 + "2 add fa:16")  # one unfinished
    events, offset = dnsmasq.read_lease_events(tmp_path, 0)
    assert len(events) == 3 and offset == 3 * len(line)
    with (tmp_path / dnsmasq.LEASE_EVENTS).open("a") as events_file:
        events_file.write(":3e:00:00:02 10.1.2.11 0 port-q\n")
    events, offset = dnsmasq.read_lease_events(tmp_path, offset)
    assert [e.ip for e in events] == ["10.1.2.11"] and offset == 0
    assert not (tmp_path / dnsmasq.LEASE_EVENTS).exists()
    assert dnsmasq.read_lease_events(tmp_path, 0) == ([], 0)


def test_a_guest_joins_the_trace_of_the_request_that_placed_its_port() -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    traces = PortTraces(window=60)
    placed = port("p", "10.1.2.10", device_id="vm-1")
    assert traces.parent(placed) is None
    with tracer.start_as_current_span("boot") as boot:
        traces.port_changed(placed)
    with tracer.start_as_current_span("a later update"):
        traces.port_changed(placed)  # same device and host: the boot's trace stays

    def parent_span(p: PortInfo) -> int:
        context = traces.parent(p)
        assert context is not None
        return trace.get_current_span(context).get_span_context().span_id

    assert parent_span(placed) == boot.get_span_context().span_id
    moved = placed.model_copy(update={"binding_host_id": "host-2"})
    with tracer.start_as_current_span("move") as move:
        traces.port_changed(moved)
    assert parent_span(moved) == move.get_span_context().span_id
    assert traces.parent(moved.model_copy(update={"device_id": "vm-2"})) is None
    traces.forget("p")
    assert traces.parent(moved) is None
    stale = PortTraces(window=0)
    with tracer.start_as_current_span("boot"):
        stale.port_changed(placed)
    assert stale.parent(placed) is None  # past the window: a trace of its own


def test_a_guest_adds_spans_within_its_budget_only() -> None:
    def sampled(context: Context | None) -> bool:
        if context is None:
            return True  # a trace of its own, recorded
        return bool(trace.get_current_span(context).get_span_context().trace_flags.sampled)

    traces = PortTraces(budget=2, period=3600)
    guest = port("p", "10.1.2.10", device_id="vm-1")
    assert [sampled(traces.parent(guest)) for _ in range(3)] == [True, True, False]
    assert sampled(traces.parent(port("q", "10.1.2.11", device_id="vm-2")))  # its own
    assert not sampled(traces.parent(None))  # no port holds the address: nothing recorded
    traces.forget("p")  # the port gone (or placed again): a budget afresh
    assert sampled(traces.parent(guest))
    renewed = PortTraces(budget=1, period=-1)  # every request in a period of its own
    assert sampled(renewed.parent(guest)) and sampled(renewed.parent(guest))


def test_a_batch_of_port_changes_names_only_its_own_ports(tmp_path: Path) -> None:
    from stratus.network.agents.dhcp.manager import ServedNetwork

    a, b, c = (port(i, f"10.1.2.{n}", mac_address=f"fa:16:3e:00:00:{n:02x}")
               for i, n in (("a", 10), ("b", 11), ("c", 12)))
    served = ServedNetwork(network=network().model_copy(update={"ports": [DHCP_PORT, a, b]}),
                           dhcp_port=DHCP_PORT, process=dnsmasq.Dnsmasq("ns", tmp_path),
                           hosts=dnsmasq.HostsDir(tmp_path / "hosts"))
    served.index()
    assert served.by_address == {"10.1.2.10": a, "10.1.2.11": b}
    b1 = b.model_copy(update={"hostname": "one"})
    b2 = b.model_copy(update={"fixed_ips": [FixedIP(subnet_id="sub-1",
                                                    ip_address="10.1.2.13")]})
    changed, delta = served.changed([("a", None), ("b", b1), ("c", c), ("b", b2)])
    assert [p.id for p in changed.ports] == ["dhcp-port", "c", "b"]
    assert changed.ports[2] is b2 and changed.ports[0] is DHCP_PORT
    # b1 was new and replaced within the batch: gone, like a and b's first object.
    assert delta.new == [c, b2] and delta.gone == [a, b, b1]
    served.network = changed
    served.reindex(delta.gone, delta.new)
    assert served.by_address == {"10.1.2.12": c, "10.1.2.13": b2}
    assert dnsmasq.released_leases(delta.gone, served.by_address) == {
        ("fa:16:3e:00:00:0a", "10.1.2.10"), ("fa:16:3e:00:00:0b", "10.1.2.11")}
