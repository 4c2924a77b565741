"""The kernel side of a router: its namespace, legs, routes and NAT (the l3-agent's driver).

A router ``<id>`` is the namespace ``qrouter-<id>`` (``router_namespace``), forwarding on,
holding:

* a leg per internal network: a veth whose inner end ``qr-<port[:11]>`` carries the port's
  MAC and addresses (the subnets' gateway IPs) and whose outer end ``tap<port[:11]>`` is in
  the network's bridge;
* a gateway leg the same way, ``qg-<port[:11]>``, on the external network's bridge
  (``network_bridge``: the mapped host bridge, e.g. ``br-ex``), holding the external
  address and each floating IP (/32); a gratuitous ARP tells the external network of every
  address added there;
* a default route via the external subnet's gateway, and the router's extra routes;
* one nft table (``ip stratus_router``) replaced atomically by ``nft -f`` run inside the
  namespace: floating IPs as DNAT (floating → fixed) and SNAT (fixed → floating) pairs
  (and a masquerade of hairpinned connections, a guest reaching a floating IP of its own
  network), then, with ``enable_snat``, SNAT of the internal subnets to the external
  address.

``apply`` makes all that match a ``RouterInfo`` and is idempotent (a resync after a crash
runs it again over what is there: nothing is duplicated); it remembers the legs it wired
and the ruleset it loaded, so a change (a floating IP) redoes only what it touches.
``remove`` takes everything of a router away, outer veth ends and emptied network bridges
included; ``existing`` lists the routers whose namespace is on this machine. Every function
blocks (netlink round trips and one ``nft`` run): callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import struct
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from pyroute2 import IPRoute, NetlinkError
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

from stratus.network.agents import linux
from stratus.network.objects import (
    RouterInfo,
    RouterPort,
    is_provider_bridge,
    network_bridge,
    router_namespace,
)

LOG = logging.getLogger(__name__)

NAMESPACE_PREFIX = "qrouter-"
INTERNAL_PREFIX = "qr-"
GATEWAY_PREFIX = "qg-"
#: The router's nft table inside its namespace (one per namespace, so one name suffices).
NFT_TABLE = "stratus_router"
_LEG_PREFIXES = (INTERNAL_PREFIX, GATEWAY_PREFIX)


def internal_device(port_id: str) -> str:
    return f"{INTERNAL_PREFIX}{port_id[:11]}"


def gateway_device(port_id: str) -> str:
    return f"{GATEWAY_PREFIX}{port_id[:11]}"


def outer_device(inner: str) -> str:
    """The bridge-side end of a leg: ``tap`` + the port id's 11 characters (as a port's tap
    is named, so the l2-agent sees the router's port as plugged)."""
    return "tap" + inner[3:]


def vxlan_device(vni: int) -> str:
    return f"vxlan-{vni}"


@dataclass(frozen=True)
class AppliedRouter:
    """What ``apply`` did: the floating IPs now in force, and the addresses it announced."""

    router_id: str
    active_floating_ips: tuple[str, ...] = ()
    announced: tuple[str, ...] = ()


@dataclass
class RouterDriver:
    """Routers as namespaces on this machine."""

    #: ``network.physical_bridges``: physical network → host bridge.
    physical_bridges: Mapping[str, str] = field(default_factory=dict)
    #: This host's VXLAN tunnel address (VXLAN networks' legs get their bridge's VXLAN
    #: device, as the l2-agent's taps do); None keeps every network on this host.
    tunnel_ip: str | None = None
    nft: str = "nft"
    #: Per router: leg device → (bridge, MAC, MTU) as wired here; and the ruleset loaded.
    _wired: dict[str, dict[str, tuple[str, str, int]]] = field(
        default_factory=dict, init=False, repr=False)
    _nat: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    # The three operations ---------------------------------------------------------------------

    def existing(self) -> set[str]:
        """The ids of the routers whose namespace exists here."""
        try:
            names = os.listdir(linux.NETNS_DIR)
        except FileNotFoundError:
            return set()
        return {n[len(NAMESPACE_PREFIX):] for n in names if n.startswith(NAMESPACE_PREFIX)}

    def apply(self, router: RouterInfo, *, verify: bool = False) -> AppliedRouter:
        """Make router ``router``'s namespace match it (created on first use).

        Legs this driver wired and the ruleset it loaded are remembered, and not redone
        while unchanged (a floating IP touches only addresses and NAT); ``verify`` checks
        everything again (the agent's periodic resync; after a restart nothing is
        remembered, so the first apply checks everything anyway)."""
        namespace = router_namespace(router.id)
        if verify or not linux.namespace_exists(namespace):
            self._forget(router.id)
        wired = self._wired.get(router.id)
        if wired is None:
            linux.ensure_namespace(namespace)
            _write_sysctl(namespace, "net/ipv4/ip_forward", "1")
            wired = self._wired[router.id] = {}
        legs = {internal_device(p.id): p for p in router.interfaces}
        if router.gateway is not None:
            legs[gateway_device(router.gateway.id)] = router.gateway
        present = self._legs(namespace)
        for stale in sorted(set(present) - set(legs)):
            self._unplug_leg(namespace, stale)
            wired.pop(stale, None)
        for device, port in legs.items():
            wiring = (network_bridge(port.network, self.physical_bridges), port.mac_address,
                      port.network.mtu)
            if device not in present or wired.get(device) != wiring:
                self._wire_leg(namespace, device, port, wiring[0])
                wired[device] = wiring
        floating = sorted(f.floating_ip_address for f in router.floating_ips)
        added: list[tuple[str, str, str]] = []
        removed: list[str] = []
        gateway_addresses: tuple[str, list[str]] | None = None
        with linux.ipr_in(namespace) as ns:
            for device, port in legs.items():
                addresses = _leg_addresses(port)
                if device.startswith(GATEWAY_PREFIX):
                    addresses += [f"{a}/32" for a in floating]
                    # Addresses taken away go only once the NAT without them is in force
                    # (below): gone first, a floating IP would stop answering while the
                    # guest's new connections still left SNATed to it.
                    new, _ = _sync_addresses(ns, device, addresses, remove=False)
                    added += [(device, port.mac_address, a) for a in new]
                    gateway_addresses = (device, addresses)
                else:
                    _sync_addresses(ns, device, addresses)
            _sync_routes(ns, namespace, _wanted_routes(router))
        for device, mac, address in added:
            try:
                send_gratuitous_arp(namespace, device, mac, address)
            except OSError as exc:  # an unannounced address still works once ARPed for
                LOG.warning("gratuitous ARP for %s on %s failed: %s", address, device, exc)
        ruleset = nat_ruleset(router)
        if self._nat.get(router.id) != ruleset:
            self._apply_nat(namespace, ruleset)
            self._nat[router.id] = ruleset
        if gateway_addresses is not None:
            with linux.ipr_in(namespace) as ns:
                _, removed = _sync_addresses(ns, *gateway_addresses)
        # After the new ruleset: a packet of a dropped connection meets no old NAT.
        forget_connections(namespace, removed)
        return AppliedRouter(router.id, tuple(f.id for f in router.floating_ips),
                             tuple(a for _, _, a in added))

    def _forget(self, router_id: str) -> None:
        self._wired.pop(router_id, None)
        self._nat.pop(router_id, None)

    def remove(self, router_id: str) -> bool:
        """Remove the router's namespace and everything it had on the host (outer veth
        ends, emptied network bridges); True when there was something to remove."""
        namespace = router_namespace(router_id)
        self._forget(router_id)
        if not linux.namespace_exists(namespace):
            return False
        with contextlib.suppress(linux.NamespaceNotFound):
            for device in self._legs(namespace):
                self._unplug_leg(namespace, device)
        linux.delete_namespace(namespace)
        return True

    # Legs -------------------------------------------------------------------------------------

    @staticmethod
    def _legs(namespace: str) -> list[str]:
        with linux.ipr_in(namespace) as ns:
            names = [m.get("IFLA_IFNAME") for m in ns.get_links()]
        return [n for n in names if n and n.startswith(_LEG_PREFIXES)]

    def _wire_leg(self, namespace: str, device: str, port: RouterPort, bridge: str) -> None:
        network = port.network
        linux.ensure_bridge(bridge)
        if (network.network_type == "vxlan" and self.tunnel_ip
                and network.segmentation_id is not None):
            linux.ensure_vxlan(vxlan_device(network.segmentation_id), network.segmentation_id,
                               self.tunnel_ip, bridge, network.mtu)
        linux.plug_veth(namespace, device, outer_device(device), bridge, port.mac_address,
                        network.mtu)

    def _unplug_leg(self, namespace: str, device: str) -> None:
        outer = linux.get_link(outer_device(device))
        bridge = None
        if outer is not None and outer.kind == "veth":
            bridge = _name_of(outer.master)
            linux.delete_link(outer.name)
        else:
            with linux.ipr_in(namespace) as ns:
                found = ns.link_lookup(ifname=device)
                if found:
                    with contextlib.suppress(NetlinkError):
                        ns.link("del", index=found[0])
        if bridge is not None:
            self._drop_bridge_if_empty(bridge)

    def _drop_bridge_if_empty(self, bridge: str) -> None:
        """A network's own bridge goes with its last device (as the other agents do); a
        mapped host bridge stays."""
        if is_provider_bridge(bridge, self.physical_bridges) or not bridge.startswith("brq"):
            return
        ports = linux.bridge_ports(bridge)
        if any(p.kind != "vxlan" for p in ports):
            return
        for port in ports:
            linux.delete_link(port.name)
        linux.delete_link(bridge)

    # NAT --------------------------------------------------------------------------------------

    def _apply_nat(self, namespace: str, ruleset: str) -> None:
        run_in(namespace, [self.nft, "-f", "-"], ruleset)

    def nat_rules(self, router_id: str) -> list[dict[str, object]]:
        """The rules of the router's nft table as ``nft -j`` gives them (for checks)."""
        out = run_in(router_namespace(router_id),
                     [self.nft, "-j", "list", "table", "ip", NFT_TABLE], None)
        items = json.loads(out).get("nftables", [])
        return [i["rule"] for i in items if "rule" in i]


# Pure parts ----------------------------------------------------------------------------------


def _subnet_prefixes(port: RouterPort) -> dict[str, int]:
    return {s.id: IPv4Network(s.cidr).prefixlen for s in port.network.subnets
            if s.ip_version == 4}


def _leg_addresses(port: RouterPort) -> list[str]:
    prefixes = _subnet_prefixes(port)
    return [f"{f.ip_address}/{prefixes[f.subnet_id]}" for f in port.fixed_ips
            if f.subnet_id in prefixes]


def gateway_address(router: RouterInfo) -> str | None:
    """The router's first external IPv4 address (its SNAT source)."""
    if router.gateway is None:
        return None
    prefixes = _subnet_prefixes(router.gateway)
    for fixed in router.gateway.fixed_ips:
        if fixed.subnet_id in prefixes:
            return fixed.ip_address
    return None


def _wanted_routes(router: RouterInfo) -> dict[str, str]:
    """destination → next hop: the default route via the external subnet's gateway, then the
    extra routes (which may replace it)."""
    routes: dict[str, str] = {}
    gateway = router.gateway
    if gateway is not None:
        by_id = {s.id: s for s in gateway.network.subnets if s.ip_version == 4}
        for fixed in gateway.fixed_ips:
            subnet = by_id.get(fixed.subnet_id)
            if subnet is not None and subnet.gateway_ip:
                routes["0.0.0.0/0"] = subnet.gateway_ip
                break
    for route in router.routes:
        destination = IPv4Network(route.destination, strict=False)
        routes[str(destination)] = route.nexthop
    return routes


def _internal_cidrs(router: RouterInfo) -> list[str]:
    cidrs: list[str] = []
    for port in router.interfaces:
        by_id = {s.id: s for s in port.network.subnets if s.ip_version == 4}
        for fixed in port.fixed_ips:
            subnet = by_id.get(fixed.subnet_id)
            if subnet is not None and subnet.cidr not in cidrs:
                cidrs.append(subnet.cidr)
    return cidrs


def nat_ruleset(router: RouterInfo) -> str:
    """The ``nft -f`` script that replaces the router's table in one transaction.

    Declaring the table first makes the ``delete`` valid when it does not exist yet (the
    first apply, or after a crash before it was made)."""
    lines = [f"table ip {NFT_TABLE} {{}}", f"delete table ip {NFT_TABLE}",
             f"table ip {NFT_TABLE} {{"]
    prerouting: list[str] = []
    output: list[str] = []
    postrouting: list[str] = []
    external = gateway_address(router)
    if router.gateway is not None and external is not None:
        qg = gateway_device(router.gateway.id)
        for fip in sorted(router.floating_ips, key=lambda f: f.floating_ip_address):
            prerouting.append(f"ip daddr {fip.floating_ip_address} "
                              f"dnat to {fip.fixed_ip_address}")
            output.append(f"ip daddr {fip.floating_ip_address} "
                          f"dnat to {fip.fixed_ip_address}")
            postrouting.append(f'ip saddr {fip.fixed_ip_address} oifname "{qg}" '
                               f"snat to {fip.floating_ip_address}")
        if router.floating_ips:
            # Hairpin: a guest reaching a floating IP of its own network is DNATed back out
            # of the leg it came in by; without a source NAT the answer would go straight
            # to it from the fixed address it never asked.
            for port in router.interfaces:
                qr = internal_device(port.id)
                postrouting.append(f'iifname "{qr}" oifname "{qr}" ct status dnat masquerade')
        if router.enable_snat:
            for cidr in _internal_cidrs(router):
                postrouting.append(f'ip saddr {cidr} oifname "{qg}" snat to {external}')
    for name, hook, priority, rules in (
            ("prerouting", "prerouting", "dstnat", prerouting),
            ("output", "output", "-100", output),
            ("postrouting", "postrouting", "srcnat", postrouting)):
        lines.append(f"  chain {name} {{")
        lines.append(f"    type nat hook {hook} priority {priority}; policy accept;")
        lines.extend(f"    {rule}" for rule in rules)
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


# Kernel helpers ------------------------------------------------------------------------------


def run_in(namespace: str, args: list[str], stdin: str | None) -> str:
    """Run ``args`` inside ``namespace`` (this worker thread enters it; the child inherits
    the thread's namespace); its output, or ``RuntimeError`` with its complaint."""
    with linux.entered(namespace):
        result = subprocess.run(args, input=stdin, capture_output=True, text=True,
                                timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} in {namespace} failed: "
                           f"{result.stderr.strip() or result.returncode}")
    return result.stdout


def _write_sysctl(namespace: str, key: str, value: str) -> None:
    """Write ``/proc/sys/<key>`` as seen from ``namespace`` (net sysctls follow the
    namespace of the thread that opens them)."""
    with linux.entered(namespace), open(f"/proc/sys/{key}", "w") as handle:
        handle.write(value)


def _sync_addresses(ns: IPRoute, device: str, addresses: list[str], *,
                    remove: bool = True) -> tuple[list[str], list[str]]:
    """Make ``device``'s IPv4 addresses exactly ``addresses`` (CIDR notation) through the
    namespace's socket ``ns`` (``remove=False``: add the missing ones, keep the others);
    the addresses added and removed (without their prefix)."""
    wanted = {IPv4Interface(a) for a in addresses}
    index = ns.link_lookup(ifname=device)[0]
    present = {IPv4Interface(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}")
               for m in ns.get_addr(index=index, family=2)}
    removed = []
    for iface in sorted(present - wanted if remove else ()):
        ns.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        removed.append(str(iface.ip))
    added = []
    for iface in sorted(wanted - present):
        try:
            ns.addr("add", index=index, address=str(iface.ip),
                    prefixlen=iface.network.prefixlen)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise
        added.append(str(iface.ip))
    return added, removed


def forget_connections(namespace: str, addresses: list[str]) -> int:
    """Drop the namespace's tracked connections to or from ``addresses`` (floating IPs
    taken away: an established connection must not keep its NAT past the association);
    how many were dropped."""
    if not addresses:
        return 0
    dropped = 0
    with linux.conntrack_in(namespace) as tracker:
        for address in addresses:
            for side in ("tuple_orig", "tuple_reply"):
                match = {side: NFCTAttrTuple(saddr=None, daddr=address)}
                for entry in list(tracker.dump_entries(**match)):
                    try:
                        tracker.delete(entry)
                        dropped += 1
                    except NetlinkError as exc:
                        if exc.code != errno.ENOENT:  # gone meanwhile (both sides matched)
                            raise
    return dropped


def _name_of(index: int | None) -> str | None:
    if index is None:
        return None
    with IPRoute() as ipr:
        try:
            links = ipr.link("get", index=index)
        except NetlinkError:
            return None
        name = links[0].get("IFLA_IFNAME") if links else None
        return str(name) if name else None


def _sync_routes(ns: IPRoute, namespace: str, wanted: dict[str, str]) -> None:
    """Make the namespace's routes with a next hop exactly ``wanted`` (destination → next
    hop); connected routes are the kernel's and stay."""
    present: dict[str, str] = {}
    for route in ns.get_routes(family=2, table=254):
        gateway = route.get("RTA_GATEWAY")
        if gateway:
            destination = route.get("RTA_DST") or "0.0.0.0"
            present[f"{destination}/{route['dst_len']}"] = str(gateway)
    for destination in sorted(set(present) - set(wanted)):
        with contextlib.suppress(NetlinkError):
            ns.route("del", dst=destination, gateway=present[destination])
    for destination, nexthop in wanted.items():
        if present.get(destination) == nexthop:
            continue
        try:
            ns.route("replace", dst=destination, gateway=nexthop)
        except NetlinkError as exc:
            if exc.code not in (errno.ENETUNREACH, errno.EINVAL):
                raise
            # A next hop on no leg's subnet (yet): the next apply tries again.
            LOG.warning("%s: route %s via %s not added: %s", namespace, destination,
                        nexthop, exc)


def send_gratuitous_arp(namespace: str, device: str, mac: str, address: str) -> None:
    """Announce ``address`` at ``mac`` on ``device``: one ARP request and one reply for
    itself, broadcast (so neighbours, and bridges' forwarding tables, learn it at once)."""
    own = bytes.fromhex(mac.replace(":", ""))
    ip = IPv4Address(address).packed
    header = b"\xff" * 6 + own + struct.pack("!H", 0x0806)
    with linux.entered(namespace):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        with sock:
            sock.bind((device, 0))
            for operation in (1, 2):
                body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, operation)
                target = b"\x00" * 6 if operation == 1 else b"\xff" * 6
                sock.send(header + body + own + ip + target + ip)
