"""A port's ``allowed_address_pairs``: checked as Neutron checks them, and stored.

Each pair lets the port send from ``ip_address`` (an address or a CIDR) with
``mac_address`` (the port's own when not given); the l2-agent's firewall lets that traffic
through its anti-spoofing and counts the addresses as the port's for remote groups."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.network.errors import (
    AllowedAddressPairExhausted,
    AllowedAddressPairsMissingIP,
    DuplicateAddressPairInRequest,
    InvalidInput,
)
from stratus.network.models import PortAllowedAddressPair

#: Neutron's default ``max_allowed_address_pair``.
MAX_PAIRS = 10


@dataclass(frozen=True)
class AddressPairRequest:
    ip_address: str
    #: None: the port's MAC.
    mac_address: str | None = None


def parse(value: Any) -> tuple[AddressPairRequest, ...]:
    """The pairs of a request body's ``allowed_address_pairs`` (400s as Neutron's)."""
    if not isinstance(value, list):
        raise InvalidInput("Allowed address pairs must be a list.")
    if len(value) > MAX_PAIRS:
        raise AllowedAddressPairExhausted(MAX_PAIRS)
    pairs = []
    for entry in value:
        if not isinstance(entry, dict):
            raise InvalidInput(f"'{entry}' is not a dictionary")
        unknown = sorted(set(entry) - {"ip_address", "mac_address"})
        if unknown:
            raise InvalidInput(f"Unrecognized attribute(s) '{', '.join(unknown)}'")
        if "ip_address" not in entry:
            raise AllowedAddressPairsMissingIP()
        address = entry["ip_address"]
        mac = entry.get("mac_address")
        if mac is not None and not isinstance(mac, str):
            raise InvalidInput(f"'{mac}' is not a valid MAC address")
        pairs.append(AddressPairRequest(_address(address), mac))
    return tuple(pairs)


def _address(value: Any) -> str:
    text = str(value)
    try:
        if "/" in text:
            network = ipaddress.ip_network(text, strict=False)
            if str(network.network_address) != text.split("/")[0]:
                raise InvalidInput(f"'{text}' isn't a recognized IP subnet cidr, "
                                   f"'{network}' is recommended")
            return str(network)
        return str(ipaddress.ip_address(text))
    except ValueError as exc:
        what = "subnet" if "/" in text else "IP address"
        raise InvalidInput(f"'{text}' is not a valid {what}") from exc


def resolve(pairs: Sequence[AddressPairRequest], port_mac: str,
            normalise_mac: Any) -> list[tuple[str, str]]:
    """(mac, ip) of each pair, the port's MAC where none was given; duplicates refused."""
    seen: set[tuple[str, str]] = set()
    resolved = []
    for pair in pairs:
        mac = port_mac if pair.mac_address is None else normalise_mac(pair.mac_address)
        key = (mac, pair.ip_address)
        if key in seen:
            raise DuplicateAddressPairInRequest(mac, pair.ip_address)
        seen.add(key)
        resolved.append(key)
    return resolved


async def replace(session: AsyncSession, port_id: str,
                  pairs: Sequence[tuple[str, str]]) -> None:
    """Make the port's pairs exactly ``pairs`` (in that order)."""
    await session.execute(delete(PortAllowedAddressPair).where(
        PortAllowedAddressPair.port_id == port_id))
    for position, (mac, ip) in enumerate(pairs):
        session.add(PortAllowedAddressPair(port_id=port_id, mac_address=mac, ip_address=ip,
                                           position=position))
