"""``/servers``: boot, list, show, update, delete, the server actions and the action log.

Handlers authorize, make one domain call and render a view: the boot flow is
``stratus.compute.boot``, delete and the actions ``stratus.compute.lifecycle``, the reads
``stratus.compute.servers``.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request, Response
from fastapi.responses import JSONResponse

from stratus.compute import boot, lifecycle
from stratus.compute.api import server_views
from stratus.compute.api.deps import (
    Authorize,
    Context,
    Links,
    Runtime,
    ServersDep,
    Service,
    URLs,
    Version,
)
from stratus.compute.api.schemas import ServerCreateBody, ServerUpdateBody, boot_request
from stratus.compute.api.volume_attachments import fill_volumes_attached
from stratus.compute.lifecycle import target, visible
from stratus.compute.servers import ServerPage, Servers, ServerUpdate
from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.web.microversions import APIVersion, api_version

router = APIRouter(prefix="/v2.1/servers")


@router.post("", status_code=202)
async def create_server(body: ServerCreateBody, rt: Runtime, context: Context,
                        authorize: Authorize, urls: URLs, version: Version) -> JSONResponse:
    authorize("os_compute_api:servers:create", {"project_id": context.project_id})
    s = body.server
    first = (await boot.boot(rt, context, boot_request(body, version)))[0]
    if s.return_reservation_id:
        return JSONResponse({"reservation_id": first.reservation_id}, status_code=202)
    server = {"id": first.uuid, "links": urls.pair(f"servers/{first.uuid}"),
              "OS-DCF:diskConfig": s.disk_config or "MANUAL",
              "security_groups": [{"name": n} for n in first.security_groups],
              "adminPass": s.admin_pass or secrets.token_urlsafe(9)}
    return JSONResponse({"server": server}, status_code=202,
                        headers={"Location": urls.url(f"servers/{first.uuid}")})


# Read ---------------------------------------------------------------------------------------

async def _page(servers: Servers, context: RequestContext, authorize: Authorize,
                request: Request) -> ServerPage:
    params = request.query_params
    all_tenants = params.get("all_tenants") is not None and \
        params.get("all_tenants", "").lower() not in ("0", "false", "off", "no")
    if all_tenants:
        authorize("os_compute_api:servers:index:get_all_tenants")
    return await servers.page(params, api_version(request), admin=context.is_admin,
                              project_id=context.project_id, all_tenants=all_tenants)


def _servers_links(urls: Links, path: str, request: Request,
                   next_marker: str | None) -> list[dict[str, str]]:
    if next_marker is None:
        return []
    params = dict(request.query_params)
    params["marker"] = next_marker
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return [{"rel": "next", "href": urls.url(f"{path}?{query}")}]


@router.get("")
async def list_servers(request: Request, servers: ServersDep, context: Context,
                       authorize: Authorize, urls: URLs) -> dict[str, Any]:
    authorize("os_compute_api:servers:index", {"project_id": context.project_id})
    page = await _page(servers, context, authorize, request)
    body: dict[str, Any] = {"servers": [server_views.brief(i, urls) for i in page.instances]}
    if links := _servers_links(urls, "servers", request, page.next_marker):
        body["servers_links"] = links
    return body


async def _details(servers: Servers, context: RequestContext, urls: Links,
                   version: APIVersion, page: ServerPage) -> list[dict[str, Any]]:
    instances = page.instances
    facts = await servers.detail_facts(instances, with_groups=version.at_least("2.71"))
    return [server_views.detail(i, urls, version, admin=context.is_admin,
                                fault=facts.faults.get(i.uuid),
                                host_up=facts.host_up.get(i.host or ""),
                                group_uuids=facts.groups.get(i.uuid)) for i in instances]


@router.get("/detail")
async def list_servers_detail(request: Request, rt: Runtime, servers: ServersDep,
                              context: Context, authorize: Authorize, urls: URLs,
                              version: Version) -> dict[str, Any]:
    authorize("os_compute_api:servers:detail", {"project_id": context.project_id})
    page = await _page(servers, context, authorize, request)
    body: dict[str, Any] = {"servers": await _details(servers, context, urls, version, page)}
    await fill_volumes_attached(rt, context, version, body["servers"])
    if links := _servers_links(urls, "servers/detail", request, page.next_marker):
        body["servers_links"] = links
    return body


@router.get("/{server_id}")
async def show_server(server_id: str, rt: Runtime, svc: Service, servers: ServersDep,
                      context: Context, authorize: Authorize, urls: URLs,
                      version: Version) -> dict[str, Any]:
    instance = await visible(svc, context, server_id)
    authorize("os_compute_api:servers:show", target(instance))
    (body,) = await _details(servers, context, urls, version, ServerPage([instance], None))
    await fill_volumes_attached(rt, context, version, [body])
    return {"server": body}


@router.put("/{server_id}")
async def update_server(server_id: str, body: ServerUpdateBody, svc: Service,
                        servers: ServersDep, context: Context, authorize: Authorize,
                        urls: URLs, version: Version) -> dict[str, Any]:
    instance = await visible(svc, context, server_id)
    authorize("os_compute_api:servers:update", target(instance))
    u = body.server
    if u.description is not None and not version.at_least("2.19"):
        raise BadRequest("Invalid input for field 'description': it needs microversion 2.19.")
    if u.hostname is not None and not version.at_least("2.90"):
        raise BadRequest("Invalid input for field 'hostname': it needs microversion 2.90.")
    instance = await servers.update(instance, ServerUpdate(u.model_dump(exclude_unset=True)))
    (detail,) = await _details(servers, context, urls, version, ServerPage([instance], None))
    return {"server": detail}


# Delete and actions -----------------------------------------------------------------------

@router.delete("/{server_id}", status_code=204)
async def delete_server(server_id: str, rt: Runtime, context: Context,
                        authorize: Authorize, background: BackgroundTasks) -> Response:
    deleted = await lifecycle.delete(rt, context, server_id, authorize)
    if deleted.release is not None:
        background.add_task(deleted.release)
    return Response(status_code=204)


@router.post("/{server_id}/action")
async def server_action(server_id: str, body: dict[str, Any], rt: Runtime,
                        context: Context, authorize: Authorize) -> Response:
    answer = await lifecycle.run_action(rt, context, server_id, body, authorize)
    if answer is None:
        return Response(status_code=202)
    return JSONResponse(answer)


# Instance actions -------------------------------------------------------------------------

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
async def list_actions(server_id: str, svc: Service, servers: ServersDep, context: Context,
                       authorize: Authorize, version: Version) -> dict[str, Any]:
    instance = await svc.instances.get(
        server_id, project_id=None if context.is_admin else context.project_id,
        include_deleted=True)
    authorize("os_compute_api:os-instance-actions:list", target(instance))
    return {"instanceActions": [_action_view(a, version)
                                for a in await servers.actions(server_id)]}


@router.get("/{server_id}/os-instance-actions/{request_id}")
async def show_action(server_id: str, request_id: str, svc: Service, servers: ServersDep,
                      context: Context, authorize: Authorize,
                      version: Version) -> dict[str, Any]:
    instance = await svc.instances.get(
        server_id, project_id=None if context.is_admin else context.project_id,
        include_deleted=True)
    authorize("os_compute_api:os-instance-actions:show", target(instance))
    action = await svc.instances.action_for(server_id, request_id)
    if action is None:
        raise NotFound(f"Action {request_id} not found for server {server_id}.")
    body = _action_view(action, version)
    if authorize.allows("os_compute_api:os-instance-actions:events", target(instance)):
        body["events"] = [_event_view(e, version) for e in await servers.events(action.id)]
    return {"instanceAction": body}
