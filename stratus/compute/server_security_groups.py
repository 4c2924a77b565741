"""A server's security groups, which are its ports' (Nova with Neutron): the
``addSecurityGroup`` / ``removeSecurityGroup`` actions, ``GET /servers/{id}/os-security-groups``
and the ``security_groups`` of server views, all read from and written to the network
service (the user's token, through ``NetworkClient``), so a change made with
``openstack port set --security-group`` shows on the server.

Nova's answers: a group the user cannot find is a 404 (``Security group <name> not
found.``); adding one every port already has, or removing one no port has, is a 400; a port
without port security or addresses cannot take groups (400)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stratus.compute.action_steps import parse_args
from stratus.compute.servers import SERVERS_PER_REQUEST, target, visible
from stratus.compute.service import ComputeRuntime
from stratus.core.clients.network import NetworkClient
from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.policy import Caller

LOG = logging.getLogger(__name__)

#: Server views wait this long for the network service before showing the stored names.
VIEW_TIMEOUT = 5.0


class GroupArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)


def _network(rt: ComputeRuntime) -> NetworkClient:
    client = rt.clients.network
    if client is None:
        raise BadRequest("This cloud has no network service.")
    return client


async def _base(client: NetworkClient, ctx: RequestContext) -> str:
    base = await client.find_base(ctx)
    if base is None:
        raise BadRequest("This cloud has no network service.")
    return base


async def _find_group(client: NetworkClient, ctx: RequestContext, base: str,
                      project_id: str, name: str) -> dict[str, Any]:
    """The group named ``name`` (or with that id) that the server's project sees."""
    for params in ({"id": name}, {"name": name}):
        groups = await client.find_security_groups(ctx, base, params)
        owned = [g for g in groups if g.get("project_id") in (project_id, None)] or groups
        if len(owned) > 1:
            raise BadRequest(f"Multiple security groups found matching '{name}'. Use an ID "
                             "to be more specific.")
        if owned:
            return owned[0]
    raise NotFound(f"Security group {name} not found.")


async def _server(rt: ComputeRuntime, caller: Caller, server_id: str,
                  rule: str) -> tuple[str, str]:
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize(rule, target(instance))
        return instance.uuid, instance.project_id


async def add_security_group(rt: ComputeRuntime, caller: Caller, server_id: str,
                             args: Any) -> None:
    name = parse_args(GroupArgs, args or {}, "addSecurityGroup").name
    uuid, project_id = await _server(rt, caller, server_id,
                                     "os_compute_api:os-security-groups:add")
    ctx, client = caller.context, _network(rt)
    base = await _base(client, ctx)
    group = await _find_group(client, ctx, base, project_id, name)
    ports = await client.list_ports(ctx, base, {"device_id": uuid})
    if not ports or any(not p.get("port_security_enabled") or not p.get("fixed_ips")
                        for p in ports):
        raise BadRequest("Network requires port_security_enabled and subnet associated in "
                         "order to apply security groups.")
    if all(group["id"] in p.get("security_groups", []) for p in ports):
        raise BadRequest(f"Security group {name} is already associated with the instance "
                         f"{uuid}")
    for port in ports:
        groups = list(port.get("security_groups", []))
        if group["id"] not in groups:
            await client.update_port(ctx, base, port["id"],
                                     {"security_groups": [*groups, group["id"]]})


async def remove_security_group(rt: ComputeRuntime, caller: Caller, server_id: str,
                                args: Any) -> None:
    name = parse_args(GroupArgs, args or {}, "removeSecurityGroup").name
    uuid, project_id = await _server(rt, caller, server_id,
                                     "os_compute_api:os-security-groups:remove")
    ctx, client = caller.context, _network(rt)
    base = await _base(client, ctx)
    group = await _find_group(client, ctx, base, project_id, name)
    ports = await client.list_ports(ctx, base, {"device_id": uuid})
    holding = [p for p in ports if group["id"] in p.get("security_groups", [])]
    if not holding:
        raise BadRequest(f"Security group {name} is not associated with the instance {uuid}")
    for port in holding:
        groups = [g for g in port["security_groups"] if g != group["id"]]
        await client.update_port(ctx, base, port["id"], {"security_groups": groups})


async def list_server_groups(rt: ComputeRuntime, caller: Caller,
                             server_id: str) -> list[dict[str, Any]]:
    """``GET /servers/{id}/os-security-groups``: the groups of the server's ports, with
    their rules in Nova's shape."""
    uuid, _ = await _server(rt, caller, server_id, "os_compute_api:os-security-groups:list")
    ctx, client = caller.context, _network(rt)
    base = await _base(client, ctx)
    ports = await client.list_ports(ctx, base, {"device_id": uuid})
    ids = list(dict.fromkeys(g for p in ports for g in p.get("security_groups", [])))
    if not ids:
        return []
    groups = await client.find_security_groups(ctx, base, {"id": ids})
    by_id = {g["id"]: g for g in groups}
    return [_nova_group(by_id[i]) for i in ids if i in by_id]


def _nova_group(group: dict[str, Any]) -> dict[str, Any]:
    rules = []
    for r in group.get("security_group_rules", []):
        if r.get("direction") != "ingress":
            continue  # Nova shows ingress rules only
        protocol = r.get("protocol")
        rules.append({
            "id": r["id"], "parent_group_id": group["id"],
            "ip_protocol": protocol.upper() if isinstance(protocol, str) else None,
            "from_port": r.get("port_range_min") if r.get("port_range_min") is not None
            else (-1 if protocol in ("icmp", "1") else None),
            "to_port": r.get("port_range_max") if r.get("port_range_max") is not None
            else (-1 if protocol in ("icmp", "1") else None),
            "ip_range": {"cidr": r["remote_ip_prefix"]} if r.get("remote_ip_prefix") else {},
            "group": {"name": r["remote_group_id"], "tenant_id": group.get("project_id")}
            if r.get("remote_group_id") else {}})
    return {"id": group["id"], "name": group.get("name", ""),
            "description": group.get("description", ""),
            "tenant_id": group.get("project_id"), "rules": rules}


async def fill_security_groups(rt: ComputeRuntime, context: RequestContext,
                               servers: list[dict[str, Any]]) -> None:
    """Set each server body's ``security_groups`` from its ports (two rounds of requests to
    the network service for the page: the ports, by chunks at once, then the groups). A
    server without ports, or a network service that does not answer, keeps the names
    stored at boot."""
    client = rt.clients.network
    if not servers or client is None:
        return
    try:
        async with asyncio.timeout(VIEW_TIMEOUT):
            base = await client.find_base(context)
            if base is None:
                return
            ids_of_page = [s["id"] for s in servers]
            # The page's chunks at once: a page of 200 servers is one round trip, not two.
            chunks = await asyncio.gather(*(client.list_ports(context, base, {
                "device_id": ids_of_page[start:start + SERVERS_PER_REQUEST],
                "fields": ["device_id", "security_groups"]})
                for start in range(0, len(ids_of_page), SERVERS_PER_REQUEST)))
            ports = [port for chunk in chunks for port in chunk]
            ids = sorted({g for p in ports for g in p.get("security_groups", [])})
            names: dict[str, str] = {}
            if ids:
                groups = await client.find_security_groups(
                    context, base, {"id": ids, "fields": ["id", "name"]})
                names = {g["id"]: g.get("name") or g["id"] for g in groups}
    except Exception as exc:  # the view must not fail for want of the groups
        LOG.debug("security_groups left as stored: %s", exc)
        return
    by_server: dict[str, list[str]] = {}
    for port in ports:
        by_server.setdefault(port["device_id"], []).extend(port.get("security_groups", []))
    for server in servers:
        if server["id"] not in by_server:
            continue
        shown = dict.fromkeys(names.get(g, g) for g in by_server[server["id"]])
        server["security_groups"] = [{"name": n} for n in shown]
