"""Connections a changed ruleset no longer admits, forgotten by conntrack.

The firewall accepts established traffic before any rule (that is what makes it stateful),
so a connection opened while a rule allowed it would outlive the rule's removal. After a
port's rules change, each tracked connection into or out of the port is checked against
the port's new rules here; those no rule admits any more are deleted from the conntrack
table, so their next packet meets the rules again and is dropped. Connections still
admitted are left alone (deleting them would let their next packet, perhaps the server's,
be judged as a new connection in the wrong direction)."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable
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


def _addresses(details: DeviceDetails) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    port = details.port
    values = [ip.ip_address for ip in port.fixed_ips]
    values += [pair.ip_address for pair in port.allowed_address_pairs]
    return [ipaddress.ip_network(v, strict=False) for v in values]


def _within(address: str, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
            ) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip.version == n.version and ip in n for n in networks)


def _rule_admits(rule: SecurityGroupRuleInfo, flow: Flow, peer: str,
                 members: dict[str, list[str]]) -> bool:
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
        return _within(peer, [ipaddress.ip_network(rule.remote_ip_prefix, strict=False)])
    if rule.remote_group_id:
        group = members.get(rule.remote_group_id, [])
        return _within(peer, [ipaddress.ip_network(a, strict=False) for a in group])
    return True


def _always(flow: Flow, ingress: bool) -> bool:
    """What passes whatever the rules say: DHCP and metadata."""
    if flow.proto == 17 and (flow.sport, flow.dport) in ((67, 68), (68, 67), (547, 546),
                                                         (546, 547)):
        return True
    return not ingress and flow.daddr == METADATA_ADDRESS and flow.dport == 80


def admitted(details: DeviceDetails, flow: Flow) -> bool:
    """Whether the port's rules admit ``flow`` (True for flows not the port's)."""
    addresses = _addresses(details)
    into, out_of = _within(flow.daddr, addresses), _within(flow.saddr, addresses)
    rules = [r for g in details.security_groups for r in g.rules]
    for ingress, mine, peer in ((True, into, flow.saddr), (False, out_of, flow.daddr)):
        if not mine or _always(flow, ingress):
            continue
        direction = "ingress" if ingress else "egress"
        if not any(_rule_admits(r, flow, peer, details.remote_group_members)
                   for r in rules if r.direction == direction):
            return False
    return True


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


def _read_table() -> list[Flow]:
    try:
        with open(CONNTRACK_TABLE) as table:
            lines = table.readlines()
    except FileNotFoundError:
        LOG.warning("firewall: %s is missing; connections outlive their rules",
                    CONNTRACK_TABLE)
        return []
    return [flow for flow in map(_parse, lines) if flow is not None]


def forget_stale(ports: list[DeviceDetails]) -> int:
    """Delete the tracked connections of ``ports`` their rules no longer admit; how many.
    Blocking (a file read and netlink): run it in a worker thread."""
    stale = [flow for flow in _read_table()
             if not all(admitted(details, flow) for details in ports)]
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
