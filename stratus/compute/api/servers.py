"""``/servers``: boot, list, show, update, delete, the server actions and the action log.

Handlers authorize, make one domain call and render a view: the boot flow is
``stratus.compute.boot``, delete and the actions ``stratus.compute.lifecycle``, the reads
``stratus.compute.servers``.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request, Response
from fastapi.responses import JSONResponse

from stratus.compute import boot, lifecycle, servers
from stratus.compute.action_steps import Reply
from stratus.compute.api import server_views
from stratus.compute.api.deps import (
    CallerDep,
    Links,
    ReadServersDep,
    Runtime,
    ServersDep,
    Service,
    URLs,
    Version,
    runtime,
)
from stratus.compute.api.schemas import ServerCreateBody, ServerUpdateBody, boot_request
from stratus.compute.api.volume_attachments import fill_volumes_attached
from stratus.compute.server_filters import ADMIN_SORT_KEYS, SORT_COLUMNS
from stratus.compute.server_security_groups import fill_security_groups
from stratus.compute.servers import ServerPage, ServerUpdate, target, visible
from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.policy import Caller
from stratus.core.web import listing, openapi, params
from stratus.core.web.listing import ListRequest, ListSpec
from stratus.core.web.microversions import APIVersion, api_version

#: Nova's ``osapi_max_limit``: the largest page, and the page without a ``limit``.
MAX_LIMIT = 1000

router = APIRouter(prefix="/v2.1/servers")


@router.post("", status_code=202)
async def create_server(body: ServerCreateBody, request: Request,
                        caller: CallerDep) -> JSONResponse:
    # The runtime, links and version read from the request here, not declared as
    # dependencies: FastAPI solves each declared one on every request (~30 Python calls),
    # and every boot starts here. The caller stays one: it refuses a request without a
    # token (401) before the body is read.
    rt, urls = runtime(request), Links(request)
    version: APIVersion = await api_version(request)
    caller.authorize("os_compute_api:servers:create", {"project_id": caller.project_id})
    s = body.server
    # Made here, so that a config drive holds the password the answer gives.
    password = s.admin_pass or secrets.token_urlsafe(9)
    asked = boot_request(body, version, admin_pass=password)
    first = (await boot.boot(rt, caller.context, asked))[0]
    if s.return_reservation_id:
        return JSONResponse({"reservation_id": first.reservation_id}, status_code=202)
    server = {"id": first.uuid, "links": urls.pair(f"servers/{first.uuid}"),
              "OS-DCF:diskConfig": s.disk_config or "MANUAL",
              "security_groups": [{"name": n} for n in first.security_groups]}
    if rt.settings.compute.enable_instance_password:
        server["adminPass"] = password
    return JSONResponse({"server": server}, status_code=202,
                        headers={"Location": urls.url(f"servers/{first.uuid}")})


# Read ---------------------------------------------------------------------------------------

#: ``GET /servers``: its sort keys and, as Nova's ``max_limit``, its largest page.
SERVERS = ListSpec("servers", sort_keys=SORT_COLUMNS.keys(), admin_sort_keys=ADMIN_SORT_KEYS,
                   default_limit=MAX_LIMIT, max_limit=MAX_LIMIT)


def _list_request(caller: Caller, request: Request) -> tuple[ListRequest, bool]:
    """The parsed list query, and whether it asks for every project's (admins only)."""
    req = listing.NOVA.parse(request.query_params, SERVERS, admin=caller.is_admin)
    all_tenants = params.NOVA_FLAG.flag("all_tenants", req.filter("all_tenants"))
    if all_tenants:
        caller.authorize("os_compute_api:servers:index:get_all_tenants")
    return req, all_tenants


@router.get("")
async def list_servers(request: Request, parts: ReadServersDep, caller: CallerDep, urls: URLs,
                       version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:servers:index", {"project_id": caller.project_id})
    req, all_tenants = _list_request(caller, request)
    page = await parts.page(req, version, admin=caller.is_admin,
                            project_id=caller.project_id, all_tenants=all_tenants, brief=True)
    body: dict[str, Any] = {"servers": [server_views.brief(i, urls) for i in page.instances]}
    return body | listing.NOVA.links(req, SERVERS, urls.url("servers"),
                                     next_marker=page.next_marker)


def _details(caller: Caller, urls: Links, version: APIVersion,
             page: ServerPage) -> list[dict[str, Any]]:
    instances, facts = page.instances, page.facts
    assert facts is not None
    return [server_views.detail(i, urls, version, admin=caller.is_admin,
                                fault=facts.faults.get(i.uuid),
                                host_up=facts.host_up.get(i.host or ""),
                                group_uuids=facts.groups.get(i.uuid)) for i in instances]


async def _fill(rt: Runtime, caller: Caller, version: APIVersion,
                bodies: list[dict[str, Any]]) -> None:
    """The parts of server views other services hold: volumes (block storage) and security
    groups (network), asked at once (each bounded, neither fails the view)."""
    await asyncio.gather(fill_volumes_attached(rt, caller.context, version, bodies),
                         fill_security_groups(rt, caller.context, bodies))


@router.get("/detail")
async def list_servers_detail(request: Request, rt: Runtime, caller: CallerDep, urls: URLs,
                              version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:servers:detail", {"project_id": caller.project_id})
    req, all_tenants = _list_request(caller, request)
    page = await servers.detailed_page(rt, caller, req, version, all_tenants=all_tenants)
    body: dict[str, Any] = {"servers": _details(caller, urls, version, page)}
    await _fill(rt, caller, version, body["servers"])
    return body | listing.NOVA.links(req, SERVERS, urls.url("servers/detail"),
                                     next_marker=page.next_marker)


@router.get("/{server_id}")
async def show_server(server_id: str, rt: Runtime, caller: CallerDep,
                      urls: URLs, version: Version) -> dict[str, Any]:
    page = await servers.show(rt, caller, server_id, version)
    (body,) = _details(caller, urls, version, page)
    await _fill(rt, caller, version, [body])
    return {"server": body}


@router.put("/{server_id}")
async def update_server(server_id: str, body: ServerUpdateBody, svc: Service,
                        parts: ServersDep, caller: CallerDep,
                        urls: URLs, version: Version) -> dict[str, Any]:
    instance = await visible(svc, caller, server_id)
    caller.authorize("os_compute_api:servers:update", target(instance))
    u = body.server
    if u.description is not None and not version.at_least("2.19"):
        raise BadRequest("Invalid input for field 'description': it needs microversion 2.19.")
    if u.hostname is not None and not version.at_least("2.90"):
        raise BadRequest("Invalid input for field 'hostname': it needs microversion 2.90.")
    instance = await parts.update(instance, ServerUpdate(u.model_dump(exclude_unset=True)))
    facts = await parts.detail_facts([instance], with_groups=version.at_least("2.71"))
    (detail,) = _details(caller, urls, version, ServerPage([instance], None, facts))
    return {"server": server_views.as_updated(detail, version)}


# Delete and actions -----------------------------------------------------------------------

@router.delete("/{server_id}", status_code=204)
async def delete_server(server_id: str, rt: Runtime, caller: CallerDep,
                        background: BackgroundTasks) -> Response:
    deleted = await lifecycle.delete(rt, caller, server_id)
    if deleted.release is not None:
        background.add_task(deleted.release)
    return Response(status_code=204)


#: One action of the table, ``{name: <its arguments>}``; each handler reads its own.
_ACTION_BODY = openapi.request_body({"oneOf": [openapi.wrapped(name, {})
                                              for name in lifecycle.ACTIONS]})


@router.post("/{server_id}/action", openapi_extra=_ACTION_BODY)
async def server_action(server_id: str, body: dict[str, Any], rt: Runtime,
                        caller: CallerDep, urls: URLs, version: Version) -> Response:
    answer = await lifecycle.run_action(rt, caller, server_id, body, version)
    if answer is None:
        return Response(status_code=202)
    if not isinstance(answer, Reply):
        return JSONResponse(answer)
    reply_body = answer.body
    if answer.show_server is not None:
        page = await servers.show(rt, caller, answer.show_server, version)
        (detail,) = _details(caller, urls, version, page)
        await fill_volumes_attached(rt, caller.context, version, [detail])
        reply_body = {"server": server_views.as_updated(detail, version) | answer.extra}
    if reply_body is None:
        return Response(status_code=answer.status, headers=answer.headers)
    return JSONResponse(reply_body, status_code=answer.status, headers=answer.headers)


# Instance actions -------------------------------------------------------------------------

#: ``GET /servers/{id}/os-instance-actions`` from 2.58; Nova's largest page.
ACTIONS = ListSpec("instanceActions", default_limit=MAX_LIMIT, max_limit=MAX_LIMIT)

def _action_view(a: Any, version: APIVersion) -> dict[str, Any]:
    body = {"action": a.action, "instance_uuid": a.instance_uuid, "request_id": a.request_id,
            "user_id": a.user_id, "project_id": a.project_id,
            "start_time": server_views.action_timestamp(a.start_time), "message": a.message}
    if version.at_least("2.58"):
        body["updated_at"] = server_views.action_timestamp(a.updated_at or a.start_time)
    return body


def _event_view(e: Any, version: APIVersion) -> dict[str, Any]:
    return {"event": e.event, "start_time": server_views.action_timestamp(e.start_time),
            "finish_time": server_views.action_timestamp(e.finish_time), "result": e.result,
            **({"host": e.host or "", "hostId": ""} if version.at_least("2.62") else {}),
            **({"details": e.details} if version.at_least("2.84") else {})}


@router.get("/{server_id}/os-instance-actions")
async def list_actions(server_id: str, request: Request, svc: Service, parts: ServersDep,
                       caller: CallerDep, urls: URLs, version: Version) -> dict[str, Any]:
    instance = await svc.instances.get(
        server_id, project_id=None if caller.is_admin else caller.project_id,
        include_deleted=True)
    caller.authorize("os_compute_api:os-instance-actions:list", target(instance))
    # Paged from 2.58 (``limit``, ``marker`` as a request id, a ``links`` next link).
    req = listing.NOVA.parse(request.query_params, ACTIONS) if version.at_least("2.58") \
        else ListRequest()
    page = await parts.actions(server_id, limit=req.limit, marker=req.marker)
    body: dict[str, Any] = {"instanceActions": [_action_view(a, version) for a in page.rows]}
    links = listing.NOVA.links(req, ACTIONS, urls.url(f"servers/{server_id}/os-instance-actions"),
                               next_marker=page.rows[-1].request_id
                               if page.more and page.rows else None)
    return body | ({"links": links["instanceActions_links"]} if links else {})


@router.get("/{server_id}/os-instance-actions/{request_id}")
async def show_action(server_id: str, request_id: str, svc: Service, parts: ServersDep,
                      caller: CallerDep,
                      version: Version) -> dict[str, Any]:
    instance = await svc.instances.get(
        server_id, project_id=None if caller.is_admin else caller.project_id,
        include_deleted=True)
    caller.authorize("os_compute_api:os-instance-actions:show", target(instance))
    action = await svc.instances.action_for(server_id, request_id)
    if action is None:
        raise NotFound(f"Action {request_id} not found for server {server_id}.")
    body = _action_view(action, version)
    if caller.check("os_compute_api:os-instance-actions:events", target(instance)):
        body["events"] = [_event_view(e, version) for e in await parts.events(action.id)]
    return {"instanceAction": body}
