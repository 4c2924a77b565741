"""The external network of ``stratus up``: the host side of its bridge (address and the
masquerade to the uplink, exercised inside test namespaces standing for the host and the
internet), and the network made once through the network service."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from pathlib import Path

from pyroute2 import IPRoute

from stratus.core.config import Settings
from stratus.network.agents import external, linux
from stratus.network.agents.l3.router import run_in
from stratus.stack import Stack
from stratus.units import ensure_external_network, root_app, run_bootstrap
from tests.integration.network_agents.conftest import require_root_and_dnsmasq
from tests.integration.network_agents.l3net import Listener


def _veth_into(namespace_a: str, name_a: str, namespace_b: str, name_b: str,
               address_a: str | None, address_b: str | None) -> None:
    """A veth between two namespaces, both ends up, with optional addresses."""
    with linux.entered(namespace_a), IPRoute() as ipr:
        ipr.link("add", ifname=name_a, kind="veth",
                 peer={"ifname": name_b, "net_ns_fd": namespace_b})
        ipr.link("set", index=ipr.link_lookup(ifname=name_a)[0], state="up")
    with linux.ipr_in(namespace_b) as ns:
        ns.link("set", index=ns.link_lookup(ifname=name_b)[0], state="up")
    for namespace, device, address in ((namespace_a, name_a, address_a),
                                       (namespace_b, name_b, address_b)):
        if address:
            linux.set_addresses(namespace, device, [address])


def _route(namespace: str, gateway: str) -> None:
    with linux.ipr_in(namespace) as ns:
        ns.route("replace", dst="0.0.0.0/0", gateway=gateway)


def _in_thread(namespace: str, fn: Callable[..., object], *args: object,
               **kwargs: object) -> object:
    """Run ``fn`` with this worker thread in ``namespace`` (the host stand-in)."""
    with linux.entered(namespace):
        return fn(*args, **kwargs)


def _forwarding(namespace: str, device: str) -> str:
    with linux.entered(namespace), open(
            f"/proc/sys/net/ipv4/conf/{device}/forwarding") as handle:
        return handle.read().strip()


async def test_external_bridge_masquerades_to_the_uplink_inside_namespaces() -> None:
    require_root_and_dnsmasq()
    tag = uuid.uuid4().hex[:8]
    host, internet, guest = f"qhost-{tag}", f"qnet-{tag}", f"qgst-{tag}"
    bridge = f"bx{tag}"
    prefix = f"198.{random.randint(18, 19)}.{random.randint(0, 255)}"
    for namespace in (host, internet, guest):
        await asyncio.to_thread(linux.ensure_namespace, namespace)
    try:
        # host: uplink 198.51.100.2 → internet 198.51.100.1 (its default route).
        await asyncio.to_thread(_veth_into, host, "uplink0", internet, "eth0",
                                "198.51.100.2/24", "198.51.100.1/24")
        await asyncio.to_thread(_route, host, "198.51.100.1")
        made = await asyncio.to_thread(_in_thread, host, external.ensure_external_bridge,
                                       bridge, f"{prefix}.1/24", masquerade=True)
        assert isinstance(made, external.ExternalBridge)
        assert made.uplink == "uplink0" and made.created_bridge and made.added_address
        assert f"masquerading {prefix}.0/24 to uplink0" in made.describe()
        # A second start finds it all: nothing added twice.
        again = await asyncio.to_thread(_in_thread, host, external.ensure_external_bridge,
                                        bridge, f"{prefix}.1/24", masquerade=True)
        assert isinstance(again, external.ExternalBridge)
        assert not again.created_bridge and not again.added_address
        ruleset = await asyncio.to_thread(run_in, host, ["nft", "list", "ruleset"], None)
        assert ruleset.count("masquerade") == 1
        assert await asyncio.to_thread(_forwarding, host, bridge) == "1"
        assert await asyncio.to_thread(_forwarding, host, "uplink0") == "1"
        # A guest-side namespace on the bridge (as a router's qg- leg is).
        await asyncio.to_thread(_veth_into, guest, "eth0", host, f"gx{tag}",
                                f"{prefix}.50/24", None)

        def enslave() -> None:
            with linux.entered(host), IPRoute() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname=f"gx{tag}")[0],
                         master=ipr.link_lookup(ifname=bridge)[0])

        await asyncio.to_thread(enslave)
        await asyncio.to_thread(_route, guest, f"{prefix}.1")
        async with Listener(internet) as out:
            # Out through the host: masqueraded to the uplink's address.
            assert await out.seen_from(guest, "198.51.100.1") == "198.51.100.2"
        async with Listener(guest) as inside:
            # The host reaches the external subnet (floating IPs live there) directly.
            assert await inside.seen_from(host, f"{prefix}.50") == f"{prefix}.1"

        await asyncio.to_thread(_in_thread, host, external.remove_external_bridge, made)
        ruleset = await asyncio.to_thread(run_in, host, ["nft", "list", "ruleset"], None)
        assert "masquerade" not in ruleset
        assert await asyncio.to_thread(_in_thread, host, linux.get_link, bridge) is None
        assert await asyncio.to_thread(_forwarding, host, "uplink0") == "0"
    finally:
        for namespace in (guest, internet, host):
            await asyncio.to_thread(linux.delete_namespace, namespace)


async def test_up_makes_the_public_network_once(db_url: str, tmp_path: Path) -> None:
    """``ensure_external_network`` as ``stratus up`` runs it (masquerade off: tests never
    masquerade real traffic): the network and subnet once, the bridge with the gateway
    address on every start, gone when the stack closes."""
    require_root_and_dnsmasq()
    tag = uuid.uuid4().hex[:8]
    bridge = f"bx{tag}"
    cidr = f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.0/24"
    gateway = cidr.rsplit(".", 1)[0] + ".1"
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url="http://test",
                        bus_url=f"memory://ext-{tag}", admin_password="ext-tests-admin-pw",
                        identity={"bcrypt_rounds": 4},
                        network={"backend": "linuxbridge", "physical_bridges": f"public:{bridge}",
                                 "external_subnet_cidr": cidr, "external_masquerade": False})
    said: list[list[str]] = []
    try:
        for _ in range(2):
            stack = Stack(settings)
            try:
                await run_bootstrap(stack)
                await root_app(stack, ["identity-api", "network-api"])
                said.append(await ensure_external_network(stack))
                link = await asyncio.to_thread(linux.get_link, bridge)
                assert link is not None and link.kind == "bridge"

                def addresses() -> set[str]:
                    with IPRoute() as ipr:
                        index = ipr.link_lookup(ifname=bridge)[0]
                        return {f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}"
                                for m in ipr.get_addr(index=index, family=2)}

                assert await asyncio.to_thread(addresses) == {f"{gateway}/24"}
                assert stack.network is not None
                async with stack.network.service(write=False) as svc:
                    from sqlalchemy import select

                    from stratus.network.models import Network, Subnet

                    nets = list(await svc.txn.session.scalars(select(Network).where(
                        Network.name == "public")))
                    assert len(nets) == 1
                    net = nets[0]
                    assert net.router_external and net.network_type == "flat"
                    assert net.physical_network == "public"
                    subnets = list(await svc.txn.session.scalars(select(Subnet).where(
                        Subnet.network_id == net.id)))
                    assert [(s.cidr, s.gateway_ip, s.enable_dhcp) for s in subnets] == [
                        (cidr, gateway, False)]
            finally:
                await stack.aclose()
            assert await asyncio.to_thread(linux.get_link, bridge) is None
    finally:
        await asyncio.to_thread(linux.delete_link, bridge)
    assert said[0][0].startswith("Network: made the external network public")
    assert f"bridge {bridge} (made) with {gateway}/24" in said[0][1]
    assert "masquerading" not in said[0][1]
    assert len(said[1]) == 1 and "made the external network" not in said[1][0]


async def test_up_says_when_the_bridge_cannot_be_used(db_url: str, tmp_path: Path) -> None:
    """A device of the bridge's name that is no Linux bridge (an Open vSwitch ``br-ex``,
    here a veth): ``stratus up`` still comes up, and says why there is no host side."""
    require_root_and_dnsmasq()
    tag = uuid.uuid4().hex[:8]
    bridge = f"bx{tag}"

    def add_dummy() -> None:
        with IPRoute() as ipr:
            ipr.link("add", ifname=bridge, kind="veth", peer=f"by{tag}")

    await asyncio.to_thread(add_dummy)
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url="http://test",
                        bus_url=f"memory://ext-{tag}", admin_password="ext-tests-admin-pw",
                        identity={"bcrypt_rounds": 4},
                        network={"backend": "linuxbridge", "physical_bridges": f"public:{bridge}",
                                 "external_subnet_cidr": f"198.19.{random.randint(0, 255)}.0/24",
                                 "external_masquerade": False})
    stack = Stack(settings)
    try:
        await run_bootstrap(stack)
        await root_app(stack, ["identity-api", "network-api"])
        said = await ensure_external_network(stack)
        assert said[0].startswith("Network: made the external network public")
        assert said[1].startswith(f"Network: the host side of external network public was "
                                  f"not set up on {bridge}: ")
        assert "veth" in said[1]
    finally:
        await stack.aclose()
        await asyncio.to_thread(linux.delete_link, bridge)
