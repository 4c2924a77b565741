"""The network service's tables (all prefixed ``network_``). No other service reads them.

Uniqueness the API promises is kept by the database itself: one address per (subnet,
address) in ``network_ip_allocations``, one MAC per network in ``network_ports``, one
``default`` security group per project in ``network_default_security_groups``, one rule of a
given shape per group (``fingerprint``), one agent per (type, host).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, query_expression, relationship

from stratus.core.db import utcnow
from stratus.core.db.columns import TYPE_MAP, Created, IdentityId, Name, UUIDKey


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class _Standard:
    """Neutron's standard attributes, which every top-level resource has: its id, owner,
    description, revision and timestamps."""

    id: Mapped[UUIDKey]
    project_id: Mapped[IdentityId] = mapped_column(index=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    revision_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[Created]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Network(_Standard, Base):
    __tablename__ = "network_networks"

    name: Mapped[Name] = mapped_column(default="", index=True)
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    shared: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    router_external: Mapped[bool] = mapped_column(Boolean, default=False)
    port_security_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    mtu: Mapped[int] = mapped_column(Integer, default=1500)
    network_type: Mapped[str] = mapped_column(String(32), default="flat")
    physical_network: Mapped[str | None] = mapped_column(String(64))
    segmentation_id: Mapped[int | None] = mapped_column(Integer)
    availability_zone_hints: Mapped[list[str]] = mapped_column(default=list)
    tags: Mapped[list[str]] = mapped_column(default=list)

    subnets: Mapped[list[Subnet]] = relationship(
        back_populates="network", lazy="selectin", order_by="Subnet.created_at",
        cascade="all, delete-orphan", passive_deletes=True)


class SubnetPool(_Standard, Base):
    """A set of prefixes subnets take their CIDRs from (``subnet_allocation``); the
    subnets allocated from it name it (``Subnet.subnetpool_id``)."""

    __tablename__ = "network_subnetpools"

    name: Mapped[Name] = mapped_column(default="")
    ip_version: Mapped[int] = mapped_column(Integer, default=4)
    prefixes: Mapped[list[str]] = mapped_column(default=list)
    min_prefixlen: Mapped[int] = mapped_column(Integer)
    max_prefixlen: Mapped[int] = mapped_column(Integer)
    default_prefixlen: Mapped[int] = mapped_column(Integer)
    shared: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    default_quota: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[list[str]] = mapped_column(default=list)


class Subnet(_Standard, Base):
    __tablename__ = "network_subnets"

    network_id: Mapped[str] = mapped_column(
        ForeignKey("network_networks.id", ondelete="CASCADE"), index=True)
    name: Mapped[Name] = mapped_column(default="")
    ip_version: Mapped[int] = mapped_column(Integer, default=4)
    cidr: Mapped[str] = mapped_column(String(64))
    gateway_ip: Mapped[str | None] = mapped_column(String(64))
    enable_dhcp: Mapped[bool] = mapped_column(Boolean, default=True)
    dns_nameservers: Mapped[list[str]] = mapped_column(default=list)
    host_routes: Mapped[list[dict[str, str]]] = mapped_column(default=list)
    allocation_pools: Mapped[list[dict[str, str]]] = mapped_column(default=list)
    tags: Mapped[list[str]] = mapped_column(default=list)
    #: The subnet pool its CIDR came from, if any (a pool in use cannot be deleted).
    subnetpool_id: Mapped[str | None] = mapped_column(
        ForeignKey("network_subnetpools.id"), index=True)

    network: Mapped[Network] = relationship(back_populates="subnets", lazy="raise")


class Port(_Standard, Base):
    __tablename__ = "network_ports"
    __table_args__ = (UniqueConstraint("network_id", "mac_address",
                                       name="uq_network_ports_network_mac"),
                      # The lists' own order (creation, then id): a page is a range of it.
                      Index("ix_network_ports_created", "created_at", "id"))

    network_id: Mapped[str] = mapped_column(
        ForeignKey("network_networks.id", ondelete="CASCADE"), index=True)
    name: Mapped[Name] = mapped_column(default="")
    mac_address: Mapped[str] = mapped_column(String(32))
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="DOWN")
    device_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    device_owner: Mapped[str] = mapped_column(String(255), default="", index=True)
    binding_host_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    binding_vnic_type: Mapped[str] = mapped_column(String(32), default="normal")
    binding_profile: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dns_name: Mapped[Name] = mapped_column(default="")
    port_security_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    tags: Mapped[list[str]] = mapped_column(default=list)

    fixed_ips: Mapped[list[IPAllocation]] = relationship(
        lazy="selectin", order_by="IPAllocation.position", cascade="all, delete-orphan",
        passive_deletes=True)
    security_groups: Mapped[list[PortSecurityGroup]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", passive_deletes=True)
    allowed_address_pairs: Mapped[list[PortAllowedAddressPair]] = relationship(
        lazy="selectin", order_by="PortAllowedAddressPair.position",
        cascade="all, delete-orphan", passive_deletes=True)
    #: The port's security group ids joined by commas, when a list asks for them with its
    #: page (``with_expression``; ``stratus.network.ports``): no column of the table.
    listed_group_ids: Mapped[str | None] = query_expression()


class IPAllocation(Base):
    """One address held by one port; the primary key makes a double allocation impossible."""

    __tablename__ = "network_ip_allocations"

    subnet_id: Mapped[str] = mapped_column(
        ForeignKey("network_subnets.id", ondelete="CASCADE"), primary_key=True)
    #: Indexed alone too: who holds these addresses (the l2-agents' member questions) is
    #: asked without the subnet.
    ip_address: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    port_id: Mapped[str] = mapped_column(
        ForeignKey("network_ports.id", ondelete="CASCADE"), index=True)
    network_id: Mapped[str] = mapped_column(String(36), index=True)
    #: Order of the address in the port's ``fixed_ips``.
    position: Mapped[int] = mapped_column(Integer, default=0)


class SecurityGroup(_Standard, Base):
    __tablename__ = "network_security_groups"

    name: Mapped[Name] = mapped_column(default="", index=True)
    stateful: Mapped[bool] = mapped_column(Boolean, default=True)
    tags: Mapped[list[str]] = mapped_column(default=list)

    rules: Mapped[list[SecurityGroupRule]] = relationship(
        lazy="selectin", order_by="SecurityGroupRule.created_at", cascade="all, delete-orphan",
        passive_deletes=True)


class DefaultSecurityGroup(Base):
    """Which group is a project's ``default``: one row per project, so two first requests
    racing each other end with one default group."""

    __tablename__ = "network_default_security_groups"

    project_id: Mapped[IdentityId] = mapped_column(primary_key=True)
    security_group_id: Mapped[str] = mapped_column(
        ForeignKey("network_security_groups.id", ondelete="CASCADE"))


class SecurityGroupRule(_Standard, Base):
    __tablename__ = "network_security_group_rules"
    __table_args__ = (UniqueConstraint("security_group_id", "fingerprint",
                                       name="uq_network_sg_rules_fingerprint"),)

    security_group_id: Mapped[str] = mapped_column(
        ForeignKey("network_security_groups.id", ondelete="CASCADE"), index=True)
    direction: Mapped[str] = mapped_column(String(16))
    ethertype: Mapped[str] = mapped_column(String(8), default="IPv4")
    protocol: Mapped[str | None] = mapped_column(String(40))
    port_range_min: Mapped[int | None] = mapped_column(Integer)
    port_range_max: Mapped[int | None] = mapped_column(Integer)
    remote_ip_prefix: Mapped[str | None] = mapped_column(String(64))
    remote_group_id: Mapped[str | None] = mapped_column(String(36))
    #: The rule's shape as one string: the same shape twice in a group is a duplicate (SQL
    #: NULLs never compare equal, so a unique key over the nullable columns would not do).
    fingerprint: Mapped[str] = mapped_column(String(512))


class PortSecurityGroup(Base):
    __tablename__ = "network_port_security_groups"

    port_id: Mapped[str] = mapped_column(
        ForeignKey("network_ports.id", ondelete="CASCADE"), primary_key=True)
    security_group_id: Mapped[str] = mapped_column(
        ForeignKey("network_security_groups.id", ondelete="RESTRICT"), primary_key=True,
        index=True)


class PortAllowedAddressPair(Base):
    """An ``allowed_address_pairs`` entry of a port: the firewall lets the port send from
    ``ip_address`` (an address or a CIDR) with ``mac_address``."""

    __tablename__ = "network_port_allowed_address_pairs"

    port_id: Mapped[str] = mapped_column(
        ForeignKey("network_ports.id", ondelete="CASCADE"), primary_key=True)
    mac_address: Mapped[str] = mapped_column(String(32), primary_key=True)
    ip_address: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    #: Order of the pair in the port's ``allowed_address_pairs``.
    position: Mapped[int] = mapped_column(Integer, default=0)


class Agent(Base):
    """An agent as its heartbeats describe it (``network agent list``)."""

    __tablename__ = "network_agents"
    __table_args__ = (UniqueConstraint("agent_type", "host", name="uq_network_agents_type_host"),)

    id: Mapped[UUIDKey]
    agent_type: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255), index=True)
    availability_zone: Mapped[str | None] = mapped_column(String(255))
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    configurations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[Created]
    started_at: Mapped[Created]
    heartbeat_timestamp: Mapped[Created]


class Quota(Base):
    """A project's limit on one resource, where it differs from the configured default."""

    __tablename__ = "network_quotas"

    project_id: Mapped[IdentityId] = mapped_column(primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


# Routers and floating IPs (the L3 service) ------------------------------------------------


class Router(_Standard, Base):
    """A router. Its legs are ports: the gateway (``gw_port_id``, on an external network)
    and its interfaces (``device_owner`` ``network:router_interface``, ``device_id`` the
    router). ``l3_agent_host``: the l3-agent it is scheduled to ('' until it needs one)."""

    __tablename__ = "network_routers"

    name: Mapped[Name] = mapped_column(default="", index=True)
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    enable_snat: Mapped[bool] = mapped_column(Boolean, default=True)
    gw_port_id: Mapped[str | None] = mapped_column(
        ForeignKey("network_ports.id", ondelete="SET NULL"), index=True)
    l3_agent_host: Mapped[str] = mapped_column(String(255), default="", index=True)
    availability_zone_hints: Mapped[list[str]] = mapped_column(default=list)
    tags: Mapped[list[str]] = mapped_column(default=list)

    routes: Mapped[list[RouterRoute]] = relationship(
        lazy="selectin", order_by="RouterRoute.position", cascade="all, delete-orphan",
        passive_deletes=True)


class RouterRoute(Base):
    """One of a router's extra routes (``extraroute``)."""

    __tablename__ = "network_router_routes"

    router_id: Mapped[str] = mapped_column(
        ForeignKey("network_routers.id", ondelete="CASCADE"), primary_key=True)
    destination: Mapped[str] = mapped_column(String(64), primary_key=True)
    nexthop: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Order of the route in the router's ``routes``.
    position: Mapped[int] = mapped_column(Integer, default=0)


class FloatingIP(_Standard, Base):
    """A floating IP: an address held by a ``network:floatingip`` port on an external
    network, associated (or not) with a fixed IP of another port through ``router_id``.
    The unique key keeps one floating IP per fixed IP and external network."""

    __tablename__ = "network_floatingips"
    __table_args__ = (UniqueConstraint("floating_network_id", "fixed_port_id",
                                       "fixed_ip_address", name="uq_network_floatingips_fixed"),)

    floating_ip_address: Mapped[str] = mapped_column(String(64), index=True)
    floating_network_id: Mapped[str] = mapped_column(
        ForeignKey("network_networks.id"), index=True)
    floating_port_id: Mapped[str] = mapped_column(
        ForeignKey("network_ports.id", ondelete="CASCADE"), unique=True)
    fixed_port_id: Mapped[str | None] = mapped_column(
        ForeignKey("network_ports.id", ondelete="SET NULL"), index=True)
    fixed_ip_address: Mapped[str | None] = mapped_column(String(64))
    router_id: Mapped[str | None] = mapped_column(
        ForeignKey("network_routers.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="DOWN")
    tags: Mapped[list[str]] = mapped_column(default=list)
