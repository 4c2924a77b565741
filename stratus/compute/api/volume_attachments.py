"""``/servers/{id}/os-volume_attachments``: attach and detach block storage volumes.

The flows (reservations in the volume service, the bus call to the server's host, giving a
reservation back when the host fails) are ``stratus.compute.volume_attach``'s.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from stratus.compute import volume_attach
from stratus.compute.api.deps import CallerDep, Runtime, Version
from stratus.compute.volume_attach import Attached
from stratus.core.context import RequestContext
from stratus.core.web.microversions import APIVersion

router = APIRouter(prefix="/v2.1/servers/{server_id}/os-volume_attachments")


class AttachRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    volumeId: str = Field(min_length=1, max_length=255)
    device: str | None = Field(None, max_length=255)
    tag: str | None = Field(None, max_length=60)
    delete_on_termination: bool = False


class AttachBody(BaseModel):
    volumeAttachment: AttachRequest


def _view(a: Attached, version: APIVersion) -> dict[str, Any]:
    body: dict[str, Any] = {"serverId": a.server_id, "volumeId": a.volume_id,
                            "device": a.device}
    if not version.at_least("2.89"):
        body["id"] = a.volume_id
    if version.at_least("2.70"):
        body["tag"] = a.tag
    if version.at_least("2.79"):
        body["delete_on_termination"] = a.delete_on_termination
    if version.at_least("2.89"):
        body["attachment_id"] = a.attachment_id
        body["bdm_uuid"] = None
    return body


@router.get("")
async def list_attachments(server_id: str, rt: Runtime, caller: CallerDep,
                           version: Version) -> dict[str, Any]:
    found = await volume_attach.attachments(rt, caller, server_id,
                                            "os_compute_api:os-volumes-attachments:index")
    return {"volumeAttachments": [_view(a, version) for a in found]}


@router.get("/{volume_id}")
async def show_attachment(server_id: str, volume_id: str, rt: Runtime, caller: CallerDep,
                          version: Version) -> dict[str, Any]:
    found = await volume_attach.attachment(rt, caller, server_id, volume_id,
                                           "os_compute_api:os-volumes-attachments:show")
    return {"volumeAttachment": _view(found, version)}


@router.post("")
async def attach_volume(server_id: str, body: AttachBody, rt: Runtime, caller: CallerDep,
                        version: Version) -> dict[str, Any]:
    a = body.volumeAttachment
    attached = await volume_attach.attach(rt, caller, server_id, a.volumeId, a.device)
    return {"volumeAttachment": _view(attached, version)}


@router.delete("/{volume_id}", status_code=202)
async def detach_volume(server_id: str, volume_id: str, rt: Runtime,
                        caller: CallerDep) -> Response:
    await volume_attach.detach(rt, caller, server_id, volume_id)
    return Response(status_code=202)


async def fill_volumes_attached(rt: Runtime, context: RequestContext, version: APIVersion,
                                servers: list[dict[str, Any]]) -> None:
    """Set each server body's ``os-extended-volumes:volumes_attached`` (the page's servers'
    attachments, in one request to the volume service up to ``SERVERS_PER_REQUEST``
    servers; empty lists when it cannot answer)."""
    if not servers:
        return
    attached = await volume_attach.volumes_attached(rt.clients.volumes, context,
                                                    [server["id"] for server in servers])
    for server in servers:
        server["os-extended-volumes:volumes_attached"] = [
            {"id": vid, "delete_on_termination": False} if version.at_least("2.3")
            else {"id": vid} for vid in attached.get(server["id"], [])]
