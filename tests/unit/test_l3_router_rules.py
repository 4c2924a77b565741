"""The l3-agent's pure parts: the NAT ruleset a router gets, its routes, and the bridge every
agent picks for a network (``network.physical_bridges``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stratus.core.config import NetworkSettings
from stratus.network.agents.l3.router import (
    NFT_TABLE,
    _wanted_routes,
    gateway_address,
    nat_ruleset,
)
from stratus.network.objects import (
    FixedIP,
    FloatingIPInfo,
    HostRoute,
    NetworkInfo,
    RouterInfo,
    RouterPort,
    SubnetInfo,
    network_bridge,
)


def _network(net_id: str, cidr: str, **fields: object) -> NetworkInfo:
    subnet = SubnetInfo(id=f"{net_id}-s", network_id=net_id, cidr=cidr,
                        gateway_ip=cidr.rsplit(".", 1)[0] + ".1")
    return NetworkInfo.model_validate({"id": net_id, "project_id": "p", "subnets": [subnet],
                                       **fields})


def _leg(port_id: str, network: NetworkInfo, ip: str) -> RouterPort:
    return RouterPort(id=port_id, mac_address="fa:16:3e:00:00:01",
                      fixed_ips=[FixedIP(subnet_id=network.subnets[0].id, ip_address=ip)],
                      network=network)


EXTERNAL = _network("ext", "172.24.4.0/24", physical_network="public")
INSIDE = _network("in1", "10.0.0.0/24")
OTHER = _network("in2", "10.0.1.0/24")


def _router(**fields: object) -> RouterInfo:
    base: dict[str, object] = {
        "id": "r", "project_id": "p",
        "gateway": _leg("gwport000001xx", EXTERNAL, "172.24.4.10"),
        "interfaces": [_leg("if1", INSIDE, "10.0.0.1"), _leg("if2", OTHER, "10.0.1.1")]}
    base.update(fields)
    return RouterInfo.model_validate(base)


def _rules(ruleset: str) -> list[str]:
    return [line.strip() for line in ruleset.splitlines()
            if line.strip().startswith(("ip ", "iifname ", "type "))]


def test_snat_of_every_internal_subnet_and_floating_ip_pairs() -> None:
    router = _router(floating_ips=[FloatingIPInfo(
        id="f", floating_ip_address="172.24.4.20", fixed_ip_address="10.0.1.5",
        port_id="p")])
    ruleset = nat_ruleset(router)
    # Replaced in one transaction: declared (so the delete is valid), deleted, made.
    assert ruleset.startswith(f"table ip {NFT_TABLE} {{}}\ndelete table ip {NFT_TABLE}\n")
    rules = [r for r in _rules(ruleset) if not r.startswith("type ")]
    assert rules == [
        "ip daddr 172.24.4.20 dnat to 10.0.1.5",
        "ip daddr 172.24.4.20 dnat to 10.0.1.5",
        'ip saddr 10.0.1.5 oifname "qg-gwport00000" snat to 172.24.4.20',
        'iifname "qr-if1" oifname "qr-if1" ct status dnat masquerade',
        'iifname "qr-if2" oifname "qr-if2" ct status dnat masquerade',
        'ip saddr 10.0.0.0/24 oifname "qg-gwport00000" snat to 172.24.4.10',
        'ip saddr 10.0.1.0/24 oifname "qg-gwport00000" snat to 172.24.4.10']
    assert gateway_address(router) == "172.24.4.10"


def test_no_snat_keeps_floating_ips_and_no_gateway_has_no_nat() -> None:
    router = _router(enable_snat=False, floating_ips=[FloatingIPInfo(
        id="f", floating_ip_address="172.24.4.20", fixed_ip_address="10.0.1.5",
        port_id="p")])
    rules = [r for r in _rules(nat_ruleset(router)) if not r.startswith("type ")]
    assert len(rules) == 5 and all("10.0.0.0/24" not in r for r in rules)
    assert [r for r in _rules(nat_ruleset(_router(gateway=None)))
            if not r.startswith("type ")] == []


def test_routes_default_via_the_external_gateway_then_extra_routes() -> None:
    router = _router(routes=[HostRoute(destination="192.0.2.0/24", nexthop="10.0.0.9")])
    assert _wanted_routes(router) == {"0.0.0.0/0": "172.24.4.1",
                                      "192.0.2.0/24": "10.0.0.9"}
    assert _wanted_routes(_router(gateway=None)) == {}


def test_mapped_flat_networks_use_the_host_bridge() -> None:
    mapping = {"public": "br-ex"}
    assert network_bridge(EXTERNAL, mapping) == "br-ex"
    assert network_bridge(INSIDE, mapping) == "brqin1"
    unmapped = EXTERNAL.model_copy(update={"physical_network": "elsewhere"})
    assert network_bridge(unmapped, mapping) == "brqext"
    vxlan = EXTERNAL.model_copy(update={"network_type": "vxlan"})
    assert network_bridge(vxlan, mapping) == "brqext"


def test_physical_bridges_setting_forms() -> None:
    assert NetworkSettings().physical_bridges == {"public": "br-ex"}
    assert NetworkSettings(physical_bridges="public:br-x, lab:br-lab").physical_bridges == {
        "public": "br-x", "lab": "br-lab"}
    assert NetworkSettings(physical_bridges='{"a": "b"}').physical_bridges == {"a": "b"}
    with pytest.raises(ValidationError, match="physnet:bridge"):
        NetworkSettings(physical_bridges="public")
    with pytest.raises(ValidationError, match="longer than 15"):
        NetworkSettings(physical_bridges="public:a-very-long-bridge-name")
