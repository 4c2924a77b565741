"""A server's network interfaces (``os-interface``): list, show, attach and detach.

The ports themselves are the network service's: the list is the ports whose ``device_id``
is the server (asked with the caller's token), each shown with the tag the server's
``network_info`` recorded. Attach checks what it can with the caller's token first (the
port exists and is free, or the network exists; for a network, a port is made on it with
the caller's token, so the caller's quota and fixed IP rules hold), then asks the server's
host (a bus call) to bind the port, wait for it to be wired, hot-plug the NIC and record
it. When the host fails or does not answer, a port made for the attach is deleted and the
caller's own is unbound: nothing is left half attached. Detach asks the host to unplug the
NIC and give the port back (deleted if it was made for the server, unbound if the caller
brought it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from stratus.compute import states
from stratus.compute.action_steps import refuse_if_locked
from stratus.compute.servers import target, visible
from stratus.compute.service import ComputeRuntime
from stratus.core.bus import MessagingError, RemoteError
from stratus.core.clients.network import NetworkClient
from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, Conflict, NotFound, StratusError
from stratus.core.policy import Caller

LOG = logging.getLogger(__name__)

#: The vm states an interface may be attached or detached in, as Nova allows.
CHANGEABLE = (states.ACTIVE, states.PAUSED, states.STOPPED)


@dataclass(frozen=True)
class Interface:
    """One of a server's interfaces, as ``os-interface`` shows it."""

    port_id: str
    net_id: str
    mac_addr: str
    port_state: str
    fixed_ips: list[dict[str, str]]
    tag: str | None = None


@dataclass(frozen=True)
class AttachRequest:
    port_id: str | None = None
    net_id: str | None = None
    #: At most one, as Nova allows: the address asked for on ``net_id``.
    fixed_ip: str | None = None
    tag: str | None = None


@dataclass(frozen=True)
class _Server:
    uuid: str
    host: str | None
    vm_state: str
    task_state: str | None
    zone: str | None
    network_info: list[dict[str, Any]]


async def _server(rt: ComputeRuntime, caller: Caller, server_id: str, rule: str, *,
                  change: bool = False) -> _Server:
    """The server as the caller may see it; ``change``: refused if it is locked."""
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize(rule, target(instance))
        if change:
            refuse_if_locked(instance, caller)
        return _Server(instance.uuid, instance.host, instance.vm_state, instance.task_state,
                       instance.availability_zone, list(instance.network_info or []))


async def _base(network: NetworkClient, context: RequestContext) -> str:
    base = await network.find_base(context)
    if base is None:
        raise BadRequest("This cloud has no network service.")
    return base


def _interface(port: dict[str, Any], tags: dict[str, str | None]) -> Interface:
    return Interface(
        port_id=port["id"], net_id=port.get("network_id", ""),
        mac_addr=port.get("mac_address", ""), port_state=port.get("status", "DOWN"),
        fixed_ips=[{"subnet_id": ip.get("subnet_id", ""), "ip_address": ip["ip_address"]}
                   for ip in port.get("fixed_ips") or []],
        tag=tags.get(port["id"]))


async def interfaces(rt: ComputeRuntime, caller: Caller, server_id: str) -> list[Interface]:
    server = await _server(rt, caller, server_id, "os_compute_api:os-attach-interfaces:list")
    network = rt.clients.network
    base = await _base(network, caller.context)
    ports = await network.list_ports(caller.context, base, {"device_id": server.uuid})
    tags = {vif["id"]: vif.get("tag") for vif in server.network_info}
    return [_interface(p, tags) for p in ports]


async def interface(rt: ComputeRuntime, caller: Caller, server_id: str,
                    port_id: str) -> Interface:
    server = await _server(rt, caller, server_id, "os_compute_api:os-attach-interfaces:show")
    network = rt.clients.network
    base = await _base(network, caller.context)
    try:
        port = await network.show_port(caller.context, base, port_id)
    except NotFound as exc:
        raise NotFound(f"Port {port_id} could not be found.") from exc
    if port.get("device_id") != server.uuid:
        raise NotFound(f"Instance {server.uuid} is not attached to port {port_id}.")
    tags = {vif["id"]: vif.get("tag") for vif in server.network_info}
    return _interface(port, tags)


def _check_state(server: _Server, action: str) -> str:
    if server.vm_state not in CHANGEABLE or server.task_state is not None \
            or server.host is None:
        raise Conflict(f"Cannot '{action}' instance {server.uuid} while it is in vm_state "
                       f"{server.vm_state}")
    return server.host


async def _network_for(network: NetworkClient, context: RequestContext, base: str) -> str:
    """No port and no network named: the one network the project can use, as Nova picks."""
    found = await network.list_networks(context, base, ["id", "shared", "project_id"])
    own = [n for n in found if n.get("project_id") == context.project_id]
    candidates = own or [n for n in found if n.get("shared")]
    if not candidates:
        raise BadRequest("No network is available to attach an interface to.")
    if len(candidates) > 1:
        raise BadRequest("Multiple possible networks found, use a Network ID to be more "
                         "specific.")
    return str(candidates[0]["id"])


async def attach(rt: ComputeRuntime, caller: Caller, server_id: str,
                 req: AttachRequest) -> Interface:
    context = caller.context
    if req.port_id and req.net_id:
        raise BadRequest("Must not input both network_id and port_id")
    if req.fixed_ip and not req.net_id:
        raise BadRequest("Must input network_id when request IP address")
    server = await _server(rt, caller, server_id,
                           "os_compute_api:os-attach-interfaces:create", change=True)
    host = _check_state(server, "attach_interface")
    network = rt.clients.network
    base = await _base(network, context)
    made = False
    if req.port_id:
        try:
            port = await network.show_port(context, base, req.port_id)
        except NotFound as exc:
            raise NotFound(f"Port {req.port_id} could not be found.") from exc
        if port.get("device_id"):
            raise Conflict(f"Port {req.port_id} is still in use.")
        port_id = req.port_id
    else:
        net_id = req.net_id or await _network_for(network, context, base)
        try:
            await network.show_network(context, base, net_id)
        except NotFound as exc:
            raise NotFound(f"Network {net_id} could not be found.") from exc
        spec: dict[str, Any] = {"network_id": net_id}
        if req.fixed_ip:
            spec["fixed_ips"] = [{"ip_address": req.fixed_ip}]
        port = await network.create_port(context, base, spec)
        port_id, made = port["id"], True
    async with rt.service() as svc:
        await svc.instances.start_action(context, server.uuid, "attach_interface")
    try:
        vif = await rt.clients.agents.attach_interface(
            context, host, server.uuid, port_id, preserve_on_delete=not made, tag=req.tag,
            wait_for=float(rt.settings.network.vif_plugging_timeout) + 30.0)
    except Exception as exc:
        await _give_back(network, context, base, port_id, made)
        if isinstance(exc, RemoteError):
            raise BadRequest(f"Failed to attach network adapter device to "
                             f"{server.uuid}: {exc.message}") from exc
        if isinstance(exc, MessagingError):
            raise Conflict(f"The server's host {host} did not attach the interface: "
                           f"{type(exc).__name__}.") from exc
        raise
    current = await network.show_port(context, base, port_id)
    return _interface(current, {vif.id: vif.tag})


async def _give_back(network: NetworkClient, context: RequestContext, base: str,
                     port_id: str, made: bool) -> None:
    """After a failed attach: the port made for it goes, the caller's own is unbound."""
    try:
        if made:
            await network.delete_port(context, base, port_id)
        else:
            await network.update_port(context, base, port_id, {
                "device_id": "", "device_owner": "", "binding:host_id": ""})
    except NotFound:
        pass
    except StratusError:
        LOG.exception("could not give back port %s after a failed attach", port_id)


async def detach(rt: ComputeRuntime, caller: Caller, server_id: str, port_id: str) -> None:
    server = await _server(rt, caller, server_id,
                           "os_compute_api:os-attach-interfaces:delete", change=True)
    host = _check_state(server, "detach_interface")
    if not any(vif.get("id") == port_id for vif in server.network_info):
        raise NotFound(f"Port {port_id} is not attached to {server.uuid}.")
    async with rt.service() as svc:
        await svc.instances.start_action(caller.context, server.uuid, "detach_interface")
    try:
        await rt.clients.agents.detach_interface(
            caller.context, host, server.uuid, port_id,
            wait_for=float(rt.settings.network.vif_plugging_timeout) + 30.0)
    except RemoteError as exc:
        raise BadRequest(f"Failed to detach network adapter device from {server.uuid}: "
                         f"{exc.message}") from exc
    except MessagingError as exc:
        raise Conflict(f"The server's host {host} did not detach the interface: "
                       f"{type(exc).__name__}.") from exc
