"""``/servers/{id}/tags`` (2.26+): list, replace and clear a server's tags, and check, add
and remove one. Before 2.26 none of these routes exists (404)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Response

from stratus.compute import server_tags
from stratus.compute.api.deps import CallerDep, Service, URLs, Version
from stratus.compute.instances import Instance
from stratus.compute.servers import target, visible
from stratus.compute.service import ComputeService
from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.policy import Caller
from stratus.core.web.microversions import APIVersion

router = APIRouter(prefix="/v2.1/servers/{server_id}/tags")

RawBody = Any


async def _server(svc: ComputeService, caller: Caller, version: APIVersion, server_id: str,
                  rule: str) -> Instance:
    if not version.at_least("2.26"):
        raise NotFound("The resource could not be found.")
    instance = await visible(svc, caller, server_id)
    caller.authorize(f"os_compute_api:os-server-tags:{rule}", target(instance))
    return instance


@router.get("")
async def index(server_id: str, svc: Service, caller: CallerDep,
                version: Version) -> dict[str, Any]:
    instance = await _server(svc, caller, version, server_id, "index")
    return {"tags": server_tags.tags_of(instance)}


@router.put("")
async def replace_all(server_id: str, svc: Service, caller: CallerDep, version: Version,
                      body: RawBody = Body(None)) -> dict[str, Any]:
    instance = await _server(svc, caller, version, server_id, "update_all")
    if not isinstance(body, dict) or set(body) != {"tags"}:
        raise BadRequest("Invalid input: the body must be an object with exactly 'tags'.")
    return {"tags": server_tags.replace_tags(instance, body["tags"])}


@router.delete("", status_code=204)
async def delete_all(server_id: str, svc: Service, caller: CallerDep,
                     version: Version) -> Response:
    instance = await _server(svc, caller, version, server_id, "delete_all")
    server_tags.delete_tags(instance)
    return Response(status_code=204)


@router.get("/{tag}", status_code=204)
async def show(server_id: str, tag: str, svc: Service, caller: CallerDep,
               version: Version) -> Response:
    instance = await _server(svc, caller, version, server_id, "show")
    server_tags.has_tag(instance, tag)
    return Response(status_code=204)


@router.put("/{tag}")
async def add(server_id: str, tag: str, svc: Service, caller: CallerDep, version: Version,
              urls: URLs, body: RawBody = Body(None)) -> Response:
    instance = await _server(svc, caller, version, server_id, "update")
    if body is not None:
        raise BadRequest("Invalid input: adding a tag takes no body.")
    if not server_tags.add_tag(instance, tag):
        return Response(status_code=204)
    location = urls.url(f"servers/{instance.uuid}/tags/{quote(tag, safe='')}")
    return Response(status_code=201, headers={"Location": location})


@router.delete("/{tag}", status_code=204)
async def delete(server_id: str, tag: str, svc: Service, caller: CallerDep,
                 version: Version) -> Response:
    instance = await _server(svc, caller, version, server_id, "delete")
    server_tags.delete_tag(instance, tag)
    return Response(status_code=204)
