"""The l3-agent's kernel driver (``agents/l3/router.py``) applied to ``RouterInfo`` values
directly, with namespace guests that get their addresses and routes from a real dnsmasq
(the dhcp-agent over the bus, as in the DHCP tests)."""

from __future__ import annotations

import asyncio
import socket
import struct
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from stratus.core.bus import RPCServer, Target
from stratus.network.agents import linux
from stratus.network.agents.dhcp import DhcpAgentManager, DhcpAgentOptions
from stratus.network.agents.l3.router import (
    NFT_TABLE,
    RouterDriver,
    gateway_device,
    internal_device,
    outer_device,
)
from stratus.network.objects import (
    FloatingIPInfo,
    HostRoute,
    NetworkInfo,
    PortInfo,
    RouterInfo,
    bridge_name,
    router_namespace,
)
from stratus.network.rpcapi import DHCP_AGENT_TOPIC
from tests.integration.network_agents.conftest import AgentBus, make_network, make_port
from tests.integration.network_agents.guest import Guest
from tests.integration.network_agents.l3net import (
    Listener,
    Outside,
    address,
    external_network,
    leg,
    reachable,
)


@dataclass
class Topology:
    driver: RouterDriver
    external: NetworkInfo
    networks: list[NetworkInfo]
    guest_ports: list[PortInfo]
    router: RouterInfo
    outside: Outside


def in_ns_addresses(namespace: str, device: str) -> set[str]:
    with linux.ipr_in(namespace) as ns:
        index = ns.link_lookup(ifname=device)[0]
        return {f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}"
                for m in ns.get_addr(index=index, family=2)}


def namespaces_with(prefix: str) -> set[str]:
    return {n for n in linux_namespaces() if n.startswith(prefix)}


def linux_namespaces() -> list[str]:
    import os

    try:
        return os.listdir(linux.NETNS_DIR)
    except FileNotFoundError:
        return []


@pytest.fixture
async def topology(agent_bus: AgentBus, tmp_path: Path,
                   kernel_cleanup: Callable[..., None]) -> AsyncIterator[Topology]:
    """Two internal networks served by a dhcp-agent, an external network on a test bridge
    with an "outside" namespace at its gateway address, and a router joining them (not yet
    applied)."""
    suffix = uuid.uuid4().hex[:8]
    bridge, physnet = f"bx{suffix}", f"ext-{suffix}"
    driver = RouterDriver(physical_bridges={physnet: bridge})
    external = external_network(physnet)
    first = make_network()
    second = make_network()
    while second.subnets[0].cidr == first.subnets[0].cidr:
        second = make_network()
    guest_ports = []
    networks = []
    for network in (first, second):
        port = make_port(network, 5)
        guest_ports.append(port)
        network = network.model_copy(update={"ports": [port]})
        networks.append(network)
        agent_bus.server.networks[network.id] = network
        kernel_cleanup(network=network.id, directory=tmp_path / "dhcp" / network.id)
    router = RouterInfo(id=str(uuid.uuid4()), project_id=first.project_id, name="r1",
                        gateway=leg(external, 10),
                        interfaces=[leg(first, 1), leg(second, 1)])
    kernel_cleanup(device=bridge)
    for port in [router.gateway, *router.interfaces]:
        assert port is not None
        kernel_cleanup(device=outer_device(internal_device(port.id)))
        kernel_cleanup(device=outer_device(gateway_device(port.id)))
    agent = DhcpAgentManager("l3-test-host", agent_bus.api,
                             DhcpAgentOptions(state_dir=tmp_path / "dhcp", report_interval=5,
                                              resync_interval=3600))
    rpc = RPCServer(agent_bus.transport, Target(DHCP_AGENT_TOPIC, server="l3-test-host"),
                    agent, agent.METHODS)
    await rpc.start()
    await agent.start()
    try:
        async with Outside(bridge, external.subnets[0].cidr) as outside:
            yield Topology(driver, external, networks, guest_ports, router, outside)
    finally:
        await asyncio.to_thread(driver.remove, router.id)
        await rpc.stop()
        await agent.stop()


def arp_listener(namespace: str) -> socket.socket:
    with linux.entered(namespace):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    sock.settimeout(0.2)
    return sock


def announced_addresses(sock: socket.socket) -> dict[str, str]:
    """ARP sender address → sender MAC of the frames received so far."""
    seen = {}
    while True:
        try:
            frame = sock.recv(2048)
        except TimeoutError:
            return seen
        sender_mac, sender_ip = frame[22:28], frame[28:32]
        seen[socket.inet_ntoa(sender_ip)] = ":".join(f"{b:02x}" for b in sender_mac)
        assert struct.unpack("!H", frame[12:14])[0] == 0x0806


async def test_router_joins_networks_nats_and_floats(topology: Topology,
                                                      tmp_path: Path) -> None:
    driver, router, outside = topology.driver, topology.router, topology.outside
    first, second = topology.networks
    assert router.gateway is not None
    namespace = router_namespace(router.id)
    gateway_ip = address(topology.external, 10)
    floating_ip = address(topology.external, 20)
    qg = gateway_device(router.gateway.id)

    await asyncio.to_thread(driver.apply, router)
    assert router.id in await asyncio.to_thread(driver.existing)
    assert await asyncio.to_thread(in_ns_addresses, namespace, qg) == {f"{gateway_ip}/24"}
    for network, port in zip(topology.networks, router.interfaces, strict=True):
        assert await asyncio.to_thread(in_ns_addresses, namespace,
                                       internal_device(port.id)) == {
            f"{address(network, 1)}/24"}
        outer = await asyncio.to_thread(linux.get_link, outer_device(internal_device(port.id)))
        bridge = await asyncio.to_thread(linux.get_link, bridge_name(network.id))
        assert outer is not None and bridge is not None and outer.master == bridge.index

    async with (Guest(bridge_name(first.id), topology.guest_ports[0].mac_address,
                      tmp_path / "g1") as one,
                Guest(bridge_name(second.id), topology.guest_ports[1].mac_address,
                      tmp_path / "g2") as two):
        for guest, network in ((one, first), (two, second)):
            lease = await guest.dhcp()
            assert lease["ip"] == address(network, 5)
            routes = await guest.routes()
            # The router is the default route; metadata still goes to the DHCP namespace.
            assert routes["0.0.0.0/0"] == address(network, 1)
            assert routes["169.254.169.254/32"] == address(network, 2)

        # Two networks reach each other through the router, unNATed.
        async with Listener(two.namespace) as on_two:
            assert await on_two.seen_from(one.namespace, address(second, 5)) == address(
                first, 5)
        # Out through the gateway: SNATed to the router's external address.
        async with Listener(outside.namespace) as out:
            assert await out.seen_from(one.namespace, outside.address) == gateway_ip
            assert await out.seen_from(two.namespace, outside.address) == gateway_ip

            # A floating IP for the second guest: announced, DNAT in, SNAT out.
            arp = await asyncio.to_thread(arp_listener, outside.namespace)
            with arp:
                floating = router.model_copy(update={"floating_ips": [FloatingIPInfo(
                    id=str(uuid.uuid4()), floating_ip_address=floating_ip,
                    fixed_ip_address=address(second, 5),
                    port_id=topology.guest_ports[1].id)]})
                applied = await asyncio.to_thread(driver.apply, floating)
                assert applied.announced == (floating_ip,)
                assert applied.active_floating_ips == (floating.floating_ips[0].id,)
                announced = await asyncio.to_thread(announced_addresses, arp)
            assert announced.get(floating_ip) == router.gateway.mac_address
            async with Listener(two.namespace) as on_two:
                assert await on_two.seen_from(outside.namespace, floating_ip) == outside.address
                # Through its own floating IP (hairpin): answered via the router's leg.
                assert await on_two.seen_from(two.namespace, floating_ip) == address(second, 1)
                # From the other network: routed, the source kept.
                assert await on_two.seen_from(one.namespace, floating_ip) == address(first, 5)
            assert await out.seen_from(two.namespace, outside.address) == floating_ip
            assert await out.seen_from(one.namespace, outside.address) == gateway_ip

            # Applied again by a new driver (an agent restarted after a crash): nothing
            # duplicated, NAT still in force.
            again = RouterDriver(physical_bridges=driver.physical_bridges)
            for _ in range(2):
                reapplied = await asyncio.to_thread(again.apply, floating)
                assert reapplied.announced == ()
            assert await asyncio.to_thread(in_ns_addresses, namespace, qg) == {
                f"{gateway_ip}/24", f"{floating_ip}/32"}
            rules = await asyncio.to_thread(again.nat_rules, router.id)
            # DNAT (prerouting, output) and SNAT of the floating IP, a hairpin masquerade per
            # interface, SNAT of two subnets.
            assert len(rules) == 7
            tables = await asyncio.to_thread(
                _run_in, namespace, ["nft", "list", "tables"])
            assert tables.split() == ["table", "ip", NFT_TABLE]
            links = await asyncio.to_thread(_links, namespace)
            assert sorted(links) == sorted(["lo", qg, *(internal_device(p.id)
                                                         for p in router.interfaces)])
            async with Listener(two.namespace) as on_two:
                assert await on_two.seen_from(outside.namespace, floating_ip) == outside.address
            assert await out.seen_from(two.namespace, outside.address) == floating_ip

            # Disassociated: the floating IP goes, and with it its tracked connections;
            # the guest is SNATed to the router again.
            assert await asyncio.to_thread(_tracked, namespace, floating_ip) > 0
            await asyncio.to_thread(again.apply, router)
            assert await asyncio.to_thread(_tracked, namespace, floating_ip) == 0
            assert await asyncio.to_thread(in_ns_addresses, namespace, qg) == {
                f"{gateway_ip}/24"}
            async with Listener(two.namespace) as on_two:
                assert not await reachable(outside.namespace, floating_ip, on_two.port)
            assert await out.seen_from(two.namespace, outside.address) == gateway_ip

            # One interface removed: its leg (both ends) goes, the other stays.
            kept = router.model_copy(update={"interfaces": router.interfaces[:1]})
            await asyncio.to_thread(again.apply, kept)
            removed = router.interfaces[1]
            assert await asyncio.to_thread(
                linux.get_link, outer_device(internal_device(removed.id))) is None
            assert await asyncio.to_thread(_links, namespace) == sorted(
                ["lo", qg, internal_device(router.interfaces[0].id)])
            assert len(await asyncio.to_thread(again.nat_rules, router.id)) == 1
            assert await out.seen_from(one.namespace, outside.address) == gateway_ip

    # Removed: no namespace (and so no nft table), no veth left on the host.
    assert await asyncio.to_thread(driver.remove, router.id)
    assert not await asyncio.to_thread(linux.namespace_exists, namespace)
    assert router.id not in await asyncio.to_thread(driver.existing)
    for port in [router.gateway, *router.interfaces]:
        for inner in (internal_device(port.id), gateway_device(port.id)):
            assert await asyncio.to_thread(linux.get_link, outer_device(inner)) is None
    # The external (mapped) bridge stays: it is the host's.
    assert await asyncio.to_thread(linux.get_link, outside.bridge) is not None
    assert not await asyncio.to_thread(driver.remove, router.id)


async def test_extra_routes_and_no_snat(topology: Topology) -> None:
    driver = topology.driver
    first = topology.networks[0]
    nexthop = address(first, 99)
    router = topology.router.model_copy(update={
        "enable_snat": False,
        "routes": [HostRoute(destination="192.0.2.0/24", nexthop=nexthop)]})
    namespace = router_namespace(router.id)
    await asyncio.to_thread(driver.apply, router)
    routes = await asyncio.to_thread(_routes, namespace)
    assert routes == {"0.0.0.0/0": address(topology.external, 1), "192.0.2.0/24": nexthop}
    assert await asyncio.to_thread(driver.nat_rules, router.id) == []
    # The route changed, the gateway cleared: only connected routes are left.
    changed = router.model_copy(update={
        "gateway": None,
        "routes": [HostRoute(destination="198.51.100.0/24", nexthop=nexthop)]})
    await asyncio.to_thread(driver.apply, changed)
    assert await asyncio.to_thread(_routes, namespace) == {"198.51.100.0/24": nexthop}
    assert all(not name.startswith("qg-") for name in await asyncio.to_thread(_links,
                                                                              namespace))


def _routes(namespace: str) -> dict[str, str]:
    with linux.ipr_in(namespace) as ns:
        return {f"{r.get('RTA_DST') or '0.0.0.0'}/{r['dst_len']}": r.get("RTA_GATEWAY")
                for r in ns.get_routes(family=2, table=254) if r.get("RTA_GATEWAY")}


def _links(namespace: str) -> list[str]:
    with linux.ipr_in(namespace) as ns:
        return sorted(m.get("IFLA_IFNAME") for m in ns.get_links())


def _run_in(namespace: str, args: list[str]) -> str:
    from stratus.network.agents.l3.router import run_in

    return run_in(namespace, args, None)


def _tracked(namespace: str, address: str) -> int:
    """Connections the namespace tracks to or from ``address``."""
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    with linux.conntrack_in(namespace) as tracker:
        return sum(len(list(tracker.dump_entries(**{side: NFCTAttrTuple(daddr=address)})))
                   for side in ("tuple_orig", "tuple_reply"))


def _send_udp(namespace: str, source: str, destination: str) -> None:
    """One UDP datagram from ``source`` to ``destination`` (both local to the namespace)."""
    with linux.entered(namespace):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.bind((source, 0))
        sock.sendto(b"ping", (destination, 9))


def _tracked_pairs(namespace: str) -> set[tuple[str, str]]:
    """(source, destination) of the original direction of every connection the namespace
    tracks."""
    with linux.conntrack_in(namespace) as tracker:
        return {(e.tuple_orig.saddr, e.tuple_orig.daddr) for e in tracker.dump_entries()}


async def test_forget_connections_reaches_the_namespace_table_only() -> None:
    """``forget_connections`` (and ``linux.conntrack_in``) see the router namespace's own
    connection tracking table, not the host's: a fresh namespace tracks exactly the two
    connections made in it, and only the ones to or from the given address are dropped."""
    from stratus.network.agents.l3.router import forget_connections, run_in
    from tests.integration.network_agents.conftest import require_root_and_dnsmasq

    require_root_and_dnsmasq()
    namespace = f"ctt-{uuid.uuid4().hex[:8]}"
    client, floating, other = "192.0.2.10", "192.0.2.20", "192.0.2.30"
    try:
        await asyncio.to_thread(linux.ensure_namespace, namespace)
        await asyncio.to_thread(linux.set_addresses, namespace, "lo", [
            "127.0.0.1/8", f"{client}/32", f"{floating}/32", f"{other}/32"])
        # Connections are tracked in a namespace once one of its hooks needs conntrack.
        await asyncio.to_thread(run_in, namespace, ["nft", "-f", "-"],
                                "table inet conntrack_on {\n chain out {\n"
                                "  type filter hook output priority 0; ct state new accept\n"
                                " }\n}\n")
        await asyncio.to_thread(_send_udp, namespace, client, floating)
        await asyncio.to_thread(_send_udp, namespace, client, other)
        assert await asyncio.to_thread(_tracked_pairs, namespace) == {
            (client, floating), (client, other)}

        # To the address (original direction): one dropped, the other kept.
        assert await asyncio.to_thread(forget_connections, namespace, [floating]) == 1
        assert await asyncio.to_thread(_tracked_pairs, namespace) == {(client, other)}
        # From the address (the reply direction's destination): the client's connection.
        assert await asyncio.to_thread(forget_connections, namespace, [client]) == 1
        assert await asyncio.to_thread(_tracked_pairs, namespace) == set()
        assert await asyncio.to_thread(forget_connections, namespace, [client]) == 0
    finally:
        await asyncio.to_thread(linux.delete_namespace, namespace)
