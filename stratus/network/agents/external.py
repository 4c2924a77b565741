"""The host side of the external network ``stratus up`` makes: its bridge (``br-ex``) holding
the external subnet's gateway address, and, on request, a masquerade of that subnet to the
host's uplink (the device of its default route) so guests reach what the host reaches, and
the host reaches floating IPs through the bridge.

The masquerade is one nft table of ours (``ip stratus_ext_<bridge>``), matching only the
external subnet's sources leaving through the uplink; forwarding is turned on for the
bridge and the uplink only (their ``conf/<dev>/forwarding``), and put back as it was by
``remove_external_bridge``. Like :mod:`stratus.network.agents.linux`, everything here acts
on the namespace of the calling thread (tests run it inside a namespace of their own).
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
from dataclasses import dataclass, field
from ipaddress import IPv4Interface

from pyroute2 import IPRoute, NetlinkError

from stratus.network.agents import linux


def nft_table(bridge: str) -> str:
    return "stratus_ext_" + bridge.replace("-", "_")


@dataclass(frozen=True)
class ExternalBridge:
    """What ``ensure_external_bridge`` found or made."""

    bridge: str
    gateway: str
    created_bridge: bool
    added_address: bool
    #: The device masqueraded to (None: no masquerade, asked for or possible).
    uplink: str | None = None
    #: ``conf/<dev>/forwarding`` values before this changed them, to put back.
    forwarding_before: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        made = "made" if self.created_bridge else "found"
        text = f"bridge {self.bridge} ({made}) with {self.gateway} on the host side"
        if self.uplink:
            text += f", masquerading {IPv4Interface(self.gateway).network} to {self.uplink}"
        return text


def default_route_device() -> str | None:
    """The device of this namespace's IPv4 default route (the uplink), if any."""
    with IPRoute() as ipr:
        for route in ipr.get_default_routes(family=2):
            index = route.get("RTA_OIF")
            if index is None:
                multipath = route.get("RTA_MULTIPATH") or []
                index = multipath[0]["oif"] if multipath else None
            if index is not None:
                name = ipr.link("get", index=index)[0].get("IFLA_IFNAME")
                return str(name) if name else None
    return None


def _forwarding(device: str, value: str | None = None) -> str:
    path = f"/proc/sys/net/ipv4/conf/{device}/forwarding"
    with open(path) as handle:
        before = handle.read().strip()
    if value is not None and value != before:
        with open(path, "w") as handle:
            handle.write(value)
    return before


def _nft(script: str, nft: str = "nft") -> None:
    result = subprocess.run([nft, "-f", "-"], input=script, capture_output=True, text=True,
                            timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"nft failed: {result.stderr.strip()}")


def masquerade_ruleset(bridge: str, cidr: str, uplink: str) -> str:
    table = nft_table(bridge)
    return (f"table ip {table} {{}}\ndelete table ip {table}\n"
            f"table ip {table} {{\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f'    ip saddr {cidr} ip daddr != {cidr} oifname "{uplink}" masquerade\n'
            "  }\n}\n")


def ensure_external_bridge(bridge: str, gateway: str, *, masquerade: bool) -> ExternalBridge:
    """Bridge ``bridge`` up with ``gateway`` (``172.24.4.1/24``) on it; with
    ``masquerade``, the subnet masqueraded to the uplink (none without a default route)."""
    interface = IPv4Interface(gateway)
    created = linux.ensure_bridge(bridge)
    added = False
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=bridge)[0]
        present = {(m.get("IFA_ADDRESS"), m["prefixlen"])
                   for m in ipr.get_addr(index=index, family=2)}
        if (str(interface.ip), interface.network.prefixlen) not in present:
            try:
                ipr.addr("add", index=index, address=str(interface.ip),
                         prefixlen=interface.network.prefixlen)
                added = True
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise
    uplink = default_route_device() if masquerade else None
    before: dict[str, str] = {}
    if uplink is not None and uplink != bridge:
        _nft(masquerade_ruleset(bridge, str(interface.network), uplink))
        for device in (bridge, uplink):
            before[device] = _forwarding(device, "1")
    else:
        uplink = None
        _drop_table(bridge)
    return ExternalBridge(bridge, gateway, created, added, uplink, before)


def _drop_table(bridge: str) -> None:
    table = nft_table(bridge)
    with contextlib.suppress(RuntimeError):
        _nft(f"table ip {table} {{}}\ndelete table ip {table}\n")


def remove_external_bridge(made: ExternalBridge) -> None:
    """Undo ``ensure_external_bridge``: the masquerade table, the forwarding switches, the
    address it added, and the bridge when it made it (what is still in it, router legs
    the l3-agent is about to remove, is let go with it)."""
    _drop_table(made.bridge)
    for device, value in made.forwarding_before.items():
        with contextlib.suppress(OSError):
            _forwarding(device, value)
    if made.created_bridge:
        linux.delete_link(made.bridge)
        return
    if made.added_address:
        interface = IPv4Interface(made.gateway)
        with IPRoute() as ipr, contextlib.suppress(NetlinkError, IndexError):
            index = ipr.link_lookup(ifname=made.bridge)[0]
            ipr.addr("del", index=index, address=str(interface.ip),
                     prefixlen=interface.network.prefixlen)
