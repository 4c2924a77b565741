"""``/v2/schemas/*``: the JSON schemas Glance publishes for its resources (clients read them).

The image schema's ``disk_format`` and ``container_format`` enumerations are the configured
lists; additional properties are strings, as Glance's are.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stratus.core.config import ImageSettings
from stratus.core.exceptions import NotFound
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


# The metadata definitions catalog's schemas (``/v2/schemas/metadefs/*``). Horizon and
# glanceclient read them to know the catalog's fields; they describe what
# ``stratus.image.metadefs`` accepts.

_POSITIVE = {"type": "integer", "minimum": 0}
_STRING_LIST = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}
_TYPES = ["array", "boolean", "integer", "number", "object", "string", None]


def _stamp(what: str) -> dict[str, Any]:
    return {"type": "string", "format": "date-time", "readOnly": True, "description": what}


def property_definition() -> dict[str, Any]:
    """One property's definition: a small JSON schema of its own."""
    return {
        "type": "object",
        "required": ["title", "type"],
        "properties": {
            "name": {"type": "string", "maxLength": 255},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "operators": {"type": "array", "items": {"type": "string"}},
            "type": {"type": "string", "enum": _TYPES},
            "required": _STRING_LIST,
            "minimum": {"type": "number"},
            "maximum": {"type": "number"},
            "maxLength": _POSITIVE,
            "minLength": {**_POSITIVE, "default": 0},
            "pattern": {"type": "string", "format": "regex"},
            "enum": {"type": "array"},
            "readonly": {"type": "boolean"},
            "default": {},
            "items": {"type": "object", "properties": {
                "type": {"type": "string", "enum": _TYPES}, "enum": {"type": "array"}}},
            "maxItems": _POSITIVE,
            "minItems": {**_POSITIVE, "default": 0},
            "uniqueItems": {"type": "boolean", "default": False},
            "additionalItems": {"type": "boolean"},
        },
    }


def _properties_map() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": property_definition()}


def _association_fields() -> dict[str, Any]:
    return {
        "name": {"type": "string", "maxLength": 80,
                 "description": "The resource type's name (e.g. OS::Glance::Image)."},
        "prefix": {"type": "string", "maxLength": 80,
                   "description": "Put in front of the namespace's property names for this "
                                  "resource type."},
        "properties_target": {"type": "string", "maxLength": 80,
                              "description": "Which of the resource's property sets the "
                                             "properties go to (e.g. image)."},
        "created_at": _stamp("When the association was made"),
        "updated_at": _stamp("When the association last changed"),
    }


def namespace_schema() -> dict[str, Any]:
    return {
        "name": "namespace",
        "additionalProperties": False,
        "required": ["namespace"],
        "properties": {
            "namespace": {"type": "string", "maxLength": 80,
                          "description": "The namespace's unique name."},
            "display_name": {"type": "string", "maxLength": 80,
                             "description": "A name for people to read."},
            "description": {"type": "string", "maxLength": 500,
                            "description": "What the namespace's properties are for."},
            "visibility": {"type": "string", "enum": ["public", "private"],
                           "description": "Who sees the namespace."},
            "protected": {"type": "boolean",
                          "description": "If true, the namespace cannot be deleted."},
            "owner": {"type": "string", "maxLength": 255,
                      "description": "The project that owns the namespace."},
            "created_at": _stamp("When the namespace was made"),
            "updated_at": _stamp("When the namespace last changed"),
            "schema": {"type": "string", "readOnly": True},
            "self": {"type": "string", "readOnly": True},
            "resource_type_associations": {"type": "array", "items": {
                "type": "object", "properties": _association_fields()}},
            "properties": _properties_map(),
            "objects": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "description": {"type": "string"},
                "required": _STRING_LIST, "properties": _properties_map()}}},
            "tags": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}}}},
        },
    }


def _collection(name: str, item: dict[str, Any], *, paged: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "properties": {
        name: {"type": "array", "items": item}, "schema": {"type": "string"}}}
    links = [{"rel": "describedby", "href": "{schema}"}]
    if paged:
        body["properties"].update({"first": {"type": "string"}, "next": {"type": "string"}})
        links = [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                 *links]
    body["links"] = links
    return body


def resource_type_schema() -> dict[str, Any]:
    return {"name": "resource_type_association", "additionalProperties": False,
            "required": ["name"], "properties": _association_fields()}


def metadef_property_schema() -> dict[str, Any]:
    schema = property_definition()
    schema["properties"]["name"] = {"type": "string", "maxLength": 255}
    return {"name": "property", "additionalProperties": False,
            "required": ["name", "title", "type"], "properties": schema["properties"]}


def object_schema() -> dict[str, Any]:
    return {"name": "object", "additionalProperties": False, "required": ["name"],
            "properties": {"name": {"type": "string", "maxLength": 255},
                           "description": {"type": "string"},
                           "required": _STRING_LIST, "properties": _properties_map(),
                           "created_at": _stamp("When the object was made"),
                           "updated_at": _stamp("When the object last changed"),
                           "schema": {"type": "string", "readOnly": True},
                           "self": {"type": "string", "readOnly": True}}}


def tag_schema() -> dict[str, Any]:
    return {"name": "tag", "additionalProperties": False, "required": ["name"],
            "properties": {"name": {"type": "string", "maxLength": 255},
                           "created_at": _stamp("When the tag was made"),
                           "updated_at": _stamp("When the tag last changed")}}


_METADEF_SCHEMAS = {
    "namespace": namespace_schema,
    "namespaces": lambda: _collection("namespaces", namespace_schema(), paged=True),
    "resource_type": resource_type_schema,
    "resource_types": lambda: _collection("resource_type_associations",
                                          resource_type_schema(), paged=True),
    "property": metadef_property_schema,
    "properties": lambda: {"name": "properties", "properties": {
        "properties": {"type": "object", "additionalProperties": property_definition()},
        "schema": {"type": "string"}}, "links": [
        {"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
        {"rel": "describedby", "href": "{schema}"}]},
    "object": object_schema,
    "objects": lambda: _collection("objects", object_schema(), paged=True),
    "tag": tag_schema,
    "tags": lambda: _collection("tags", tag_schema(), paged=True),
}


@router.get("/metadefs/{name}")
async def metadef_schema(name: str) -> dict[str, Any]:
    make = _METADEF_SCHEMAS.get(name)
    if make is None:
        raise NotFound(f"No schema named metadefs/{name}.")
    return make()
