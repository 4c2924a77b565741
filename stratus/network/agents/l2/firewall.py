"""Security groups enforced with nftables: the l2-agent's firewall driver.

The whole ruleset of the host's filtered ports is rendered from what the server sent
(``DeviceDetails``) and applied as one script (in-process through libnftables, or ``nft -f``:
``nft.py``), which the kernel commits as one transaction: the old tables are deleted and the
new ones made in the same commit, so no packet ever sees a half-made ruleset and nothing is
ever duplicated (a restart simply applies again). When only remote groups' members changed
since the last apply (what every port created in a group does to every port filtered by
it), the script adds and deletes those set elements instead, also in one transaction, and
only those groups' sets are worked out again (the ports' chains are not rendered). Two
tables carry the configurable name (``stratus-sg`` by default):

* ``bridge <name>``: anti-spoofing, per tap, before anything else sees the frame (the
  bridge family's prerouting hook matches ``iifname`` on the tap itself): a port sends only
  from its MAC and its fixed IPs and allowed address pairs (ARP included), never as a DHCP
  server, never router advertisements.
* ``inet <name>``: the rules, stateful through conntrack. Bridged traffic reaches the inet
  ``forward`` hook because ``bridge-nf-call-iptables`` is on; there ``iifname``/``oifname``
  are the bridge, not the tap, so a port is found by (bridge, MAC): a frame from the port's
  MAC out of its bridge goes through the port's egress chain, a frame to its MAC through
  its ingress chain. Anti-spoofing guarantees the source MAC. Each chain ends in ``drop``;
  a rule that matches ``return``s (the other port's chain may still refuse), established
  and related traffic is accepted first. DHCP (client side) and metadata always pass.
* Stateless ports (every group of the port has ``stateful`` false; Neutron's
  ``stateful-security-group``): conntrack admits nothing of theirs. Their chains are
  entered before the established traffic is accepted, so every packet to or from such a
  port, replies included, must match a rule of the port (a user opens both directions, as
  Neutron asks); a stateful peer on the other end still has its replies accepted. Their
  connections are still tracked (nothing is exempted from conntrack), only never trusted.

Remote groups are named sets of their members' addresses (``rg4-<group>`` /
``rg6-<group>``, plain sets) and, when their address pairs bring CIDRs, of those
(``rn4-``/``rn6-``, interval sets). Ports with port security off, and ports of the
network itself (``network:*`` owners: DHCP, router interfaces), are not filtered.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from stratus.network import protocols
from stratus.network.agents.l2 import flows
from stratus.network.agents.l2.nft import NftError, runner
from stratus.network.objects import (
    METADATA_ADDRESS,
    DeviceDetails,
    SecurityGroupRuleInfo,
    bridge_name,
    tap_name,
)

LOG = logging.getLogger(__name__)

DEFAULT_TABLE = "stratus-sg"
#: The families of our tables.
FAMILIES = ("bridge", "inet")


class FirewallError(RuntimeError):
    pass


def filtered(details: DeviceDetails) -> bool:
    """Whether the firewall filters this port."""
    port = details.port
    return port.port_security_enabled and not port.device_owner.startswith("network:")


def stateless(details: DeviceDetails) -> bool:
    """Whether conntrack admits nothing of the port's: all its groups are stateless (one
    stateful group makes the port stateful, as with no group)."""
    groups = details.security_groups
    return bool(groups) and not any(g.stateful for g in groups)


def _link_local(mac: str) -> str:
    """The IPv6 link-local address a guest derives from its MAC (EUI-64)."""
    octets = [int(b, 16) for b in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80, *[0] * 6, *eui])))


@dataclass(frozen=True)
class _Addresses:
    """(mac, address or CIDR) pairs the port may send from, per IP version."""

    macs: tuple[str, ...]
    v4: tuple[tuple[str, str], ...]
    v6: tuple[tuple[str, str], ...]


def _addresses(details: DeviceDetails) -> _Addresses:
    port = details.port
    mac = port.mac_address.lower()
    macs = [mac]
    pairs: list[tuple[str, str]] = [(mac, ip.ip_address) for ip in port.fixed_ips]
    for pair in port.allowed_address_pairs:
        pair_mac = pair.mac_address.lower()
        if pair_mac not in macs:
            macs.append(pair_mac)
        pairs.append((pair_mac, str(ipaddress.ip_network(pair.ip_address, strict=False))
                      if "/" in pair.ip_address else pair.ip_address))
    v4 = [(m, a) for m, a in pairs if ipaddress.ip_network(a, strict=False).version == 4]
    v6 = [(m, a) for m, a in pairs if ipaddress.ip_network(a, strict=False).version == 6]
    v6 += [(m, _link_local(m)) for m in macs]
    return _Addresses(tuple(macs), tuple(dict.fromkeys(v4)), tuple(dict.fromkeys(v6)))


def _key(port_id: str) -> str:
    return port_id.replace("-", "")


def _set_name(group_id: str, version: int, *, cidrs: bool = False) -> str:
    """A remote group's members of one IP version: its addresses (``rg``), and the CIDRs
    of its address pairs (``rn``) when it has any."""
    return f"{'rn' if cidrs else 'rg'}{version}-{_key(group_id)}"


def _elements(values: Iterable[str]) -> str:
    return "{ " + ", ".join(values) + " }"


def _quoted(name: str) -> str:
    return f'"{name}"'


# Rendering ----------------------------------------------------------------------------------


def _rule(rule: SecurityGroupRuleInfo, *, ingress: bool,
          cidr_sets: frozenset[str] = frozenset()) -> list[str]:
    """One rule as nft statements ending in ``return`` (none: it can never match); a remote
    group with CIDRs among its members (``cidr_sets``) takes one statement per set."""
    v6 = rule.ethertype == "IPv6"
    ip = "ip6" if v6 else "ip"
    parts = [f"meta nfproto {'ipv6' if v6 else 'ipv4'}"]
    number = protocols.protocol_number(rule.protocol, rule.ethertype)
    if number is not None:
        parts.append(f"meta l4proto {number}")
        low, high = rule.port_range_min, rule.port_range_max
        if number in protocols.PORT_PROTOCOLS and low is not None:
            top = high if high is not None else low
            parts.append(f"th dport {low}" if low == top else f"th dport {low}-{top}")
        elif number in (protocols.ICMP, protocols.ICMPV6) and low is not None:
            icmp = "icmpv6" if number == protocols.ICMPV6 else "icmp"
            parts.append(f"{icmp} type {low}")
            if high is not None:
                parts.append(f"{icmp} code {high}")
    remote = "saddr" if ingress else "daddr"
    if rule.remote_ip_prefix:
        network = ipaddress.ip_network(rule.remote_ip_prefix, strict=False)
        if network.version != (6 if v6 else 4):
            return []
        if network.prefixlen:
            parts.append(f"{ip} {remote} {network}")
    elif rule.remote_group_id:
        version = 6 if v6 else 4
        names = [_set_name(rule.remote_group_id, version)]
        cidrs = _set_name(rule.remote_group_id, version, cidrs=True)
        if cidrs in cidr_sets:
            names.append(cidrs)
        head = " ".join(parts)
        return [f"{head} {ip} {remote} @{name} return" for name in names]
    return [" ".join(parts) + " return"]


def _port_chains(details: DeviceDetails,
                 cidr_sets: frozenset[str] = frozenset()) -> tuple[list[str], list[str]]:
    """The port's ingress and egress chain bodies."""
    rules = [r for g in details.security_groups for r in g.rules]
    tracked = [] if stateless(details) else ["ct state invalid drop"]
    ingress = [*tracked,
               # DHCP offers and acks (the server answers the client's port 68).
               "meta nfproto ipv4 udp sport 67 udp dport 68 return",
               "meta nfproto ipv6 udp sport 547 udp dport 546 return",
               "meta l4proto ipv6-icmp icmpv6 type { nd-router-advert, nd-neighbor-solicit, "
               "nd-neighbor-advert, mld-listener-query } return"]
    if not tracked:  # the metadata service's answers: no conntrack lets them in
        ingress.append(f"ip saddr {METADATA_ADDRESS} tcp sport 80 return")
    egress = [*tracked,
              "meta nfproto ipv4 udp sport 68 udp dport 67 return",
              "meta nfproto ipv6 udp sport 546 udp dport 547 return",
              f"ip daddr {METADATA_ADDRESS} tcp dport 80 return",
              "meta l4proto ipv6-icmp icmpv6 type { nd-router-solicit, nd-neighbor-solicit, "
              "nd-neighbor-advert, mld-listener-report, mld2-listener-report } return"]
    for rule in rules:
        statements = _rule(rule, ingress=rule.direction == "ingress", cidr_sets=cidr_sets)
        (ingress if rule.direction == "ingress" else egress).extend(statements)
    ingress.append("drop")
    egress.append("drop")
    return list(dict.fromkeys(ingress)), list(dict.fromkeys(egress))


def _spoof_chain(details: DeviceDetails) -> list[str]:
    """What the port may send: its MACs, its addresses (ARP too), no DHCP server, no
    router advertisements."""
    addresses = _addresses(details)
    macs = _elements(addresses.macs)
    lines = [f"ether saddr != {macs} drop",
             # Tagged frames would carry addresses these checks never look at.
             "ether type { 8021q, 8021ad } drop",
             f"ether type arp arp saddr ether != {macs} drop"]
    arp = [f"{m} . {a}" for m, a in addresses.v4] + [f"{m} . 0.0.0.0" for m in addresses.macs]
    lines.append(f"ether type arp arp saddr ether . arp saddr ip != {_elements(arp)} drop")
    lines += ["ether type ip ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 "
              "udp dport 67 return",
              "ether type ip udp sport 67 drop"]
    if addresses.v4:
        pairs = _elements(f"{m} . {a}" for m, a in addresses.v4)
        lines.append(f"ether type ip ether saddr . ip saddr != {pairs} drop")
    else:
        lines.append("ether type ip drop")
    lines += ["ether type ip6 udp sport 547 drop",
              "ether type ip6 icmpv6 type nd-router-advert drop",
              # Duplicate address detection comes from the unspecified address.
              "ether type ip6 ip6 saddr :: icmpv6 type { nd-neighbor-solicit, "
              "mld2-listener-report } return"]
    pairs6 = _elements(f"{m} . {a}" for m, a in addresses.v6)
    lines.append(f"ether type ip6 ether saddr . ip6 saddr != {pairs6} drop")
    lines.append("return")
    return lines


def _chain(name: str, body: list[str]) -> str:
    inner = "".join(f"\t\t{line}\n" for line in body)
    return f"\tchain {name} {{\n{inner}\t}}\n"


def _set(name: str, kind: str, interval: bool, members: list[str]) -> str:
    elements = f"\t\telements = {_elements(members)}\n" if members else ""
    flags = "\t\tflags interval\n" if interval else ""
    return f"\tset {name} {{\n\t\ttype {kind}\n{flags}{elements}\t}}\n"


@dataclass(frozen=True)
class _Member:
    """A member address or CIDR as the sets need it, worked out once per value: a render
    goes over every member of every remote group, with each change of any of them."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    version: int
    host: bool
    #: As nft is given it (an address alone: ``10.0.0.5``), and its place in the order.
    text: str
    order: tuple[int, int]


@functools.lru_cache(maxsize=65536)
def _member(value: str) -> _Member:
    network = ipaddress.ip_network(value, strict=False)
    host = network.num_addresses == 1
    return _Member(network, network.version, host,
                   str(network.network_address) if host else str(network),
                   (int(network.network_address), network.prefixlen))


def _members(addresses: Iterable[str], version: int) -> tuple[list[str], list[str]]:
    """A group's addresses and its CIDRs (address pairs') of one IP version, apart: the
    addresses go to a plain set, which takes an element added or deleted in a fraction of
    what an interval set does (libnftables reads all of an interval set's elements back
    first), and the CIDRs, overlaps merged (an interval set refuses them), to one of
    their own, only made when the group has any."""
    hosts: dict[str, _Member] = {}
    cidrs: list[_Member] = []
    for value in addresses:
        member = _member(value)
        if member.version != version:
            continue
        if member.host:
            hosts[member.text] = member
        else:
            cidrs.append(member)
    merged = [_member(str(n)) for n in ipaddress.collapse_addresses(  # type: ignore[type-var]
        [c.network for c in cidrs])] if cidrs else []
    return ([m.text for m in sorted(hosts.values(), key=lambda m: m.order)],
            [m.text for m in sorted(merged, key=lambda m: m.order)])


def _members_unordered(addresses: Iterable[str]) -> dict[int, tuple[set[str], list[str]]]:
    """A group's addresses and CIDRs (overlaps merged) by IP version, as ``_members`` gives
    them but in one pass for both versions and in no order: what a set's elements are
    compared by (``member_sets``, after every burst of creates in a group), where sorting
    every member with a Python key was most of the work."""
    found: dict[int, tuple[set[str], list[str]]] = {4: (set(), []), 6: (set(), [])}
    for value in addresses:
        member = _member(value)
        hosts, cidrs = found[member.version]
        if member.host:
            hosts.add(member.text)
        else:
            cidrs.append(value)
    for version, (_, cidrs) in found.items():
        if cidrs:
            cidrs[:] = _members(cidrs, version)[1]
    return found


def _ordered(members: Iterable[str]) -> list[str]:
    """Members in address order (as a set's elements are listed)."""
    return sorted(members, key=lambda m: _member(m).order)


@dataclass(frozen=True)
class Ruleset:
    """Our two tables as rendered from the ports: the script that makes them from nothing
    (replacing whatever is there), and what updating one ruleset into another needs.

    Two rulesets of one shape (``head``, ``sets`` declared empty, ``rest``) differ only in
    their sets' members, which an update changes element by element."""

    table: str
    #: The tables up to the ``inet`` table's sets, and everything after them.
    head: str
    rest: str
    #: Each ``inet`` set as declared: (name, type, interval).
    sets: tuple[tuple[str, str, bool], ...]
    #: Each ``inet`` set's members.
    members: dict[str, frozenset[str]]

    @functools.cached_property
    def script(self) -> str:
        return self.head + "".join(_set(n, k, i, _ordered(self.members[n]))
                                   for n, k, i in self.sets) + self.rest

    def same_shape(self, other: Ruleset) -> bool:
        return (self.table == other.table and self.sets == other.sets
                and self.head == other.head and self.rest == other.rest)

    def with_members(self, members: dict[str, frozenset[str]]) -> Ruleset:
        """This ruleset with these sets' members instead (sets it declares)."""
        return Ruleset(self.table, self.head, self.rest, self.sets, {**self.members, **members})

    def update_from(self, old: Ruleset | None) -> str | None:
        """The script that turns ``old`` (in force) into this ruleset by set elements alone
        (empty: nothing to do); None when more than members changed."""
        if old is None or not self.same_shape(old):
            return None
        deletes, adds = [], []
        for name, members in self.members.items():
            before = old.members.get(name, frozenset())
            if before is members:
                continue
            if gone := before - members:
                deletes.append(f"delete element inet {self.table} {name} "
                               f"{_elements(sorted(gone))}\n")
            if added := members - before:
                adds.append(f"add element inet {self.table} {name} "
                            f"{_elements(sorted(added))}\n")
        # Removals first: CIDRs merged into a wider one are replaced by it in one commit
        # (an interval set refuses overlapping elements).
        return "".join([*deletes, *adds])


def _remote_groups(details: DeviceDetails) -> set[str]:
    """The groups the port's rules name as remote group."""
    return {r.remote_group_id for g in details.security_groups for r in g.rules
            if r.remote_group_id}


def member_sets(ruleset: Ruleset, ports: Iterable[DeviceDetails],
                groups: Iterable[str]) -> dict[str, frozenset[str]] | None:
    """The members ``ruleset``'s sets of ``groups`` take from ``ports`` (what ``build``
    would give them); None when that changes which sets there are (a group named or no
    longer named, CIDRs among its members or none any more): then only a ``build`` will do.
    """
    wanted = set(groups)
    if not wanted:
        return {}
    union: dict[str, set[str]] = {g: set() for g in wanted}
    named: set[str] = set()
    for details in ports:
        if not filtered(details):
            continue
        for group_id in _remote_groups(details) & wanted:
            named.add(group_id)
            union[group_id].update(details.remote_group_members.get(group_id, ()))
    result: dict[str, frozenset[str]] = {}
    for group_id in sorted(wanted):
        present = _set_name(group_id, 4) in ruleset.members
        if (group_id in named) != present:
            return None
        if not present:
            continue
        by_version = _members_unordered(union[group_id])
        for version in (4, 6):
            hosts, cidrs = by_version[version]
            cidr_set = _set_name(group_id, version, cidrs=True)
            if bool(cidrs) != (cidr_set in ruleset.members):
                return None
            result[_set_name(group_id, version)] = frozenset(hosts)
            if cidrs:
                result[cidr_set] = frozenset(cidrs)
    return result


def build(table: str, ports: Iterable[DeviceDetails]) -> Ruleset:
    """The ruleset of ``ports`` (the filtered ones); with none, its script only deletes
    the tables."""
    chosen = sorted((d for d in ports if filtered(d)), key=lambda d: d.port.id)
    out = []
    for family in FAMILIES:
        # Declaring first makes the delete succeed whether or not the table exists.
        out.append(f"table {family} {table} {{}}\ndelete table {family} {table}\n")
    if not chosen:
        return Ruleset(table, "".join(out), "", (), {})

    spoof_map: list[str] = []
    # Per statefulness (True: stateful), "<bridge> . <mac>" → the port's chain.
    egress_map: dict[bool, dict[str, str]] = {True: {}, False: {}}
    ingress_map: dict[bool, dict[str, str]] = {True: {}, False: {}}
    bridge_chains, inet_chains = [], []
    remote: dict[str, set[str]] = {}
    for details in chosen:
        for group in details.security_groups:
            for rule in group.rules:
                if rule.remote_group_id:
                    remote.setdefault(rule.remote_group_id, set()).update(
                        details.remote_group_members.get(rule.remote_group_id, []))
    sets: list[tuple[str, str, bool, list[str]]] = []
    for group_id in sorted(remote):
        for version, kind in ((4, "ipv4_addr"), (6, "ipv6_addr")):
            hosts, cidrs = _members(remote[group_id], version)
            sets.append((_set_name(group_id, version), kind, False, hosts))
            if cidrs:
                sets.append((_set_name(group_id, version, cidrs=True), kind, True, cidrs))
    cidr_sets = frozenset(name for name, _, interval, _ in sets if interval)
    for details in chosen:
        port, key = details.port, _key(details.port.id)
        spoof_map.append(f"{_quoted(tap_name(port.id))} : jump spoof-{key}")
        bridge_chains.append(_chain(f"spoof-{key}", _spoof_chain(details)))
        ingress, egress = _port_chains(details, cidr_sets)
        inet_chains.append(_chain(f"in-{key}", ingress))
        inet_chains.append(_chain(f"out-{key}", egress))
        bridge = _quoted(bridge_name(port.network_id))
        stateful = not stateless(details)
        for mac in _addresses(details).macs:
            # A MAC two ports claim (one's address pair) stays with the first.
            element = f"{bridge} . {mac}"
            if all(element not in egress_map[s] for s in (True, False)):
                egress_map[stateful][element] = f"jump out-{key}"
                ingress_map[stateful][element] = f"jump in-{key}"

    out.append(f"table bridge {table} {{\n")
    out.append(_chain("prerouting", ["type filter hook prerouting priority filter; "
                                     "policy accept;",
                                     f"iifname vmap {_elements(spoof_map)}"]))
    out.extend(bridge_chains)
    out.append("}\n")
    out.append(f"table inet {table} {{\n")
    tail = []
    forward = ["type filter hook forward priority filter; policy accept;"]
    # Stateless ports first: established traffic is no excuse for them.
    for stateful in (False, True):
        if stateful:
            forward.append("ct state established,related accept")
        for match, chains in (("iifname . ether saddr", egress_map[stateful]),
                              ("oifname . ether daddr", ingress_map[stateful])):
            if chains:
                forward.append(f"{match} vmap "
                               + _elements(f"{k} : {v}" for k, v in chains.items()))
    tail.append(_chain("forward", forward))
    tail.extend(inet_chains)
    tail.append("}\n")
    head = "".join(out)
    rest = "".join(tail)
    ruleset = Ruleset(table, head, rest, tuple((n, k, i) for n, k, i, _ in sets),
                      {n: frozenset(m) for n, _, _, m in sets})
    # Rendered now, from the members already in order.
    ruleset.__dict__["script"] = (head + "".join(_set(n, k, i, m) for n, k, i, m in sets)
                                  + rest)
    return ruleset


def render(table: str, ports: Iterable[DeviceDetails]) -> str:
    """The nft script that replaces our two tables with the ruleset of ``ports`` (the
    filtered ones); with none, it only deletes the tables."""
    return build(table, ports).script


def _members_gone(old: Ruleset | None, new: Ruleset) -> set[str] | None:
    """The addresses that left the remote groups' sets from ``old`` to ``new`` (of one
    shape); None when CIDRs did (a connection's peer may be in a narrower one)."""
    if old is None:
        return None
    gone: set[str] = set()
    for name, members in new.members.items():
        before = old.members.get(name, frozenset())
        if before is members:
            continue
        if left := before - members:
            if name.startswith("rn"):
                return None
            gone |= left
    return gone


def _same_but_members(old: DeviceDetails, new: DeviceDetails) -> bool:
    """Whether the port differs at most by its remote groups' members."""
    return (old.port == new.port and old.network == new.network
            and old.security_groups == new.security_groups
            and old.remote_group_members.keys() == new.remote_group_members.keys())


def admits_no_less(old: DeviceDetails, new: DeviceDetails) -> bool:
    """Whether ``new`` differs from ``old`` only by remote groups that gained members:
    then every connection the old rules admitted the new ones admit too."""
    if (old.model_copy(update={"remote_group_members": {}})
            != new.model_copy(update={"remote_group_members": {}})):
        return False
    return all(set(members) <= set(new.remote_group_members.get(group, ()))
               for group, members in old.remote_group_members.items())


# The driver ---------------------------------------------------------------------------------


@dataclass
class NftablesFirewall:
    """Keeps the filtered ports of this agent and applies their ruleset atomically."""

    table: str = DEFAULT_TABLE
    nft: str = "nft"
    ports: dict[str, DeviceDetails] = field(default_factory=dict)
    name: str = "nftables"

    def __post_init__(self) -> None:
        self._lock = asyncio.Lock()
        #: Each port as last applied: a port whose rules changed has its stale
        #: connections forgotten (``flows``).
        self._applied: dict[str, DeviceDetails] = {}
        #: The ruleset in force, as this driver made it (None: not known, replace it).
        self._ruleset: Ruleset | None = None
        self._forgetting: set[asyncio.Task[None]] = set()
        self._runner = runner(self.nft)
        #: Since the last apply: a port came, went or changed more than its remote
        #: groups' members (the tables are rendered again), and the groups whose members
        #: may have changed (else only their sets are worked out again).
        self._reshaped = True
        self._members_changed: set[str] = set()

    def available(self) -> bool:
        return self._runner is not None

    @property
    def runner(self) -> str:
        """What applies the rulesets: ``libnftables`` (in this process) or ``nft``."""
        return self._runner.name if self._runner is not None else "none"

    def set_port(self, details: DeviceDetails) -> None:
        old = self.ports.get(details.port.id)
        self.ports[details.port.id] = details
        if old is None or not _same_but_members(old, details):
            self._reshaped = True
            return
        before, after = old.remote_group_members, details.remote_group_members
        if before is not after:
            self._members_changed.update(g for g in before.keys() | after.keys()
                                         if before.get(g) != after.get(g))

    def remove_port(self, port_id: str) -> bool:
        if self.ports.pop(port_id, None) is None:
            return False
        self._reshaped = True
        return True

    def _next_ruleset(self) -> Ruleset:
        """The ruleset of the current ports: the one in force with new members when only
        members changed (no rendering of the ports' chains, only the changed groups'
        members gathered again), else built whole."""
        if not self._reshaped and self._ruleset is not None:
            members = member_sets(self._ruleset, self.ports.values(), self._members_changed)
            if members is not None:
                return self._ruleset.with_members(members)
        return build(self.table, self.ports.values())

    def render(self) -> str:
        return render(self.table, self.ports.values())

    async def apply(self) -> None:
        """Bring our tables to the current ports' ruleset in one nft transaction: only the
        sets' elements that changed when nothing else did (members of remote groups come
        and go with every port created in them), else the whole tables replaced."""
        async with self._lock:
            members_only = not self._reshaped and self._ruleset is not None
            ruleset = self._next_ruleset()
            self._reshaped, self._members_changed = False, set()
            old = self._ruleset
            update = ruleset.update_from(old)
            try:
                if update is None:
                    await self._run(ruleset.script)
                elif update:
                    try:
                        await self._run(update)
                    except FirewallError as exc:  # not as we left it (or refused): replace
                        LOG.warning("firewall: set update failed (%s); replacing the tables",
                                    exc)
                        self._ruleset = None
                        await self._run(ruleset.script)
            except BaseException:
                # What is in force is not known: the next apply replaces the tables.
                self._ruleset = None
                self._reshaped = True
                raise
            self._ruleset = ruleset
            changed = [d for port_id, d in self.ports.items()
                       if port_id in self._applied and self._applied[port_id] != d
                       and not admits_no_less(self._applied[port_id], d)]
            self._applied = dict(self.ports)
            if changed:
                peers = _members_gone(old, ruleset) if members_only else None
                # After the answer: the rules are in force now, the table walk may be slow.
                task = asyncio.create_task(self._forget(changed, peers))
                self._forgetting.add(task)
                task.add_done_callback(self._forgetting.discard)

    async def _forget(self, changed: list[DeviceDetails], peers: set[str] | None) -> None:
        try:
            forgotten = await asyncio.to_thread(flows.forget_stale, changed, peers)
        except Exception:  # the rules hold for new connections all the same
            LOG.exception("firewall: stale connections could not be forgotten")
            return
        if forgotten:
            LOG.info("firewall: %d connections no rule admits any more forgotten", forgotten)

    async def settled(self) -> None:
        """Wait for the stale connections of earlier applies to be forgotten."""
        while self._forgetting:
            await asyncio.gather(*self._forgetting, return_exceptions=True)

    async def clear(self) -> None:
        """Delete our tables (nothing of ours is left)."""
        async with self._lock:
            self.ports.clear()
            self._applied.clear()
            self._ruleset = None
            self._reshaped = True
            await self._run(render(self.table, []))

    async def _run(self, script: str) -> str:
        if self._runner is None:
            raise FirewallError(f"neither libnftables nor {self.nft} is available")
        try:
            return await self._runner.run(script)
        except NftError as exc:
            raise FirewallError(str(exc)) from exc


@dataclass
class NoopFirewall:
    """No filtering at all (the agent runs without nft, or is told not to filter): said once
    on start-up; ports then accept everything, as with port security off."""

    ports: dict[str, DeviceDetails] = field(default_factory=dict)
    name: str = "noop"

    def set_port(self, details: DeviceDetails) -> None:
        self.ports[details.port.id] = details

    def remove_port(self, port_id: str) -> bool:
        return self.ports.pop(port_id, None) is not None

    async def apply(self) -> None:
        return None

    async def clear(self) -> None:
        self.ports.clear()


Firewall = NftablesFirewall | NoopFirewall
