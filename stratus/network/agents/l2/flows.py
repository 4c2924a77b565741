"""Connections a changed ruleset no longer admits, forgotten by conntrack.

The firewall accepts established traffic before any rule (that is what makes it stateful),
so a connection opened while a rule allowed it would outlive the rule's removal. After a
port's rules change, each tracked connection into or out of the port is checked against
the port's new rules here; those no rule admits any more are deleted from the conntrack
table, so their next packet meets the rules again and is dropped. Connections still
admitted are left alone (deleting them would let their next packet, perhaps the server's,
be judged as a new connection in the wrong direction)."""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from pyroute2 import Conntrack
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

from stratus.network import protocols
from stratus.network.objects import METADATA_ADDRESS, DeviceDetails, SecurityGroupRuleInfo

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Flow:
    """A tracked connection as its first packet saw it."""

    version: int
    proto: int
    saddr: str
    daddr: str
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=65536)
def _network(value: str) -> Network:
    return ipaddress.ip_network(value, strict=False)


@functools.lru_cache(maxsize=65536)
def _address(value: str) -> Address:
    return ipaddress.ip_address(value)


class _AddressSet:
    """Addresses and CIDRs, asked whether they hold an address: plain addresses are looked
    up in a set, so a remote group of thousands of members costs one lookup per flow, not
    one comparison per member."""

    def __init__(self, values: Iterable[str]) -> None:
        self.hosts: set[Address] = set()
        self.networks: list[Network] = []
        for value in values:
            network = _network(value)
            if network.num_addresses == 1:
                self.hosts.add(network.network_address)
            else:
                self.networks.append(network)

    def __contains__(self, ip: Address) -> bool:
        return ip in self.hosts or any(ip.version == n.version and ip in n
                                       for n in self.networks)


class _PortRules:
    """One port's addresses, rules and remote groups, prepared once to judge many flows."""

    def __init__(self, details: DeviceDetails) -> None:
        port = details.port
        self.addresses = _AddressSet([*(ip.ip_address for ip in port.fixed_ips),
                                      *(pair.ip_address for pair in port.allowed_address_pairs)])
        rules = [r for g in details.security_groups for r in g.rules]
        self.rules = {direction: [r for r in rules if r.direction == direction]
                      for direction in ("ingress", "egress")}
        self._members = details.remote_group_members
        self._groups: dict[str, _AddressSet] = {}

    def group(self, group_id: str) -> _AddressSet:
        found = self._groups.get(group_id)
        if found is None:
            found = self._groups[group_id] = _AddressSet(self._members.get(group_id, []))
        return found

    def admits(self, flow: Flow) -> bool:
        into = _address(flow.daddr) in self.addresses
        out_of = _address(flow.saddr) in self.addresses
        for ingress, mine, peer in ((True, into, flow.saddr), (False, out_of, flow.daddr)):
            if not mine or _always(flow, ingress):
                continue
            rules = self.rules["ingress" if ingress else "egress"]
            if not any(self._rule_admits(r, flow, _address(peer)) for r in rules):
                return False
        return True

    def _rule_admits(self, rule: SecurityGroupRuleInfo, flow: Flow, peer: Address) -> bool:
        if (rule.ethertype == "IPv6") != (flow.version == 6):
            return False
        number = protocols.protocol_number(rule.protocol, rule.ethertype)
        if number is not None:
            if number != flow.proto:
                return False
            low, high = rule.port_range_min, rule.port_range_max
            if number in protocols.PORT_PROTOCOLS and low is not None:
                top = high if high is not None else low
                if flow.dport is None or not low <= flow.dport <= top:
                    return False
            if number in (protocols.ICMP, protocols.ICMPV6) and low is not None:
                if flow.icmp_type != low or (high is not None and flow.icmp_code != high):
                    return False
        if rule.remote_ip_prefix:
            network = _network(rule.remote_ip_prefix)
            return peer.version == network.version and peer in network
        if rule.remote_group_id:
            return peer in self.group(rule.remote_group_id)
        return True


def _always(flow: Flow, ingress: bool) -> bool:
    """What passes whatever the rules say: DHCP and metadata."""
    if flow.proto == 17 and (flow.sport, flow.dport) in ((67, 68), (68, 67), (547, 546),
                                                         (546, 547)):
        return True
    return not ingress and flow.daddr == METADATA_ADDRESS and flow.dport == 80


def admitted(details: DeviceDetails, flow: Flow) -> bool:
    """Whether the port's rules admit ``flow`` (True for flows not the port's)."""
    return _PortRules(details).admits(flow)


#: The conntrack table as text (``nf_conntrack_procfs``): read in milliseconds, where a
#: netlink dump decoded in Python takes seconds on a busy host.
CONNTRACK_TABLE = "/proc/net/nf_conntrack"


def _parse(line: str) -> Flow | None:
    """The original direction of one line of ``CONNTRACK_TABLE``."""
    fields = line.split()
    if len(fields) < 5 or fields[0] not in ("ipv4", "ipv6"):
        return None
    values: dict[str, str] = {}
    for item in fields[4:]:
        key, sep, value = item.partition("=")
        if sep and key not in values:  # the first of each: the original tuple
            values[key] = value
    if "src" not in values or "dst" not in values:
        return None

    def number(key: str) -> int | None:
        return int(values[key]) if key in values else None

    return Flow(version=4 if fields[0] == "ipv4" else 6, proto=int(fields[3]),
                saddr=values["src"], daddr=values["dst"], sport=number("sport"),
                dport=number("dport"), icmp_type=number("type"), icmp_code=number("code"),
                icmp_id=number("id"))


#: The original tuple's addresses: the first ``src=``/``dst=`` of a line.
_ENDPOINTS = re.compile(r" src=(\S+) dst=(\S+) ")


def _read_table(of: _AddressSet | None = None,
                peers: Collection[str] | None = None) -> list[Flow]:
    """The tracked connections (only those from or to an address of ``of``: on a busy host
    most of the table is other traffic, and a line is matched far faster than parsed; with
    ``peers``, IPv4 addresses, only lines naming one of them, found faster still)."""
    try:
        with open(CONNTRACK_TABLE) as table:
            lines = table.readlines()
    except FileNotFoundError:
        LOG.warning("firewall: %s is missing; connections outlive their rules",
                    CONNTRACK_TABLE)
        return []
    if peers is not None:
        tokens = [f"={peer} " for peer in peers]
        lines = [line for line in lines if any(token in line for token in tokens)]
    if of is not None:
        lines = [line for line in lines if (found := _ENDPOINTS.search(line)) is not None
                 and (_address(found[1]) in of or _address(found[2]) in of)]
    return [flow for flow in map(_parse, lines) if flow is not None]


def _is_v4_host(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).version == 4
    except ValueError:
        return False


def forget_stale(ports: list[DeviceDetails], peers: Collection[str] | None = None) -> int:
    """Delete the tracked connections of ``ports`` their rules no longer admit; how many.
    ``peers``: when only remote groups lost members, those (IPv4) addresses, the only
    other ends whose connections can have lost their admission. Blocking (a file read and
    netlink): run it in a worker thread."""
    if peers is not None and not all(_is_v4_host(p) for p in peers):
        peers = None  # IPv6 is written out in full there, CIDRs not at all: judge all
    judged = [_PortRules(details) for details in ports]
    # A flow none of these ports sends or receives is admitted whatever their rules say.
    theirs = _AddressSet([])
    for port in judged:
        theirs.hosts |= port.addresses.hosts
        theirs.networks += port.addresses.networks
    if peers is not None and not peers:
        return 0
    stale = [flow for flow in _read_table(theirs, peers)
             if not all(port.admits(flow) for port in judged)]
    if not stale:
        return 0
    forgotten = 0
    with Conntrack() as conntrack:
        for flow in stale:
            family = socket.AF_INET if flow.version == 4 else socket.AF_INET6
            if flow.proto in (protocols.ICMP, protocols.ICMPV6):
                orig = NFCTAttrTuple(family=family, saddr=flow.saddr, daddr=flow.daddr,
                                     proto=flow.proto, icmp_id=flow.icmp_id,
                                     icmp_type=flow.icmp_type, icmp_code=flow.icmp_code)
            else:
                orig = NFCTAttrTuple(family=family, saddr=flow.saddr, daddr=flow.daddr,
                                     proto=flow.proto, sport=flow.sport, dport=flow.dport)
            try:
                conntrack.entry("del", tuple_orig=orig)
                forgotten += 1
            except OSError as exc:  # gone meanwhile
                LOG.debug("conntrack entry %s not deleted: %s", flow, exc)
    return forgotten
