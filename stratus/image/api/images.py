"""``/v2/images``: create, list, show, JSON-patch update, delete, actions and tags."""

from __future__ import annotations

import csv
import datetime as dt
import json
from typing import Any

from fastapi import APIRouter, Request, Response

from stratus.core.exceptions import BadRequest, UnsupportedMediaType, ValidationError
from stratus.core.web import listing, openapi
from stratus.core.web.listing import ListRequest, ListSpec
from stratus.core.web.params import GLANCE as GLANCE_PARAMS
from stratus.image.api import views
from stratus.image.api.deps import CallerDep, Runtime, Service
from stratus.image.images import PatchOp
from stratus.image.queries import (
    INTEGER_ATTRIBUTES,
    SORT_KEYS,
    TEXT_ATTRIBUTES,
    TIME_OPERATORS,
    Filters,
    Page,
)
from stratus.image.validation import VISIBILITIES

router = APIRouter(prefix="/v2")

PATCH_V21 = "application/openstack-images-v2.1-json-patch"
PATCH_V20 = "application/openstack-images-v2.0-json-patch"
PAGING = listing.GLANCE.control


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise BadRequest("The request body is empty; a JSON document is expected.")
    try:
        return json.loads(raw)
    except ValueError:
        raise BadRequest("Malformed request body: the body is not valid JSON.") from None


#: A create's body: the image's attributes, the known ones typed, any other a property.
_CREATE_BODY = openapi.request_body({"type": "object", "properties": {
    "id": {"type": "string"}, "name": {"type": ["string", "null"]},
    "disk_format": {"type": ["string", "null"]},
    "container_format": {"type": ["string", "null"]},
    "visibility": {"type": "string",
                   "enum": ["public", "private", "shared", "community"]},
    "min_disk": {"type": "integer"}, "min_ram": {"type": "integer"},
    "protected": {"type": "boolean"}, "os_hidden": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string"}}},
    "additionalProperties": {"type": "string"}})

#: A JSON patch (RFC 6902) of the image's attributes.
_PATCH_BODY = openapi.request_body({"type": "array", "items": {
    "type": "object", "required": ["op", "path"], "properties": {
        "op": {"type": "string", "enum": ["add", "replace", "remove"]},
        "path": {"type": "string"}, "value": {}}}}, media_type=PATCH_V21)


@router.post("/images", status_code=201, openapi_extra=_CREATE_BODY)
async def create_image(request: Request, svc: Service, caller: CallerDep) -> dict[str, Any]:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object of image attributes.")
    return views.image(await svc.images.create(caller, body),
                       direct_url=views.shows_direct_url(caller))


@router.get("/images")
async def list_images(request: Request, svc: Service, caller: CallerDep,
                      runtime: Runtime) -> dict[str, Any]:
    params = list(request.query_params.multi_items())
    spec = images_spec(runtime.settings.image.limit_default, runtime.settings.image.limit_max)
    req = listing.GLANCE.parse(params, spec)
    images, more = await svc.images.list_page(caller, parse_filters(params), as_page(req))
    direct = views.shows_direct_url(caller)
    body: dict[str, Any] = {"images": [views.image(i, direct_url=direct) for i in images],
                            "schema": "/v2/schemas/images"}
    return body | listing.GLANCE.links(
        req, spec, "/v2/images", next_marker=images[-1].id if more and images else None)


@router.get("/images/{image_id}")
async def show_image(image_id: str, svc: Service, caller: CallerDep) -> dict[str, Any]:
    return views.image(await svc.images.get(caller, image_id),
                       direct_url=views.shows_direct_url(caller))


@router.patch("/images/{image_id}", openapi_extra=_PATCH_BODY)
async def update_image(image_id: str, request: Request, svc: Service,
                       caller: CallerDep) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in (PATCH_V21, PATCH_V20):
        raise UnsupportedMediaType(f"Unsupported Content-Type {media_type or '(none)'!r}; "
                                   f"use {PATCH_V21} or {PATCH_V20}.")
    body = await json_body(request)
    changes = parse_patch(body, draft=media_type == PATCH_V20)
    return views.image(await svc.images.update(caller, image_id, changes),
                       direct_url=views.shows_direct_url(caller))


@router.delete("/images/{image_id}", status_code=204)
async def delete_image(image_id: str, runtime: Runtime, caller: CallerDep) -> Response:
    await runtime.data.delete_image(caller, image_id)
    return Response(status_code=204)


@router.post("/images/{image_id}/actions/deactivate", status_code=204)
async def deactivate(image_id: str, svc: Service, caller: CallerDep) -> Response:
    await svc.images.deactivate(caller, image_id)
    return Response(status_code=204)


@router.post("/images/{image_id}/actions/reactivate", status_code=204)
async def reactivate(image_id: str, svc: Service, caller: CallerDep) -> Response:
    await svc.images.reactivate(caller, image_id)
    return Response(status_code=204)


@router.put("/images/{image_id}/tags/{tag}", status_code=204)
async def add_tag(image_id: str, tag: str, svc: Service, caller: CallerDep) -> Response:
    await svc.images.add_tag(caller, image_id, tag)
    return Response(status_code=204)


@router.delete("/images/{image_id}/tags/{tag}", status_code=204)
async def delete_tag(image_id: str, tag: str, svc: Service, caller: CallerDep) -> Response:
    await svc.images.delete_tag(caller, image_id, tag)
    return Response(status_code=204)


# Parsing ----------------------------------------------------------------------------------


def _pointer(path: Any) -> tuple[str, ...]:
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadRequest(f"Invalid JSON pointer {path!r}: it must start with '/'.")
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/"))


def parse_patch(body: Any, *, draft: bool) -> list[PatchOp]:
    """Operations of a v2.1 (RFC 6902) or v2.0 (draft, ``{"add": path}``) JSON-patch body."""
    if not isinstance(body, list):
        raise BadRequest("A JSON-patch body is a list of operations.")
    changes = []
    op: Any
    path: Any
    for item in body:
        if not isinstance(item, dict):
            raise BadRequest("Each JSON-patch operation must be an object.")
        if draft:
            ops = [k for k in ("add", "replace", "remove") if k in item]
            if len(ops) != 1:
                raise BadRequest("Each operation must name exactly one of add, replace, "
                                 "remove.")
            op, path = ops[0], item[ops[0]]
        else:
            op, path = item.get("op"), item.get("path")
            if op not in ("add", "replace", "remove"):
                raise BadRequest(f"Operation {op!r} is not supported; use add, replace or "
                                 "remove.")
        if op != "remove" and "value" not in item:
            raise BadRequest(f"Operation {op} needs a 'value'.")
        changes.append(PatchOp(op=op, path=_pointer(path), value=item.get("value")))
    return changes


def _values(value: str) -> list[str]:
    """``in:a,b,"c,d"`` → [a, b, "c,d"]; a plain value → [value]."""
    if not value.startswith("in:"):
        return [value]
    return next(csv.reader([value[3:]], skipinitialspace=True), [])


def _time_condition(name: str, value: str) -> tuple[str, dt.datetime]:
    op, sep, when = value.partition(":")
    if not sep or op not in TIME_OPERATORS:
        op, when = "eq", value
    try:
        moment = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"Invalid value for '{name}': {value!r} is not "
                              "[operator:]ISO-8601 time.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return op, moment


def images_spec(default: int, maximum: int) -> ListSpec:
    return ListSpec("images", sort_keys=SORT_KEYS, default_limit=default, max_limit=maximum)


def as_page(req: ListRequest) -> Page:
    """The image domain's page from a parsed Glance list request."""
    return Page(limit=req.limit or 0, marker=req.marker,
                sort=[(key.column, key.direction) for key in req.sort])


def parse_page(params: list[tuple[str, str]], default: int, maximum: int) -> Page:
    """``limit``, ``marker`` and the sort, in Glance's dialect (``core.web.listing``)."""
    return as_page(listing.GLANCE.parse(params, images_spec(default, maximum)))


def parse_filters(params: list[tuple[str, str]]) -> Filters:
    f = Filters()
    for name, value in params:
        if name in PAGING:
            continue
        if name in ("id", "name", "status", "disk_format", "container_format"):
            attr = {"id": "ids", "name": "names", "status": "statuses",
                    "disk_format": "disk_formats", "container_format": "container_formats"}[name]
            current = getattr(f, attr)
            values = _values(value)
            setattr(f, attr, values if current is None else
                    [v for v in current if v in values])
        elif name == "visibility":
            if value not in (*VISIBILITIES, "all"):
                raise BadRequest(f"Invalid visibility value {value!r}: must be one of "
                                 f"{', '.join((*VISIBILITIES, 'all'))}.")
            f.visibility = value
        elif name == "member_status":
            if value not in ("accepted", "pending", "rejected", "all"):
                raise BadRequest(f"Invalid member_status {value!r}: accepted, pending, "
                                 "rejected or all.")
            f.member_status = value
        elif name == "owner":
            f.owner = value
        elif name == "tag":
            f.tags.append(value)
        elif name == "os_hidden":
            f.os_hidden = GLANCE_PARAMS.boolean(name, value)
        elif name == "protected":
            f.protected = GLANCE_PARAMS.boolean(name, value)
        elif name == "size_min":
            f.size_min = GLANCE_PARAMS.integer(name, value)
        elif name == "size_max":
            f.size_max = GLANCE_PARAMS.integer(name, value)
        elif name in ("created_at", "updated_at"):
            getattr(f, name).append(_time_condition(name, value))
        elif name in INTEGER_ATTRIBUTES:
            f.attributes[name] = GLANCE_PARAMS.integer(name, value)
        elif name in TEXT_ATTRIBUTES:
            f.attributes[name] = value
        else:
            f.properties.setdefault(name, []).extend(_values(value))
    return f
