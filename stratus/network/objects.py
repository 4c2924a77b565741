"""What the network server and its agents send each other over the bus (validated on receipt).

The agents never read the network database: the server hands them ``NetworkInfo`` and
``PortInfo`` snapshots, and they report back through ``NetworkServerAPI``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: ``device_owner`` of the port a DHCP agent holds on each network it serves.
DHCP_DEVICE_OWNER = "network:dhcp"
#: ``device_owner`` prefix of ports that belong to servers (``compute:<zone>``).
COMPUTE_DEVICE_OWNER_PREFIX = "compute:"
#: ``agent_type`` of the l2-agent (Neutron's name); its reports carry the host's tunnel IP.
L2_AGENT_TYPE = "Linux bridge agent"
#: The metadata address every guest reaches through its network's DHCP namespace.
METADATA_ADDRESS = "169.254.169.254"


def tap_name(port_id: str) -> str:
    """The host-side device of a port: ``tap`` + the first 11 characters of its id (as
    Neutron and Nova name it, within the kernel's 15-character limit)."""
    return f"tap{port_id[:11]}"


def bridge_name(network_id: str) -> str:
    """The Linux bridge of a network on every host: ``brq`` + the first 11 of its id."""
    return f"brq{network_id[:11]}"


def dhcp_namespace(network_id: str) -> str:
    return f"qdhcp-{network_id}"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FixedIP(_Message):
    subnet_id: str
    ip_address: str


class HostRoute(_Message):
    destination: str
    nexthop: str


class AllocationPool(_Message):
    start: str
    end: str


class SubnetInfo(_Message):
    id: str
    network_id: str
    name: str = ""
    cidr: str
    ip_version: int = 4
    gateway_ip: str | None = None
    enable_dhcp: bool = True
    dns_nameservers: list[str] = Field(default_factory=list)
    host_routes: list[HostRoute] = Field(default_factory=list)
    allocation_pools: list[AllocationPool] = Field(default_factory=list)


# Security groups, as the l2-agent's firewall needs them ----------------------------------


class AddressPair(_Message):
    """An ``allowed_address_pairs`` entry: traffic from ``ip_address`` (an address or a
    CIDR) with ``mac_address`` is the port's own."""

    ip_address: str
    mac_address: str


class SecurityGroupRuleInfo(_Message):
    """One rule as written (protocol normalised to its name or number string)."""

    id: str
    direction: str
    ethertype: str = "IPv4"
    protocol: str | None = None
    port_range_min: int | None = None
    port_range_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None


class SecurityGroupInfo(_Message):
    id: str
    stateful: bool = True
    rules: list[SecurityGroupRuleInfo] = Field(default_factory=list)


# Networks and ports -------------------------------------------------------------------------


class PortInfo(_Message):
    id: str
    network_id: str
    project_id: str
    mac_address: str
    fixed_ips: list[FixedIP] = Field(default_factory=list)
    device_id: str = ""
    device_owner: str = ""
    admin_state_up: bool = True
    #: ``binding:host_id``: the host whose l2-agent plugs the port ('' while unbound).
    binding_host_id: str = ""
    #: Hostname handed out by DHCP (Neutron's ``dns_name`` / ``host-<ip>`` when empty).
    hostname: str = ""
    status: str = "DOWN"
    #: Port security (the firewall filters the port only when on).
    port_security_enabled: bool = True
    security_group_ids: list[str] = Field(default_factory=list)
    allowed_address_pairs: list[AddressPair] = Field(default_factory=list)


class NetworkInfo(_Message):
    """A network as an agent needs it: segment, subnets and (for DHCP) its ports."""

    id: str
    project_id: str
    name: str = ""
    admin_state_up: bool = True
    mtu: int = 1500
    #: ``flat`` (one host's bridge, no tagging) or ``vxlan`` (bridges joined across hosts).
    network_type: str = "flat"
    segmentation_id: int | None = None
    physical_network: str | None = None
    subnets: list[SubnetInfo] = Field(default_factory=list)
    ports: list[PortInfo] = Field(default_factory=list)


class DeviceDetails(_Message):
    """What an l2-agent needs to wire one port: the port and its network's segment, and
    for its firewall the port's groups with their rules and the members (addresses and
    CIDRs) of every group those rules name as ``remote_group_id``."""

    port: PortInfo
    network: NetworkInfo
    security_groups: list[SecurityGroupInfo] = Field(default_factory=list)
    remote_group_members: dict[str, list[str]] = Field(default_factory=dict)


class SecurityGroupsSnapshot(_Message):
    """Security groups with their rules as written, and the members (addresses and CIDRs)
    of every group those rules name as ``remote_group_id``: what an l2-agent fetches again
    when only groups changed (a rule; a member joining or leaving is asked about alone,
    ``get_group_members``), once for all of its ports that use them (``security_details``
    makes each port's part of it)."""

    security_groups: list[SecurityGroupInfo] = Field(default_factory=list)
    remote_group_members: dict[str, list[str]] = Field(default_factory=dict)


def security_details(details: DeviceDetails, groups: SecurityGroupsSnapshot) -> DeviceDetails:
    """``details`` with its port's groups and their remote groups' members taken from
    ``groups`` (a snapshot of at least the port's groups): what ``get_device_details``
    would now answer for a port whose own state is unchanged."""
    own = set(details.port.security_group_ids)
    infos = [g for g in groups.security_groups if g.id in own]
    remote = sorted({r.remote_group_id for g in infos for r in g.rules if r.remote_group_id})
    members = {g: list(groups.remote_group_members.get(g, [])) for g in remote}
    update = {"security_groups": infos, "remote_group_members": members}
    return details.model_copy(update=update)


class AgentState(_Message):
    """An agent's heartbeat; the server lists agents from these (``network agent list``)."""

    host: str
    #: ``stratus-dhcp-agent``, ``stratus-l2-agent``, ``stratus-metadata-proxy``.
    binary: str
    #: Neutron's names: ``DHCP agent``, ``Linux bridge agent``, ``Metadata agent``.
    agent_type: str
    topic: str
    availability_zone: str | None = None
    configurations: dict[str, Any] = Field(default_factory=dict)
    #: True on the agent's first report after it starts (the server may resync it).
    start_flag: bool = False


# VXLAN forwarding entries (l2population) ----------------------------------------------------
#
# What the network server tells the l2-agents about where each vxlan network's ports are
# (``stratus.network.l2pop``): per network, each tunnel endpoint with the MACs behind it.

#: The all-zero MAC of a flood entry: broadcast and unknown unicast go to that endpoint.
FLOOD_MAC = "00:00:00:00:00:00"


class FdbNetwork(_Message):
    """One vxlan network's entries: tunnel IP → the MACs reached through it (``FLOOD_MAC``
    among them when that endpoint is to get the network's floods)."""

    segmentation_id: int
    endpoints: dict[str, list[str]] = Field(default_factory=dict)


class FdbEntries(_Message):
    """Entries of several networks (network id → its entries)."""

    networks: dict[str, FdbNetwork] = Field(default_factory=dict)


# Routers (L3) -------------------------------------------------------------------------------
#
# What the network server hands the l3-agent (``NetworkServerAPI.get_routers``) and what the
# agent reports back (``update_floatingip_statuses``).

#: ``device_owner`` of a router's leg on an internal network, on its external network, and
#: of a floating IP's port.
ROUTER_INTERFACE_OWNER = "network:router_interface"
ROUTER_GATEWAY_OWNER = "network:router_gateway"
FLOATINGIP_OWNER = "network:floatingip"


def router_namespace(router_id: str) -> str:
    return f"qrouter-{router_id}"


class RouterPort(_Message):
    """One leg of a router (named ``qr-<id[:11]>`` inside, ``qg-<id[:11]>`` for the gateway)."""

    id: str
    mac_address: str
    fixed_ips: list[FixedIP]
    #: The leg's network: segment and subnets (its ``ports`` left empty).
    network: NetworkInfo


class FloatingIPInfo(_Message):
    id: str
    floating_ip_address: str
    fixed_ip_address: str
    port_id: str


class RouterInfo(_Message):
    id: str
    project_id: str
    name: str = ""
    admin_state_up: bool = True
    enable_snat: bool = True
    gateway: RouterPort | None = None
    interfaces: list[RouterPort] = Field(default_factory=list)
    routes: list[HostRoute] = Field(default_factory=list)
    floating_ips: list[FloatingIPInfo] = Field(default_factory=list)


# Provider bridges ---------------------------------------------------------------------------


def network_bridge(network: NetworkInfo, physical_bridges: Mapping[str, str]) -> str:
    """The host bridge of ``network`` on every agent (l2, dhcp, l3 agree through this): a
    ``flat`` network on a physical network that ``network.physical_bridges`` maps uses that
    host bridge (e.g. ``public`` → ``br-ex``); any other network its own ``brq<id[:11]>``."""
    if network.network_type == "flat" and network.physical_network:
        mapped = physical_bridges.get(network.physical_network)
        if mapped:
            return mapped
    return bridge_name(network.id)


def is_provider_bridge(bridge: str, physical_bridges: Mapping[str, str]) -> bool:
    """Whether ``bridge`` is a mapped host bridge: the operator's (or ``stratus up``'s), which
    agents plug into but never remove."""
    return bridge in physical_bridges.values()
