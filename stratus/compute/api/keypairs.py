"""``/os-keypairs``: a user's SSH keys (admins may act for another user from 2.10)."""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from stratus.compute.api import views
from stratus.compute.api.deps import CallerDep, Context, Service, URLs, Version
from stratus.compute.api.schemas import (
    KEYPAIR_NAME_PATTERN,
    KEYPAIR_NAME_PATTERN_292,
    KeyPairCreateBody,
)
from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, ValidationError
from stratus.core.web import listing, params
from stratus.core.web.listing import ListRequest, ListSpec
from stratus.core.web.microversions import APIVersion

router = APIRouter(prefix="/v2.1/os-keypairs")

KEYPAIRS = ListSpec("keypairs")
LIMIT = dataclasses.replace(params.NOVA, error=ValidationError,
                            int_message=lambda name, value, _: f"Invalid {name} {value!r}.")

Q = Annotated[str | None, Query()]


def _owner(context: RequestContext, version: APIVersion, user_id: str | None) -> str:
    """Whose keys: the caller's, or from 2.10 the ``user_id`` an admin names."""
    if user_id is not None and version.at_least("2.10"):
        return user_id
    assert context.user_id is not None
    return context.user_id


@router.post("")
async def create_keypair(body: KeyPairCreateBody, svc: Service, context: Context,
                         caller: CallerDep, version: Version) -> JSONResponse:
    k = body.keypair
    pattern = KEYPAIR_NAME_PATTERN_292 if version.at_least("2.92") else KEYPAIR_NAME_PATTERN
    if not re.match(pattern, k.name):
        raise ValidationError(f"Invalid input for field 'name': {k.name!r} has characters "
                              f"a key pair name may not have.")
    if k.type is not None and not version.at_least("2.2"):
        raise BadRequest("Invalid input: 'type' needs microversion 2.2 or later.")
    if k.user_id is not None and not version.at_least("2.10"):
        raise BadRequest("Invalid input: 'user_id' needs microversion 2.10 or later.")
    if k.public_key is None and version.at_least("2.92"):
        raise ValidationError("Invalid input for field 'public_key': it is required from "
                              "microversion 2.92; key pairs are no longer generated.")
    owner = _owner(context, version, k.user_id)
    caller.authorize("os_compute_api:os-keypairs:create", {"user_id": owner})
    pair, private_key = await svc.keypairs.create(user_id=owner, name=k.name,
                                                  public_key=k.public_key,
                                                  key_type=k.type or "ssh")
    body_out = views.keypair(pair, version, private_key=private_key)
    body_out["user_id"] = pair.user_id
    return JSONResponse({"keypair": body_out},
                        status_code=201 if version.at_least("2.2") else 200)


@router.get("")
async def list_keypairs(request: Request, svc: Service, context: Context, caller: CallerDep,
                        urls: URLs, version: Version, user_id: Q = None, limit: Q = None,
                        marker: Q = None) -> dict[str, Any]:
    owner = _owner(context, version, user_id)
    caller.authorize("os_compute_api:os-keypairs:index", {"user_id": owner})
    paging = version.at_least("2.35")  # limit and marker are read from 2.35
    count = LIMIT.optional_integer("limit", limit) if paging else None
    pairs = await svc.keypairs.list_for_user(owner, limit=count,
                                             marker=marker if paging else None)
    body: dict[str, Any] = {"keypairs": [{"keypair": views.keypair(p, version)} for p in pairs]}
    full = count is not None and pairs and len(pairs) == count  # Nova: a full page links on
    return body | listing.NOVA.links(
        ListRequest(query=tuple(request.query_params.multi_items())), KEYPAIRS,
        urls.url("os-keypairs"), next_marker=pairs[-1].name if full else None)


@router.get("/{name}")
async def show_keypair(name: str, svc: Service, context: Context, caller: CallerDep,
                       version: Version, user_id: Q = None) -> dict[str, Any]:
    owner = _owner(context, version, user_id)
    caller.authorize("os_compute_api:os-keypairs:show", {"user_id": owner})
    pair = await svc.keypairs.get(owner, name)
    return {"keypair": views.keypair(pair, version, detail=True)}


@router.delete("/{name}")
async def delete_keypair(name: str, svc: Service, context: Context, caller: CallerDep,
                         version: Version, user_id: Q = None) -> Response:
    owner = _owner(context, version, user_id)
    caller.authorize("os_compute_api:os-keypairs:delete", {"user_id": owner})
    await svc.keypairs.delete(owner, name)
    return Response(status_code=204 if version.at_least("2.2") else 202)
