"""``/servers/{id}/os-interface``: a server's network interfaces, attached and detached.

The flows (the checks with the caller's token, the port made for a network, the bus call to
the server's host, giving the port back when the host fails) are
``stratus.compute.interfaces``'s.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from stratus.compute import interfaces
from stratus.compute.api.deps import CallerDep, Runtime, Version
from stratus.compute.interfaces import AttachRequest, Interface
from stratus.core.exceptions import BadRequest
from stratus.core.web.microversions import APIVersion

router = APIRouter(prefix="/v2.1/servers/{server_id}/os-interface")


class FixedIP(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ip_address: str = Field(min_length=1, max_length=64)


class InterfaceAttachment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    net_id: str | None = Field(None, max_length=255)
    port_id: str | None = Field(None, max_length=255)
    fixed_ips: list[FixedIP] | None = Field(None, max_length=1)
    tag: str | None = Field(None, max_length=60, pattern=r"^[^,/]*$")


class AttachBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interfaceAttachment: InterfaceAttachment | None = None


def _view(i: Interface, version: APIVersion) -> dict[str, Any]:
    body: dict[str, Any] = {"port_state": i.port_state, "fixed_ips": i.fixed_ips,
                            "port_id": i.port_id, "net_id": i.net_id, "mac_addr": i.mac_addr}
    if version.at_least("2.70"):
        body["tag"] = i.tag
    return body


@router.get("")
async def list_interfaces(server_id: str, rt: Runtime, caller: CallerDep,
                          version: Version) -> dict[str, Any]:
    found = await interfaces.interfaces(rt, caller, server_id)
    return {"interfaceAttachments": [_view(i, version) for i in found]}


@router.get("/{port_id}")
async def show_interface(server_id: str, port_id: str, rt: Runtime, caller: CallerDep,
                         version: Version) -> dict[str, Any]:
    found = await interfaces.interface(rt, caller, server_id, port_id)
    return {"interfaceAttachment": _view(found, version)}


@router.post("")
async def attach_interface(server_id: str, body: AttachBody, rt: Runtime, caller: CallerDep,
                           version: Version) -> dict[str, Any]:
    a = body.interfaceAttachment or InterfaceAttachment()
    if a.tag is not None and not version.at_least("2.49"):
        raise BadRequest("Invalid input for field/attribute interfaceAttachment. "
                         "'tag' needs microversion 2.49 or later.")
    attached = await interfaces.attach(rt, caller, server_id, AttachRequest(
        port_id=a.port_id, net_id=a.net_id,
        fixed_ip=a.fixed_ips[0].ip_address if a.fixed_ips else None, tag=a.tag))
    return {"interfaceAttachment": _view(attached, version)}


@router.delete("/{port_id}", status_code=202)
async def detach_interface(server_id: str, port_id: str, rt: Runtime,
                           caller: CallerDep) -> Response:
    await interfaces.detach(rt, caller, server_id, port_id)
    return Response(status_code=202)
