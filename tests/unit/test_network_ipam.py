"""IPAM's pure parts: subnet defaults, pool validation, and the free-address walk."""

from __future__ import annotations

import ipaddress

import pytest

from stratus.network import ipam
from stratus.network.errors import InvalidInput


def net(cidr: str) -> ipam.IPNetwork:
    return ipaddress.ip_network(cidr)


def test_defaults_leave_out_network_broadcast_and_gateway() -> None:
    assert ipam.default_gateway(net("10.0.0.0/24")) == "10.0.0.1"
    assert ipam.default_pools(net("10.0.0.0/24"), "10.0.0.1") == [
        {"start": "10.0.0.2", "end": "10.0.0.254"}]
    # A gateway in the middle splits the pool in two.
    assert ipam.default_pools(net("10.0.0.0/29"), "10.0.0.4") == [
        {"start": "10.0.0.1", "end": "10.0.0.3"}, {"start": "10.0.0.5", "end": "10.0.0.6"}]
    assert ipam.default_pools(net("10.0.0.0/30"), None) == [
        {"start": "10.0.0.1", "end": "10.0.0.2"}]


@pytest.mark.parametrize(("pools", "words"), [
    ([{"start": "10.0.0.9", "end": "10.0.0.5"}], "after its end"),
    ([{"start": "10.0.0.0", "end": "10.0.0.5"}], "beyond"),
    ([{"start": "10.0.0.2", "end": "10.0.0.9"}, {"start": "10.0.0.8", "end": "10.0.0.20"}],
     "overlapping"),
    ([{"start": "10.0.0.1", "end": "10.0.0.9"}], "Gateway"),
    ([{"start": "10.0.0.2"}], "'start' and 'end'"),
    ([{"start": "x", "end": "10.0.0.3"}], "not a valid IP"),
])
def test_bad_pools_are_refused(pools: list[dict[str, str]], words: str) -> None:
    with pytest.raises(InvalidInput) as error:
        ipam.check_pools(net("10.0.0.0/24"), pools, "10.0.0.1")
    assert words in error.value.message


def test_pools_are_normalised_in_order() -> None:
    pools = [{"start": "10.0.0.50", "end": "10.0.0.60"}, {"start": "10.0.0.2", "end": "10.0.0.9"}]
    assert ipam.check_pools(net("10.0.0.0/24"), pools, "10.0.0.1") == [
        {"start": "10.0.0.2", "end": "10.0.0.9"}, {"start": "10.0.0.50", "end": "10.0.0.60"}]


def test_first_free_walks_from_a_point_and_wraps() -> None:
    pools = [ipam.Pool(10, 12), ipam.Pool(20, 21)]  # 10 11 12 20 21
    assert ipam.first_free(pools, set(), 0) == 10
    assert ipam.first_free(pools, {20}, 3) == 21
    assert ipam.first_free(pools, {20, 21}, 3) == 10  # wraps to the first pool
    assert ipam.first_free(pools, {10, 11, 12, 20, 21}, 2) is None
    # Work bounded by what is taken, not by the size of the range.
    huge = [ipam.Pool(0, 2**32)]
    assert ipam.first_free(huge, {5, 6, 7}, 5) == 8
