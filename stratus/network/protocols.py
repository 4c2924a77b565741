"""IP protocols as security group rules name them, and the checks of a rule's protocol and
port range with Neutron's errors. Pure functions: the API's domain and the l2-agent's
firewall read the same table."""

from __future__ import annotations

#: The protocol names Neutron accepts in a rule, and their IP protocol numbers.
PROTOCOL_NUMBERS: dict[str, int] = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1,
    "icmpv6": 58, "igmp": 2, "ip": 0, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44,
    "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89,
    "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}
#: Protocols whose rules may carry a destination port range.
PORT_PROTOCOLS = frozenset({6, 17, 33, 132, 136})
ICMP = 1
ICMPV6 = 58
#: ``protocol`` values that mean "any protocol".
ANY = frozenset({"any", "", "0"})


def known_names() -> list[str]:
    return sorted(PROTOCOL_NUMBERS)


def protocol_number(protocol: str | None, ethertype: str = "IPv4") -> int | None:
    """The IP protocol number of a rule's ``protocol`` (None: any). ``icmp`` in an IPv6
    rule means ICMPv6, as in Neutron."""
    if protocol is None:
        return None
    value = protocol.lower()
    if value in ANY:
        return None
    number = int(value) if value.isdigit() else PROTOCOL_NUMBERS[value]
    if number == ICMP and ethertype == "IPv6":
        return ICMPV6
    return number


def is_valid_protocol(protocol: str) -> bool:
    value = protocol.lower()
    return value in PROTOCOL_NUMBERS or value in ANY or (
        value.isdigit() and 0 <= int(value) <= 255)
