"""``/v2/schemas/*``: the JSON schemas Glance publishes for its resources (clients read them).

The image schema's ``disk_format`` and ``container_format`` enumerations are the configured
lists; additional properties are strings, as Glance's are.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stratus.core.config import ImageSettings
from stratus.image.api.deps import Runtime
from stratus.image.validation import STATUSES, VISIBILITIES

router = APIRouter(prefix="/v2/schemas")

_ID = {"type": "string", "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
       "-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"}


def image_schema(settings: ImageSettings) -> dict[str, Any]:
    def read_only(kind: Any, description: str) -> dict[str, Any]:
        return {"type": kind, "readOnly": True, "description": description}

    return {
        "name": "image",
        "properties": {
            "id": {**_ID, "description": "An identifier for the image"},
            "name": {"type": ["null", "string"], "maxLength": 255,
                     "description": "Descriptive name for the image"},
            "status": {"type": "string", "readOnly": True, "enum": list(STATUSES),
                       "description": "Status of the image"},
            "visibility": {"type": "string", "enum": list(VISIBILITIES),
                           "description": "Scope of image accessibility"},
            "protected": {"type": "boolean",
                          "description": "If true, image will not be deletable."},
            "os_hidden": {"type": "boolean",
                          "description": "If true, image will not appear in default image "
                                         "list response."},
            "checksum": {**read_only(["null", "string"], "md5 hash of image contents."),
                         "maxLength": 32},
            "os_hash_algo": {**read_only(["null", "string"],
                                         "Algorithm to calculate the os_hash_value"),
                             "maxLength": 64},
            "os_hash_value": {**read_only(["null", "string"],
                                          "Hexdigest of the image contents using the "
                                          "algorithm specified by the os_hash_algo"),
                              "maxLength": 128},
            "owner": {"type": ["null", "string"], "maxLength": 255,
                      "description": "Owner of the image"},
            "size": read_only(["null", "integer"], "Size of image file in bytes"),
            "virtual_size": read_only(["null", "integer"], "Virtual size of image in bytes"),
            "container_format": {"type": ["null", "string"],
                                 "enum": [None, *settings.container_formats],
                                 "description": "Format of the container"},
            "disk_format": {"type": ["null", "string"],
                            "enum": [None, *settings.disk_formats],
                            "description": "Format of the disk"},
            "created_at": read_only("string", "Date and time of image registration"),
            "updated_at": read_only("string", "Date and time of the last image "
                                              "modification"),
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 255},
                     "description": "List of strings related to the image"},
            "min_ram": {"type": "integer", "minimum": 0,
                        "description": "Amount of ram (in MB) required to boot image."},
            "min_disk": {"type": "integer", "minimum": 0,
                         "description": "Amount of disk space (in GB) required to boot "
                                        "image."},
            "self": read_only("string", "An image self url"),
            "file": read_only("string", "An image file url"),
            "schema": read_only("string", "An image schema url"),
        },
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def member_schema() -> dict[str, Any]:
    return {
        "name": "member",
        "properties": {
            "created_at": {"type": "string", "description": "Date and time of image member "
                                                            "creation"},
            "image_id": {**_ID, "description": "An identifier for the image"},
            "member_id": {"type": "string", "description": "An identifier for the image "
                                                           "member (tenantId)"},
            "status": {"type": "string", "enum": ["pending", "accepted", "rejected"],
                       "description": "The status of this image member"},
            "updated_at": {"type": "string", "description": "Date and time of last "
                                                            "modification of image member"},
            "schema": {"type": "string", "readOnly": True},
        },
    }


@router.get("/image")
async def image(runtime: Runtime) -> dict[str, Any]:
    return image_schema(runtime.settings.image)


@router.get("/images")
async def images(runtime: Runtime) -> dict[str, Any]:
    return {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema(runtime.settings.image)},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


@router.get("/member")
async def member() -> dict[str, Any]:
    return member_schema()


@router.get("/members")
async def members() -> dict[str, Any]:
    return {
        "name": "members",
        "properties": {"members": {"type": "array", "items": member_schema()},
                       "schema": {"type": "string"}},
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }
