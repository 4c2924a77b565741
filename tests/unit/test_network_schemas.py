"""The Network API's request bodies answer as Neutron does, and become typed commands."""

from typing import Any

import pytest

from stratus.network.api.schemas import (
    NetworkBody,
    NetworkUpdateBody,
    PortBody,
    PortUpdateBody,
    RuleBody,
    SubnetBody,
    SubnetUpdateBody,
    parse,
    quota_changes,
)
from stratus.network.common import UNSET
from stratus.network.errors import InvalidInput
from stratus.network.ports import FixedIpRequest


def message(model: Any, body: Any, resource: str = "network") -> str:
    with pytest.raises(InvalidInput) as caught:
        parse(model, body, resource)
    return str(caught.value)


@pytest.mark.parametrize(("model", "body", "expected"), [
    (NetworkBody, {"name": "n", "bogus": 1, "alpha": 2},
     "Unrecognized attribute(s) 'alpha, bogus'"),
    (NetworkBody, "x", "Invalid input: the 'network' body must be an object."),
    (NetworkBody, {"shared": "maybe"},
     "Invalid input for shared. Reason: 'maybe' is not a valid boolean value."),
    (NetworkBody, {"shared": 1},
     "Invalid input for shared. Reason: '1' is not a valid boolean value."),
    (NetworkBody, {"name": 5}, "Invalid input for name. Reason: '5' is not a valid string."),
    (NetworkBody, {"name": None},
     "Invalid input for name. Reason: 'None' is not a valid string."),
    (NetworkBody, {"name": "x" * 256},
     f"Invalid input for name. Reason: '{'x' * 20}...' exceeds maximum length of 255."),
    (NetworkBody, {"mtu": "big"}, "Invalid input for mtu. Reason: 'big' is not an integer."),
    (NetworkBody, {"mtu": True}, "Invalid input for mtu. Reason: 'True' is not an integer."),
    (NetworkBody, {"availability_zone_hints": "nova"},
     "Invalid input for availability_zone_hints. Reason: 'nova' is not a list."),
    (NetworkBody, {"project_id": "a", "tenant_id": "b"},
     "'project_id' and 'tenant_id' do not match"),
    (NetworkBody, {"qos_policy_id": "q"},
     "Invalid input: 'qos_policy_id' is not supported by this cloud."),
    (NetworkUpdateBody, {"tenant_id": "a"}, "Unrecognized attribute(s) 'tenant_id'"),
    (SubnetUpdateBody, {"cidr": "10.0.0.0/8"}, "Unrecognized attribute(s) 'cidr'"),
    (SubnetBody, {"host_routes": [{"destination": "10.0.0.0/8"}]},
     "Invalid input for host_routes: each route is {'destination': cidr, 'nexthop': ip}."),
    (PortBody, {"fixed_ips": [{}]},
     "Invalid input for fixed_ips: each entry has a subnet_id and/or an ip_address."),
    (PortBody, {"fixed_ips": [{"ip": "10.0.0.1"}]},
     "Invalid input for fixed_ips: each entry has a subnet_id and/or an ip_address."),
    (PortBody, {"binding:profile": []},
     "Invalid input for binding:profile. Reason: '[]' is not a dictionary."),
    (PortBody, {"extra_dhcp_opts": [{"opt_name": "mtu", "opt_value": "1400"}]},
     "Invalid input: 'extra_dhcp_opts' is not supported by this cloud."),
    (RuleBody, {"remote_address_group_id": "g"},
     "Invalid input: remote address groups are not supported."),
])
def test_refusals_carry_neutrons_messages(model: Any, body: Any, expected: str) -> None:
    assert message(model, body) == expected


def test_strings_of_booleans_and_digits_are_accepted() -> None:
    body = parse(NetworkBody, {"shared": "TRUE", "mtu": "1400", "tenant_id": "p"}, "network")
    new = body.command()
    assert new.shared is True and new.mtu == 1400 and new.project_id == "p"
    assert new.provider is None


def test_commands_say_what_the_request_named() -> None:
    net = parse(NetworkBody, {"provider:physical_network": None}, "network").command()
    assert net.provider is not None and net.provider.network_type is None
    update = parse(NetworkUpdateBody, {"name": "x"}, "network").command()
    assert update.name == "x" and update.shared is UNSET and not update.provider
    subnet = parse(SubnetBody, {"network_id": "n", "cidr": "10.0.0.0/24"}, "subnet").command()
    assert subnet.gateway_ip is UNSET
    no_gateway = parse(SubnetBody, {"gateway_ip": None}, "subnet").command()
    assert no_gateway.gateway_ip is None
    port = parse(PortBody, {"network_id": "n", "binding:host_id": None,
                            "fixed_ips": [{"ip_address": "10.0.0.5"}]}, "port").command()
    assert port.binding and port.binding_host_id == "" and port.mac_address is None
    assert port.fixed_ips == (FixedIpRequest(ip_address="10.0.0.5"),)
    assert port.security_groups is None and port.port_security_enabled is None
    change = parse(PortUpdateBody, {"security_groups": None}, "port").command()
    assert change.security_groups == () and change.fixed_ips is UNSET and not change.binding


def test_quota_changes() -> None:
    assert quota_changes({"quota": {"port": "4", "network": -1}}) == {"port": 4, "network": -1}
    with pytest.raises(InvalidInput) as caught:
        quota_changes({"quota": {"port": "x"}})
    assert str(caught.value) == "Invalid input for port: 'x' is not an integer."
    with pytest.raises(InvalidInput) as caught:
        quota_changes({"quotas": {}})
    assert str(caught.value) == "Unable to find 'quota' in request body"
