"""A server's floating IPs: how the compute host folds the network service's floating IPs
into ``network_info`` (on ``network-changed``), and how ``addresses`` then shows them, each
after the fixed address it translates to, as Nova does."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from stratus.compute.agent.network import HostNetwork
from stratus.compute.api.server_views import addresses_of
from stratus.core.context import RequestContext

MAC = "fa:16:3e:00:00:01"
NETWORK_INFO = [{"id": "port-1", "address": MAC, "network_name": "private", "ips": [
    {"address": "10.0.0.5", "version": 4}, {"address": "10.0.0.6", "version": 4}]}]


class FloatingIPsOnly:
    """The network client's answers the refresh needs (the network service's floating IPs
    of the ports asked for)."""

    def __init__(self, floatingips: list[dict[str, Any]]) -> None:
        self.floatingips = floatingips
        self.asked: list[dict[str, Any]] = []

    async def find_base(self) -> str:
        return "http://network/v2.0"

    async def list_floatingips(self, ctx: RequestContext, base: str,
                               params: dict[str, Any]) -> list[dict[str, Any]]:
        self.asked.append(params)
        return [f for f in self.floatingips if f["port_id"] in params["port_id"]]


async def test_refresh_puts_each_floating_ip_on_its_fixed_address() -> None:
    client = FloatingIPsOnly([
        {"port_id": "port-1", "fixed_ip_address": "10.0.0.6",
         "floating_ip_address": "172.24.4.9"},
        {"port_id": "port-2", "fixed_ip_address": "10.0.0.5",
         "floating_ip_address": "172.24.4.10"}])
    network = HostNetwork(client)  # type: ignore[arg-type]
    refreshed = await network.with_floating_ips(RequestContext(), NETWORK_INFO)
    assert client.asked[0]["port_id"] == ["port-1"]
    assert [ip["floating_ips"] for ip in refreshed[0]["ips"]] == [[], ["172.24.4.9"]]
    assert "floating_ips" not in NETWORK_INFO[0]["ips"][0]  # the input is left alone
    # Gone again: the next refresh empties the list.
    client.floatingips = []
    emptied = await network.with_floating_ips(RequestContext(), refreshed)
    assert [ip["floating_ips"] for ip in emptied[0]["ips"]] == [[], []]


def test_addresses_list_floating_after_their_fixed_address() -> None:
    info = [{**NETWORK_INFO[0], "ips": [{"address": "10.0.0.5", "version": 4},
                                        {"address": "10.0.0.6", "version": 4,
                                         "floating_ips": ["172.24.4.9"]}]}]
    shown = addresses_of(SimpleNamespace(network_info=info))  # type: ignore[arg-type]
    assert shown == {"private": [
        {"version": 4, "addr": "10.0.0.5", "OS-EXT-IPS:type": "fixed",
         "OS-EXT-IPS-MAC:mac_addr": MAC},
        {"version": 4, "addr": "10.0.0.6", "OS-EXT-IPS:type": "fixed",
         "OS-EXT-IPS-MAC:mac_addr": MAC},
        {"version": 4, "addr": "172.24.4.9", "OS-EXT-IPS:type": "floating",
         "OS-EXT-IPS-MAC:mac_addr": MAC}]}
