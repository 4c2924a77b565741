"""``/v2/images/{id}/members``: sharing an image with other projects."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from stratus.core.exceptions import BadRequest
from stratus.core.web import openapi
from stratus.image.api import views
from stratus.image.api.deps import CallerDep, Service
from stratus.image.api.images import json_body

router = APIRouter(prefix="/v2/images/{image_id}/members")


async def _field(request: Request, name: str) -> Any:
    body = await json_body(request)
    if not isinstance(body, dict) or name not in body:
        raise BadRequest(f"The request body must be an object with '{name}'.")
    return body[name]


@router.post("", openapi_extra=openapi.request_body(openapi.wrapped(
    "member", {"type": "string"})))
async def add_member(image_id: str, request: Request, svc: Service,
                     caller: CallerDep) -> dict[str, Any]:
    member_id = await _field(request, "member")
    return views.member(await svc.members.add(caller, image_id, member_id))


@router.get("")
async def list_members(image_id: str, svc: Service, caller: CallerDep) -> dict[str, Any]:
    members = await svc.members.list_all(caller, image_id)
    return {"members": [views.member(m) for m in members], "schema": "/v2/schemas/members"}


@router.get("/{member_id}")
async def show_member(image_id: str, member_id: str, svc: Service,
                      caller: CallerDep) -> dict[str, Any]:
    return views.member(await svc.members.get(caller, image_id, member_id))


@router.put("/{member_id}", openapi_extra=openapi.request_body(openapi.wrapped(
    "status", {"type": "string", "enum": ["pending", "accepted", "rejected"]})))
async def update_member(image_id: str, member_id: str, request: Request, svc: Service,
                        caller: CallerDep) -> dict[str, Any]:
    status = await _field(request, "status")
    return views.member(await svc.members.update(caller, image_id, member_id, status))


@router.delete("/{member_id}", status_code=204)
async def delete_member(image_id: str, member_id: str, svc: Service,
                        caller: CallerDep) -> Response:
    await svc.members.delete(caller, image_id, member_id)
    return Response(status_code=204)
