"""``/v3/{project_id}/attachments`` (3.27+): how Nova attaches volumes.

create (reserve; with a connector, also connect) → update with a connector (connection
info back) → ``os-complete`` (3.44+: the volume is ``in-use``) → delete (``available``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.policy import Caller
from stratus.core.web import listing, openapi
from stratus.core.web.listing import ListSpec
from stratus.core.web.microversions import APIVersion
from stratus.volume.api import views
from stratus.volume.api.deps import CallerDep, Context, Service, URLs, Version, runtime
from stratus.volume.api.params import list_sort
from stratus.volume.api.schemas import AttachmentCreateBody, AttachmentUpdateBody
from stratus.volume.queries import ListQuery
from stratus.volume.service import VolumeService

router = APIRouter(prefix="/v3/{project_id}/attachments")

#: The list pages only when asked (``limit``/``marker``): compute reads the attachments of
#: a page of servers in one request, ``instance_id`` given once per server (an extension:
#: Cinder reads one; several list the attachments of any of them).
_LIST = ListSpec("attachments", sort_keys=("id", "volume_id", "instance_uuid",
                                           "attach_status", "created_at"))


def _require(version: APIVersion, minimum: str) -> None:
    if not version.at_least(minimum):
        # Below its microversion the route does not exist, as in Cinder.
        raise NotFound("The resource could not be found.")


def _permit(version: APIVersion, caller: Caller, context: RequestContext, rule: str) -> None:
    """The route exists at this microversion (3.27+) and policy lets the caller use it."""
    _require(version, "3.27")
    caller.authorize(rule, {"project_id": context.project_id})


def _project(context: Any) -> str | None:
    return None if context.is_admin else context.project_id


@router.post("")
async def create_attachment(body: AttachmentCreateBody, request: Request, context: Context,
                            caller: CallerDep, version: Version) -> JSONResponse:
    _permit(version, caller, context, "volume:attachment_create")
    a = body.attachment
    if a.mode is not None and not version.at_least("3.54"):
        raise BadRequest("Invalid input received: mode needs microversion 3.54.")
    attachment = await runtime(request).attach(
        context, a.volume_uuid, _project(context), instance_uuid=a.instance_uuid,
        mode=a.mode or "rw", connector=a.connector)
    return JSONResponse({"attachment": views.attachment_view(attachment)}, status_code=200)


async def _list(request: Request, svc: VolumeService, context: RequestContext,
                caller: Caller, version: APIVersion, url: str, *,
                detail: bool) -> dict[str, Any]:
    _permit(version, caller, context, "volume:attachment_get")
    req = listing.CINDER.parse(request.query_params, _LIST)
    rows, more = await svc.attachments.list_page(
        ListQuery(_project(context), sort=list_sort(req), limit=req.limit, marker=req.marker,
                  offset=req.offset),
        volume_id=req.filter("volume_id"), instance_ids=req.filters.get("instance_id"))
    body = {"attachments": [views.attachment_view(a, detail=detail) for a in rows]}
    return body | listing.CINDER.links(req, _LIST, url,
                                       next_marker=listing.CINDER.next_marker(
                                           req, [r.id for r in rows], more))


@router.get("")
async def list_attachments(request: Request, svc: Service, context: Context,
                           caller: CallerDep, version: Version, urls: URLs) -> dict[str, Any]:
    return await _list(request, svc, context, caller, version, urls.url("attachments"),
                       detail=False)


@router.get("/detail")
async def list_attachments_detail(request: Request, svc: Service, context: Context,
                                  caller: CallerDep, version: Version,
                                  urls: URLs) -> dict[str, Any]:
    return await _list(request, svc, context, caller, version, urls.url("attachments/detail"),
                       detail=True)


@router.get("/{attachment_id}")
async def show_attachment(attachment_id: str, svc: Service, context: Context,
                          caller: CallerDep, version: Version) -> dict[str, Any]:
    _permit(version, caller, context, "volume:attachment_get")
    attachment = await svc.attachments.get(attachment_id, _project(context))
    return {"attachment": views.attachment_view(attachment)}


@router.put("/{attachment_id}")
async def update_attachment(attachment_id: str, body: AttachmentUpdateBody,
                            request: Request, context: Context, caller: CallerDep,
                            version: Version) -> dict[str, Any]:
    _permit(version, caller, context, "volume:attachment_update")
    attachment = await runtime(request).update_attachment(
        context, attachment_id, _project(context), body.attachment.connector)
    return {"attachment": views.attachment_view(attachment)}


@router.post("/{attachment_id}/action", status_code=204,
             openapi_extra=openapi.request_body(openapi.wrapped("os-complete", {})))
async def attachment_action(attachment_id: str, request: Request, svc: Service,
                            context: Context, caller: CallerDep,
                            version: Version) -> Response:
    _require(version, "3.44")
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("Malformed request body: the body is not valid JSON.") from None
    if not isinstance(body, dict) or list(body) != ["os-complete"]:
        raise BadRequest("Invalid input received: the only attachment action is "
                         "os-complete.")
    caller.authorize("volume:attachment_complete", {"project_id": context.project_id})
    await svc.attachments.complete(attachment_id, _project(context))
    return Response(status_code=204)


@router.delete("/{attachment_id}")
async def delete_attachment(attachment_id: str, svc: Service, context: Context,
                            caller: CallerDep, version: Version) -> dict[str, Any]:
    _permit(version, caller, context, "volume:attachment_delete")
    remaining = await svc.attachments.delete(attachment_id, _project(context))
    return {"attachments": [views.attachment_view(a, detail=False) for a in remaining]}
