"""How the Network v2.0 API shows each resource (Neutron's attribute names and formats)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from stratus.core.policy import Caller
from stratus.network.agent_registry import Agent
from stratus.network.networks import Network
from stratus.network.objects import bridge_name
from stratus.network.ports import Port
from stratus.network.security_groups import SecurityGroup, SecurityGroupRule
from stratus.network.subnetpools import SubnetPool
from stratus.network.subnets import Subnet


def stamp(value: dt.datetime | None) -> str | None:
    """Neutron's timestamps: ``2026-01-01T12:00:00Z``."""
    return None if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _standard(row: Any) -> dict[str, Any]:
    return {"tenant_id": row.project_id, "project_id": row.project_id,
            "description": row.description, "tags": list(row.tags or []),
            "created_at": stamp(row.created_at), "updated_at": stamp(row.updated_at),
            "revision_number": row.revision_number}


def network(net: Network, caller: Caller, zones: list[str] | None = None) -> dict[str, Any]:
    body = {
        "id": net.id, "name": net.name, "admin_state_up": net.admin_state_up,
        "status": net.status, "subnets": [s.id for s in net.subnets], "shared": net.shared,
        "mtu": net.mtu, "router:external": net.router_external,
        "port_security_enabled": net.port_security_enabled,
        "availability_zone_hints": list(net.availability_zone_hints or []),
        "availability_zones": list(zones if zones is not None else ["nova"]),
        "ipv4_address_scope": None, "ipv6_address_scope": None, "l2_adjacency": True,
        "is_default": False, **_standard(net),
    }
    if caller.check("get_network:provider", {"project_id": net.project_id}):
        body.update({"provider:network_type": net.network_type,
                     "provider:physical_network": net.physical_network,
                     "provider:segmentation_id": net.segmentation_id})
    return body


def subnet(s: Subnet, router_external: bool) -> dict[str, Any]:
    """``router_external``: whether the subnet's network is external (the
    ``subnet-external-network`` extension's attribute)."""
    return {
        "id": s.id, "name": s.name, "network_id": s.network_id, "ip_version": s.ip_version,
        "cidr": s.cidr, "gateway_ip": s.gateway_ip,
        "allocation_pools": [dict(p) for p in s.allocation_pools],
        "host_routes": [dict(r) for r in s.host_routes],
        "dns_nameservers": list(s.dns_nameservers), "enable_dhcp": s.enable_dhcp,
        "ipv6_ra_mode": None, "ipv6_address_mode": None, "subnetpool_id": s.subnetpool_id,
        "service_types": [], "segment_id": None, "dns_publish_fixed_ip": False,
        "router:external": router_external,
        **_standard(s),
    }


def subnetpool(pool: SubnetPool) -> dict[str, Any]:
    return {
        "id": pool.id, "name": pool.name, "ip_version": pool.ip_version,
        "prefixes": list(pool.prefixes), "min_prefixlen": pool.min_prefixlen,
        "max_prefixlen": pool.max_prefixlen, "default_prefixlen": pool.default_prefixlen,
        "shared": pool.shared, "is_default": pool.is_default,
        "default_quota": pool.default_quota, "address_scope_id": None,
        **_standard(pool),
    }


def port(p: Port, caller: Caller, bound_vif_type: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": p.id, "name": p.name, "network_id": p.network_id,
        "mac_address": p.mac_address, "admin_state_up": p.admin_state_up,
        "status": p.status, "device_id": p.device_id, "device_owner": p.device_owner,
        "fixed_ips": [{"subnet_id": a.subnet_id, "ip_address": a.ip_address}
                      for a in p.fixed_ips],
        "allowed_address_pairs": [{"ip_address": a.ip_address, "mac_address": a.mac_address}
                                  for a in p.allowed_address_pairs],
        "extra_dhcp_opts": [],
        "security_groups": [g.security_group_id for g in p.security_groups],
        "port_security_enabled": p.port_security_enabled, "dns_name": p.dns_name,
        "ip_allocation": "immediate", **_standard(p),
    }
    if caller.check("get_port:binding", {"project_id": p.project_id}):
        bound = bool(p.binding_host_id)
        vif_type = bound_vif_type if bound else "unbound"
        body.update({
            "binding:host_id": p.binding_host_id,
            "binding:vnic_type": p.binding_vnic_type,
            "binding:profile": dict(p.binding_profile or {}),
            "binding:vif_type": vif_type,
            "binding:vif_details": ({"connectivity": "l2", "port_filter": False,
                                     "bridge_name": bridge_name(p.network_id)}
                                    if vif_type == "bridge" else {}),
        })
    return body


def security_group_rule(r: SecurityGroupRule, default_group: bool) -> dict[str, Any]:
    return {
        "id": r.id, "security_group_id": r.security_group_id, "direction": r.direction,
        "ethertype": r.ethertype, "protocol": r.protocol,
        "port_range_min": r.port_range_min, "port_range_max": r.port_range_max,
        "remote_ip_prefix": r.remote_ip_prefix, "remote_group_id": r.remote_group_id,
        "remote_address_group_id": None,
        "normalized_cidr": r.remote_ip_prefix,
        "belongs_to_default_sg": default_group, **{**_standard_rule(r)},
    }


def _standard_rule(r: SecurityGroupRule) -> dict[str, Any]:
    return {"tenant_id": r.project_id, "project_id": r.project_id,
            "description": r.description, "created_at": stamp(r.created_at),
            "updated_at": stamp(r.updated_at), "revision_number": r.revision_number}


def security_group(g: SecurityGroup, default_group: bool) -> dict[str, Any]:
    return {
        "id": g.id, "name": g.name, "stateful": g.stateful, "shared": False,
        "security_group_rules": [security_group_rule(r, default_group) for r in g.rules],
        **_standard(g),
    }


def agent(a: Agent, alive: bool) -> dict[str, Any]:
    def old_style(value: dt.datetime) -> str:
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")

    return {
        "id": a.id, "agent_type": a.agent_type, "binary": a.binary, "topic": a.topic,
        "host": a.host, "admin_state_up": a.admin_state_up, "alive": alive,
        "availability_zone": a.availability_zone, "configurations": dict(a.configurations),
        "description": a.description, "created_at": old_style(a.created_at),
        "started_at": old_style(a.started_at),
        "heartbeat_timestamp": old_style(a.heartbeat_timestamp), "resources_synced": None,
        "ha_state": None,
    }
