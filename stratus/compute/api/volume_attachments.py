"""``/servers/{id}/os-volume_attachments``: attach and detach block storage volumes.

The volume service holds the attachments (compute keeps no table of its own for them):
attach reserves an attachment there with the user's token, then asks the server's host
(a bus call) to connect, attach and complete it; if the host fails or does not answer, the
reservation is deleted again, so the volume is ``available`` and never left ``attaching``.
Detach asks the host to detach and delete the attachment.
"""

from __future__ import annotations

import asyncio
import logging
import string
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from stratus.compute import states
from stratus.compute.api.deps import Authorize, Context, Version, runtime
from stratus.compute.rpcapi import ComputeAgentAPI
from stratus.core.bus import MessagingError, RemoteError
from stratus.core.clients.base import endpoint
from stratus.core.clients.volume import VolumeClient
from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, Conflict, NotFound
from stratus.core.web.microversions import APIVersion

LOG = logging.getLogger(__name__)

router = APIRouter(prefix="/v2.1/servers/{server_id}/os-volume_attachments")

#: Seconds a server view waits for the volume service's attachments before showing none.
VIEW_TIMEOUT = 5.0


class AttachRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    volumeId: str = Field(min_length=1, max_length=255)
    device: str | None = Field(None, max_length=255)
    tag: str | None = Field(None, max_length=60)
    delete_on_termination: bool = False


class AttachBody(BaseModel):
    volumeAttachment: AttachRequest


def _client(request: Request) -> VolumeClient:
    # compute-api's service-to-service HTTP client (the one its image client uses).
    return VolumeClient(request.app.state.image_client.client)


def _agents(request: Request) -> ComputeAgentAPI:
    agents: ComputeAgentAPI = request.app.state.agent_api
    return agents


def _timeout(request: Request) -> float:
    return float(runtime(request).settings.compute.volume_attach_timeout)


def _view(server_id: str, volume_id: str, attachment_id: str, device: str | None,
          version: APIVersion) -> dict[str, Any]:
    body: dict[str, Any] = {"serverId": server_id, "volumeId": volume_id, "device": device}
    if not version.at_least("2.89"):
        body["id"] = volume_id
    if version.at_least("2.70"):
        body["tag"] = None
    if version.at_least("2.79"):
        body["delete_on_termination"] = False
    if version.at_least("2.89"):
        body["attachment_id"] = attachment_id
        body["bdm_uuid"] = None
    return body


async def _server(request: Request, context: RequestContext, server_id: str,
                  authorize: Authorize, rule: str) -> tuple[str, str | None, str]:
    async with runtime(request).service() as svc:
        instance = await svc.instances.get(
            server_id, project_id=None if context.is_admin else context.project_id)
        authorize(rule, {"project_id": instance.project_id, "user_id": instance.user_id})
        return instance.uuid, instance.host, instance.vm_state


async def _attachments(request: Request, context: RequestContext, base: str,
                       server_id: str) -> list[tuple[str, str, str | None]]:
    """(volume id, attachment id, device) of each volume attached to the server."""
    client = _client(request)
    found = []
    for attachment in await client.attachments_of(context, base, server_id):
        volume = await client.get_volume(context, base, attachment["volume_id"])
        device = next((a.get("device") for a in volume.get("attachments") or []
                       if a.get("attachment_id") == attachment["id"]), None)
        found.append((attachment["volume_id"], attachment["id"], device))
    return found


@router.get("")
async def list_attachments(server_id: str, request: Request, context: Context,
                           authorize: Authorize, version: Version) -> dict[str, Any]:
    uuid, _, _ = await _server(request, context, server_id, authorize,
                               "os_compute_api:os-volumes-attachments:index")
    base = endpoint(context, "block-storage")
    return {"volumeAttachments": [_view(uuid, vid, aid, device, version) for vid, aid, device
                                  in await _attachments(request, context, base, uuid)]}


@router.get("/{volume_id}")
async def show_attachment(server_id: str, volume_id: str, request: Request,
                          context: Context, authorize: Authorize,
                          version: Version) -> dict[str, Any]:
    uuid, _, _ = await _server(request, context, server_id, authorize,
                               "os_compute_api:os-volumes-attachments:show")
    base = endpoint(context, "block-storage")
    for vid, aid, device in await _attachments(request, context, base, uuid):
        if vid == volume_id:
            return {"volumeAttachment": _view(uuid, vid, aid, device, version)}
    raise NotFound(f"Volume {volume_id} is not attached to {server_id}.")


@router.post("")
async def attach_volume(server_id: str, body: AttachBody, request: Request,
                        context: Context, authorize: Authorize,
                        version: Version) -> dict[str, Any]:
    uuid, host, vm_state = await _server(request, context, server_id, authorize,
                                         "os_compute_api:os-volumes-attachments:create")
    if vm_state not in (states.ACTIVE, states.STOPPED) or host is None:
        raise Conflict(f"Cannot 'attach_volume' instance {uuid} while it is in vm_state "
                       f"{vm_state}")
    a = body.volumeAttachment
    base = endpoint(context, "block-storage")
    client = _client(request)
    try:
        await client.get_volume(context, base, a.volumeId)
    except NotFound as exc:
        raise NotFound(f"Volume {a.volumeId} could not be found.") from exc
    used = {device for _, _, device in await _attachments(request, context, base, uuid)}
    device = a.device or next((f"/dev/vd{c}" for c in string.ascii_lowercase[1:]
                               if f"/dev/vd{c}" not in used), None)
    if device is None or device in used or not device.startswith("/dev/"):
        raise BadRequest(f"The supplied device path ({a.device}) is invalid or in use.")
    attachment = await client.create_attachment(context, base, a.volumeId, uuid)
    try:
        await _agents(request).attach_volume(context, host, uuid, attachment["id"], device,
                                             wait_for=_timeout(request))
    except (MessagingError, Exception) as exc:
        # Give the reservation back whatever happened on (or to) the host.
        await client.delete_attachment(context, base, attachment["id"])
        if isinstance(exc, RemoteError):
            raise BadRequest(f"The volume could not be attached: {exc.message}") from exc
        if isinstance(exc, MessagingError):
            raise Conflict(f"The server's host {host} did not attach the volume: "
                           f"{type(exc).__name__}.") from exc
        raise
    return {"volumeAttachment": _view(uuid, a.volumeId, attachment["id"], device, version)}


@router.delete("/{volume_id}", status_code=202)
async def detach_volume(server_id: str, volume_id: str, request: Request, context: Context,
                        authorize: Authorize) -> Response:
    uuid, host, _ = await _server(request, context, server_id, authorize,
                                  "os_compute_api:os-volumes-attachments:delete")
    base = endpoint(context, "block-storage")
    found = [(aid, device) for vid, aid, device
             in await _attachments(request, context, base, uuid) if vid == volume_id]
    if not found:
        raise NotFound(f"Volume {volume_id} is not attached to {server_id}.")
    ((aid, device),) = found[:1]
    if host is None:
        await _client(request).delete_attachment(context, base, aid)
        return Response(status_code=202)
    try:
        await _agents(request).detach_volume(context, host, uuid, aid, device or "",
                                             wait_for=_timeout(request))
    except RemoteError as exc:
        raise BadRequest(f"The volume could not be detached: {exc.message}") from exc
    except MessagingError as exc:
        raise Conflict(f"The server's host {host} did not detach the volume: "
                       f"{type(exc).__name__}.") from exc
    return Response(status_code=202)


async def fill_volumes_attached(request: Request, context: RequestContext,
                                version: APIVersion, servers: list[dict[str, Any]]) -> None:
    """Set each server body's ``os-extended-volumes:volumes_attached`` from the volume
    service's attachments (one request for the page). Without a reachable block storage
    service the lists stay empty: a server shows without its volumes rather than failing."""
    if not servers:
        return
    try:
        base = endpoint(context, "block-storage")
        # Bounded: a block storage service that hangs must not hold up server views.
        async with asyncio.timeout(VIEW_TIMEOUT):
            body = await _client(request)._call(context, base, "GET", "/attachments")
    except Exception as exc:  # the server view must not fail for want of volume details
        LOG.debug("volumes_attached left empty: %s", exc)
        return
    attached: dict[str, list[str]] = {}
    for item in body.get("attachments") or []:
        if item.get("status") == "attached" and item.get("instance"):
            attached.setdefault(item["instance"], []).append(item["volume_id"])
    for server in servers:
        volumes = attached.get(server["id"], [])
        server["os-extended-volumes:volumes_attached"] = [
            {"id": vid, "delete_on_termination": False} if version.at_least("2.3")
            else {"id": vid} for vid in volumes]
