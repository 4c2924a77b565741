"""``/images``: Nova's image proxy (microversions 2.1 to 2.35; removed from 2.36).

Each call is the image service's, made with the caller's token (so Glance decides what the
caller sees and may delete), and its image shown in Nova's form: status in capitals with a
progress, ``minRam``/``minDisk``, the image's own properties as ``metadata``, the server a
snapshot was taken of, and ``self``/``bookmark``/``alternate`` links.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request, Response

from stratus.compute.api.deps import Context, Runtime, URLs, Version
from stratus.core.exceptions import NotFound
from stratus.core.web.microversions import APIVersion

router = APIRouter(prefix="/v2.1/images")

#: Glance's status → Nova's, and the progress Nova reports with it.
_STATUS = {"active": ("ACTIVE", 100), "saving": ("SAVING", 50), "queued": ("SAVING", 25),
           "importing": ("SAVING", 50), "uploading": ("SAVING", 50),
           "killed": ("ERROR", 0), "deleted": ("DELETED", 0),
           "pending_delete": ("DELETED", 0), "deactivated": ("ERROR", 0)}
#: Glance v2's own attributes; every other key of an image is one of its properties.
_BASE = frozenset({
    "id", "name", "status", "visibility", "protected", "checksum", "os_hash_algo",
    "os_hash_value", "owner", "size", "virtual_size", "min_ram", "min_disk", "disk_format",
    "container_format", "created_at", "updated_at", "tags", "self", "file", "schema",
    "direct_url", "locations", "os_hidden", "stores"})


def _gone_after_235(version: APIVersion) -> None:
    if version.at_least("2.36"):
        raise NotFound("The image proxy API was removed in microversion 2.36: use the "
                       "image service.")


def _time(value: str | None) -> str | None:
    """Nova's form: seconds, ``Z``."""
    if not value:
        return value
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_view(image: dict[str, Any], urls: URLs, glance: str) -> dict[str, Any]:
    """One image as Nova's proxy shows it (``glance``: the image service's URL)."""
    status, progress = _STATUS.get(str(image.get("status")), ("UNKNOWN", 0))
    metadata = {k: v for k, v in image.items() if k not in _BASE}
    body: dict[str, Any] = {
        "id": image["id"],
        "name": image.get("name"),
        "minRam": int(image.get("min_ram") or 0),
        "minDisk": int(image.get("min_disk") or 0),
        "metadata": metadata,
        "created": _time(image.get("created_at")),
        "updated": _time(image.get("updated_at")),
        "status": status,
        "progress": progress,
        "links": [*urls.pair(f"images/{image['id']}"),
                  {"rel": "alternate", "type": "application/vnd.openstack.image",
                   "href": f"{glance}/images/{image['id']}"}],
        "OS-EXT-IMG-SIZE:size": image.get("size"),
    }
    server = metadata.get("instance_uuid")
    if isinstance(server, str) and server:
        body["server"] = {"id": server, "links": urls.pair(f"servers/{server}")}
    return body


def _summary(image: dict[str, Any], urls: URLs, glance: str) -> dict[str, Any]:
    return {"id": image["id"], "name": image.get("name"),
            "links": image_view(image, urls, glance)["links"]}


async def _glance(rt: Runtime, context: Context) -> str:
    endpoint: str = await rt.clients.images.endpoint(context)
    return endpoint.rstrip("/")


async def _list(request: Request, rt: Runtime, context: Context, urls: URLs,
                detail: bool) -> dict[str, Any]:
    # Nova's filters, as Glance names them; limit and marker pass through.
    names = {"name": "name", "status": "status", "limit": "limit", "marker": "marker",
             "type": "image_type", "server": "instance_uuid"}
    params = {names[k]: v for k, v in request.query_params.items() if k in names}
    if "status" in params:
        params["status"] = params["status"].lower()
    images, more = await rt.clients.images.list(context, params)
    glance = await _glance(rt, context)
    view = image_view if detail else _summary
    body: dict[str, Any] = {"images": [view(i, urls, glance) for i in images]}
    if more and images:
        path = "images/detail" if detail else "images"
        query = {**{k: v for k, v in request.query_params.items() if k != "marker"},
                 "marker": images[-1]["id"]}
        href = urls.url(path) + "?" + "&".join(f"{k}={v}" for k, v in query.items())
        body["images_links"] = [{"rel": "next", "href": href}]
    return body


@router.get("")
async def list_images(request: Request, rt: Runtime, context: Context, urls: URLs,
                      version: Version) -> dict[str, Any]:
    _gone_after_235(version)
    return await _list(request, rt, context, urls, detail=False)


@router.get("/detail")
async def list_images_detail(request: Request, rt: Runtime, context: Context, urls: URLs,
                             version: Version) -> dict[str, Any]:
    _gone_after_235(version)
    return await _list(request, rt, context, urls, detail=True)


@router.get("/{image_id}")
async def show_image(image_id: str, rt: Runtime, context: Context, urls: URLs,
                     version: Version) -> dict[str, Any]:
    _gone_after_235(version)
    image = await rt.clients.images.find(context, image_id)
    if image is None:
        raise NotFound("Image not found.")
    return {"image": image_view(image, urls, await _glance(rt, context))}


@router.delete("/{image_id}", status_code=204)
async def delete_image(image_id: str, rt: Runtime, context: Context,
                       version: Version) -> Response:
    _gone_after_235(version)
    if await rt.clients.images.find(context, image_id) is None:
        raise NotFound("Image not found.")
    await rt.clients.images.delete(context, image_id)
    return Response(status_code=204)
