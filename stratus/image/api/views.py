"""Response bodies, shaped as Glance's: bare objects, relative links, ``Z`` timestamps."""

from __future__ import annotations

import datetime as dt
from typing import Any

from stratus.core.policy import Caller
from stratus.image.images import Image
from stratus.image.members import ImageMember


def timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def shows_direct_url(caller: Caller) -> bool:
    """Whether ``direct_url`` (where the data is in the store) is shown: to services only
    (a service token, or a user with the ``service`` role), as compute and volume hosts need
    it to clone RBD data; Glance's ``show_image_direct_url`` for everybody leaks the layout."""
    return caller.is_service or "service" in caller.context.roles


def image(img: Image, *, direct_url: bool = False) -> dict[str, Any]:
    """The image's body; ``direct_url`` adds the data's location when it is a URL another
    service can use (``rbd://fsid/pool/image/snap``)."""
    body: dict[str, Any] = {p.name: p.value for p in img.properties}
    body.update({
        "id": img.id,
        "name": img.name,
        "status": img.status,
        "visibility": img.visibility,
        "protected": img.protected,
        "os_hidden": img.os_hidden,
        "checksum": img.checksum,
        "os_hash_algo": img.os_hash_algo,
        "os_hash_value": img.os_hash_value,
        "owner": img.owner,
        "size": img.size,
        "virtual_size": img.virtual_size,
        "min_ram": img.min_ram,
        "min_disk": img.min_disk,
        "disk_format": img.disk_format,
        "container_format": img.container_format,
        "created_at": timestamp(img.created_at),
        "updated_at": timestamp(img.updated_at),
        "tags": sorted(t.value for t in img.tags),
        "self": f"/v2/images/{img.id}",
        "file": f"/v2/images/{img.id}/file",
        "schema": "/v2/schemas/image",
    })
    if direct_url and img.location is not None and img.location.startswith("rbd://"):
        body["direct_url"] = img.location
    return body


def member(m: ImageMember) -> dict[str, Any]:
    return {
        "created_at": timestamp(m.created_at),
        "updated_at": timestamp(m.updated_at),
        "image_id": m.image_id,
        "member_id": m.member,
        "schema": "/v2/schemas/member",
        "status": m.status,
    }
