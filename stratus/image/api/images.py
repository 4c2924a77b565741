"""``/v2/images``: create, list, show, JSON-patch update, delete, actions and tags."""

from __future__ import annotations

import csv
import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from stratus.core.exceptions import BadRequest, UnsupportedMediaType, ValidationError
from stratus.image.api import views
from stratus.image.api.deps import CallerDep, Runtime, Service
from stratus.image.images import PatchOp
from stratus.image.queries import SORT_KEYS, TIME_OPERATORS, Filters, Page
from stratus.image.validation import VISIBILITIES

router = APIRouter(prefix="/v2")

PATCH_V21 = "application/openstack-images-v2.1-json-patch"
PATCH_V20 = "application/openstack-images-v2.0-json-patch"
PAGING = ("limit", "marker", "sort_key", "sort_dir", "sort")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise BadRequest("The request body is empty; a JSON document is expected.")
    try:
        return json.loads(raw)
    except ValueError:
        raise BadRequest("Malformed request body: the body is not valid JSON.") from None


@router.post("/images", status_code=201)
async def create_image(request: Request, svc: Service, caller: CallerDep) -> dict[str, Any]:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object of image attributes.")
    return views.image(await svc.images.create(caller, body))


@router.get("/images")
async def list_images(request: Request, svc: Service, caller: CallerDep,
                      runtime: Runtime) -> dict[str, Any]:
    params = list(request.query_params.multi_items())
    page = parse_page(params, runtime.settings.image.limit_default,
                      runtime.settings.image.limit_max)
    filters = parse_filters(params)
    images, more = await svc.images.list_page(caller, filters, page)
    kept = [(k, v) for k, v in params if k != "marker"]
    body: dict[str, Any] = {
        "images": [views.image(i) for i in images],
        "first": "/v2/images" + (f"?{urlencode(kept)}" if kept else ""),
        "schema": "/v2/schemas/images",
    }
    if more and images:
        body["next"] = "/v2/images?" + urlencode([*kept, ("marker", images[-1].id)])
    return body


@router.get("/images/{image_id}")
async def show_image(image_id: str, svc: Service, caller: CallerDep) -> dict[str, Any]:
    return views.image(await svc.images.get(caller, image_id))


@router.patch("/images/{image_id}")
async def update_image(image_id: str, request: Request, svc: Service,
                       caller: CallerDep) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in (PATCH_V21, PATCH_V20):
        raise UnsupportedMediaType(f"Unsupported Content-Type {media_type or '(none)'!r}; "
                                   f"use {PATCH_V21} or {PATCH_V20}.")
    body = await json_body(request)
    changes = parse_patch(body, draft=media_type == PATCH_V20)
    return views.image(await svc.images.update(caller, image_id, changes))


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


def _boolean(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValidationError(f"Invalid value for the filter '{name}': {value!r} is not a boolean.")


def _integer(name: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValidationError(f"Invalid value for '{name}': {value!r} is not an "
                              "integer.") from None
    if number < minimum:
        raise ValidationError(f"Invalid value for '{name}': must be at least {minimum}.")
    return number


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


def parse_page(params: list[tuple[str, str]], default: int, maximum: int) -> Page:
    get = {k: v for k, v in params}
    limit = _integer("limit", get["limit"]) if "limit" in get else default
    page = Page(limit=min(limit, maximum), marker=get.get("marker"))
    keys = [v for k, v in params if k == "sort_key"]
    dirs = [v for k, v in params if k == "sort_dir"]
    sort: list[tuple[str, str]] = []
    if "sort" in get:
        if keys or dirs:
            raise BadRequest("'sort' cannot be combined with 'sort_key' or 'sort_dir'.")
        for part in get["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            sort.append((key, direction or "desc"))
    elif keys:
        if dirs and len(dirs) not in (1, len(keys)):
            raise BadRequest("Give one sort_dir, or one per sort_key.")
        directions = dirs * len(keys) if len(dirs) == 1 else dirs or ["desc"] * len(keys)
        sort = list(zip(keys, directions, strict=True))
    elif dirs:
        if len(dirs) != 1:
            raise BadRequest("Give one sort_dir, or one per sort_key.")
        sort = [("created_at", dirs[0])]
    for key, direction in sort:
        if key not in SORT_KEYS:
            raise BadRequest(f"Invalid sort key {key!r}: must be one of {', '.join(SORT_KEYS)}.")
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort direction {direction!r}: asc or desc.")
    if sort:
        page.sort = sort
    return page


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
            f.os_hidden = _boolean(name, value)
        elif name == "protected":
            f.protected = _boolean(name, value)
        elif name == "size_min":
            f.size_min = _integer(name, value)
        elif name == "size_max":
            f.size_max = _integer(name, value)
        elif name in ("created_at", "updated_at"):
            getattr(f, name).append(_time_condition(name, value))
        else:
            f.properties.setdefault(name, []).extend(_values(value))
    return f
