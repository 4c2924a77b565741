"""``/servers/{id}/metadata``: read, merge, replace and delete a server's metadata items."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Response

from stratus.compute import server_metadata
from stratus.compute.api.deps import Authorize, Context, Service
from stratus.compute.instances import Instance
from stratus.compute.service import ComputeService
from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, Conflict, NotFound

router = APIRouter(prefix="/v2.1/servers/{server_id}/metadata")

RawBody = Any


def _body(body: Any, key: str) -> Any:
    if not isinstance(body, dict) or set(body) != {key}:
        raise BadRequest(f"Malformed request body: it must be an object with exactly "
                         f"'{key}'.")
    return body[key]


async def _server(svc: ComputeService, context: RequestContext, server_id: str,
                  authorize: Authorize, rule: str) -> Instance:
    instance = await svc.instances.get(
        server_id, project_id=None if context.is_admin else context.project_id)
    authorize(f"os_compute_api:server-metadata:{rule}",
              {"project_id": instance.project_id, "user_id": instance.user_id})
    return instance


def _writable(instance: Instance, context: RequestContext, action: str) -> None:
    if instance.locked and not context.is_admin:
        raise Conflict(f"Instance {instance.uuid} is locked.")
    server_metadata.check_mutable(instance, action)


@router.get("")
async def index(server_id: str, svc: Service, context: Context,
                authorize: Authorize) -> dict[str, Any]:
    instance = await _server(svc, context, server_id, authorize, "index")
    return {"metadata": dict(instance.server_metadata or {})}


async def _set(server_id: str, svc: Service, context: Context, authorize: Authorize,
               body: Any, rule: str, *, merge: bool) -> dict[str, Any]:
    items = server_metadata.validate(_body(body, "metadata"))
    instance = await _server(svc, context, server_id, authorize, rule)
    _writable(instance, context, "update_metadata")
    return {"metadata": await svc.server_metadata.replace(instance, items, merge=merge)}


@router.post("")
async def merge(server_id: str, svc: Service, context: Context, authorize: Authorize,
                body: RawBody = Body(None)) -> dict[str, Any]:
    return await _set(server_id, svc, context, authorize, body, "create", merge=True)


@router.put("")
async def replace_all(server_id: str, svc: Service, context: Context, authorize: Authorize,
                      body: RawBody = Body(None)) -> dict[str, Any]:
    return await _set(server_id, svc, context, authorize, body, "update_all", merge=False)


@router.get("/{key}")
async def show(server_id: str, key: str, svc: Service, context: Context,
               authorize: Authorize) -> dict[str, Any]:
    instance = await _server(svc, context, server_id, authorize, "show")
    items = instance.server_metadata or {}
    if key not in items:
        raise NotFound(f"Metadata item {key} was not found.")
    return {"meta": {key: items[key]}}


@router.put("/{key}")
async def update(server_id: str, key: str, svc: Service, context: Context,
                 authorize: Authorize, body: RawBody = Body(None)) -> dict[str, Any]:
    meta = _body(body, "meta")
    if not isinstance(meta, dict) or len(meta) != 1:
        raise BadRequest("Request body contains too many items: 'meta' holds exactly one.")
    if key not in meta:
        raise BadRequest("Request body and URI mismatch.")
    items = server_metadata.validate(meta, "meta")
    instance = await _server(svc, context, server_id, authorize, "update")
    _writable(instance, context, "update_metadata")
    await svc.server_metadata.replace(instance, items, merge=True)
    return {"meta": items}


@router.delete("/{key}", status_code=204)
async def delete(server_id: str, key: str, svc: Service, context: Context,
                 authorize: Authorize) -> Response:
    instance = await _server(svc, context, server_id, authorize, "delete")
    if key not in (instance.server_metadata or {}):
        raise NotFound(f"Metadata item {key} was not found.")
    _writable(instance, context, "delete_metadata")
    await svc.server_metadata.delete_key(instance, key)
    return Response(status_code=204)
