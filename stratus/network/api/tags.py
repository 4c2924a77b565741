"""``/v2.0/<collection>/{id}/tags``: tags of networks, subnets, ports and security groups.

Replace all (``PUT .../tags {"tags": [...]}``), add one (``PUT .../tags/{tag}``, 201), check
one (``GET .../tags/{tag}``, 204 or 404), remove one or all (``DELETE``, 204). Lists filter
on them with ``tags`` / ``tags-any`` / ``not-tags`` / ``not-tags-any`` (``listing``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from stratus.core.exceptions import NotFound
from stratus.core.policy import Caller
from stratus.core.web import openapi
from stratus.network.api.bodies import json_body
from stratus.network.api.deps import CallerDep, Service, WriteService
from stratus.network.common import set_tags
from stratus.network.errors import InvalidInput
from stratus.network.service import NetworkService

router = APIRouter(prefix="/v2.0")

#: Shows one tagged resource the caller may see (404 otherwise).
Getter = Callable[[NetworkService, Caller, str], Awaitable[Any]]

#: URL collection → (policy resource name, its getter).
KINDS: dict[str, tuple[str, Getter]] = {
    "networks": ("network", lambda svc, caller, id_: svc.networks.get_network(caller, id_)),
    "subnets": ("subnet", lambda svc, caller, id_: svc.subnets.get_subnet(caller, id_)),
    "ports": ("port", lambda svc, caller, id_: svc.ports.get_port(caller, id_)),
    "security-groups": ("security_group", lambda svc, caller, id_:
                        svc.security_groups.get_security_group(caller, id_)),
    "routers": ("router", lambda svc, caller, id_: svc.routers.get_router(caller, id_)),
    "floatingips": ("floatingip", lambda svc, caller, id_:
                    svc.floating_ips.get_floatingip(caller, id_)),
}
MAX_TAG = 255


class TagNotFound(NotFound):
    pass


async def _row(svc: NetworkService, caller: Caller, collection: str, resource_id: str,
               write: bool) -> Any:
    if collection not in KINDS:
        raise NotFound("The resource could not be found.")
    kind, getter = KINDS[collection]
    row = await getter(svc, caller, resource_id)
    if write:
        caller.authorize(f"update_{kind}", {"project_id": row.project_id})
    return row


async def _tagged(svc: NetworkService, caller: Caller, collection: str, resource_id: str,
                  tag: str, write: bool) -> Any:
    """The resource, which must carry ``tag`` (404 ``TagNotFound`` otherwise)."""
    row = await _row(svc, caller, collection, resource_id, write=write)
    if tag not in row.tags:
        raise TagNotFound(f"Tag {tag} could not be found for {resource_id}.")
    return row


def _check(tag: Any) -> str:
    if not isinstance(tag, str) or not tag or len(tag) > MAX_TAG or "," in tag:
        raise InvalidInput(f"Invalid input for tags: '{tag}' is not a valid tag (1 to "
                           f"{MAX_TAG} characters, no commas).")
    return tag


@router.get("/{collection}/{resource_id}/tags")
async def list_tags(collection: str, resource_id: str, svc: Service,
                    caller: CallerDep) -> JSONResponse:
    row = await _row(svc, caller, collection, resource_id, write=False)
    return JSONResponse({"tags": list(row.tags)})


@router.put("/{collection}/{resource_id}/tags", openapi_extra=openapi.request_body(
    openapi.wrapped("tags", {"type": "array", "items": {"type": "string"}})))
async def replace_tags(collection: str, resource_id: str, request: Request, svc: WriteService,
                       caller: CallerDep) -> JSONResponse:
    body = await json_body(request)
    if not isinstance(body, dict) or set(body) != {"tags"} or not isinstance(body["tags"],
                                                                             list):
        raise InvalidInput("Invalid input: the body must be {\"tags\": [...]}.")
    tags = [_check(t) for t in body["tags"]]
    row = await _row(svc, caller, collection, resource_id, write=True)
    set_tags(row, tags)
    return JSONResponse({"tags": list(row.tags)})


@router.delete("/{collection}/{resource_id}/tags", status_code=204)
async def clear_tags(collection: str, resource_id: str, svc: WriteService,
                     caller: CallerDep) -> Response:
    row = await _row(svc, caller, collection, resource_id, write=True)
    set_tags(row, [])
    return Response(status_code=204)


@router.get("/{collection}/{resource_id}/tags/{tag}", status_code=204)
async def check_tag(collection: str, resource_id: str, tag: str, svc: Service,
                    caller: CallerDep) -> Response:
    await _tagged(svc, caller, collection, resource_id, tag, write=False)
    return Response(status_code=204)


@router.put("/{collection}/{resource_id}/tags/{tag}", status_code=201)
async def add_tag(collection: str, resource_id: str, tag: str, svc: WriteService,
                  caller: CallerDep) -> Response:
    row = await _row(svc, caller, collection, resource_id, write=True)
    set_tags(row, [*row.tags, _check(tag)])
    return Response(status_code=201)


@router.delete("/{collection}/{resource_id}/tags/{tag}", status_code=204)
async def remove_tag(collection: str, resource_id: str, tag: str, svc: WriteService,
                     caller: CallerDep) -> Response:
    row = await _tagged(svc, caller, collection, resource_id, tag, write=True)
    set_tags(row, [t for t in row.tags if t != tag])
    return Response(status_code=204)
