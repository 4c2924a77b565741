"""What a client may write into an image, and how each value is checked.

``Validator`` checks one attribute, tag or additional property at a time and raises
``ValidationError`` (400) or, for counts over the configured limits, ``PayloadTooLarge``
(413). ``READ_ONLY``/``RESERVED`` attributes are refused with ``read_only_error``'s 403.
"""

from __future__ import annotations

from typing import Any

from stratus.core.config import Settings
from stratus.core.exceptions import Forbidden, PayloadTooLarge, ValidationError
from stratus.image.models import Image

VISIBILITIES = ("public", "private", "shared", "community")
MEMBER_STATUSES = ("pending", "accepted", "rejected")
STATUSES = ("queued", "saving", "active", "killed", "deleted", "pending_delete",
            "deactivated", "uploading", "importing")
#: Statuses whose data counts against the project's size quota.
STORED = ("active", "deactivated")

#: Attributes a client may set (subject to policy and state).
WRITABLE = ("name", "visibility", "protected", "os_hidden", "min_disk", "min_ram",
            "disk_format", "container_format", "tags", "owner")
READ_ONLY = frozenset({"id", "status", "checksum", "os_hash_algo", "os_hash_value", "size",
                       "virtual_size", "created_at", "updated_at", "self", "file", "schema",
                       "direct_url", "locations", "stores"})
RESERVED = frozenset({"deleted", "deleted_at", "location"})
#: Glance keeps properties named so for itself (import state, stores): clients may not set
#: them (Glance's 403).
RESERVED_PREFIX = "os_glance_"
MAX_INT = 2**31 - 1
MAX_PROPERTY_VALUE = 65535


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def properties_of(image: Image) -> dict[str, str]:
    return {p.name: p.value for p in image.properties}


class Validator:
    def __init__(self, settings: Settings) -> None:
        self.image = settings.image

    def attribute(self, name: str, value: Any) -> Any:
        """A writable attribute's value, checked; raises ``ValidationError``."""
        if name == "name":
            if value is not None and (not isinstance(value, str) or len(value) > 255):
                raise ValidationError("Invalid value for 'name': a string of at most 255 "
                                      "characters or null.")
            return value
        if name == "visibility":
            if value not in VISIBILITIES:
                raise ValidationError(f"Invalid visibility value {value!r}: must be one of "
                                      f"{', '.join(VISIBILITIES)}.")
            return value
        if name in ("protected", "os_hidden"):
            if not isinstance(value, bool):
                raise ValidationError(f"Invalid value for '{name}': {value!r} is not a "
                                      "boolean.")
            return value
        if name in ("min_disk", "min_ram"):
            if not _is_int(value) or not 0 <= value <= MAX_INT:
                raise ValidationError(f"Invalid value for '{name}': {value!r} is not an "
                                      f"integer between 0 and {MAX_INT}.")
            return value
        if name in ("disk_format", "container_format"):
            allowed = (self.image.disk_formats if name == "disk_format"
                       else self.image.container_formats)
            if value is not None and value not in allowed:
                raise ValidationError(f"Invalid value {value!r} for '{name}': must be one of "
                                      f"{', '.join(allowed)}.")
            return value
        if name == "tags":
            if not isinstance(value, list):
                raise ValidationError("Invalid value for 'tags': a list of strings.")
            tags: list[str] = []
            for tag in value:
                self.tag(tag)
                if tag not in tags:
                    tags.append(tag)
            if len(tags) > self.image.quota_image_tags:
                raise PayloadTooLarge(f"Maximum number of tags exceeded "
                                      f"({self.image.quota_image_tags}).")
            return tags
        if name == "owner":
            if value is not None and (not isinstance(value, str) or len(value) > 255):
                raise ValidationError("Invalid value for 'owner': a string of at most 255 "
                                      "characters or null.")
            return value
        raise ValidationError(f"Unknown attribute {name!r}.")  # pragma: no cover

    @staticmethod
    def tag(tag: Any) -> str:
        if not isinstance(tag, str) or not 0 < len(tag) <= 255:
            raise ValidationError(f"Invalid tag {tag!r}: a string of 1 to 255 characters.")
        return tag

    @staticmethod
    def property(name: str, value: Any) -> str:
        if not name or len(name) > 255:
            raise ValidationError(f"Invalid property name {name!r}: 1 to 255 characters.")
        if not isinstance(value, str):
            raise ValidationError(f"Invalid value for property {name!r}: {value!r} is not "
                                  "a string (additional properties must be strings).")
        if len(value) > MAX_PROPERTY_VALUE:
            raise ValidationError(f"Value of property {name!r} is too long.")
        return value

    def check_property_count(self, count: int) -> None:
        if count > self.image.quota_image_properties:
            raise PayloadTooLarge(f"Maximum number of image properties exceeded "
                                  f"({self.image.quota_image_properties}).")


def is_reserved(name: str) -> bool:
    return name in RESERVED or name.startswith(RESERVED_PREFIX)


def read_only_error(name: str) -> Forbidden:
    if is_reserved(name):
        return Forbidden(f"Attribute '{name}' is reserved.")
    return Forbidden(f"Attribute '{name}' is read-only.")

