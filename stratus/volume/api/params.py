"""Cinder's query-string dialect: booleans, integers, sort and the ``GET /volumes`` query.

Every malformed value is a 400 "Invalid input received: ..." as in Cinder.
"""

from __future__ import annotations

import ast
from typing import Any

from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest
from stratus.volume.volumes import VolumeQuery

SORT_KEYS = ("id", "name", "status", "size", "created_at", "updated_at",
             "availability_zone", "bootable")
FILTERS = ("name", "status", "availability_zone", "bootable")


def parse_bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "y", "on", "t"):
        return True
    if lowered in ("false", "0", "no", "n", "off", "f"):
        return False
    raise BadRequest(f"Invalid input received: {name} must be a boolean, not {value!r}.")


def parse_int(value: str, name: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"Invalid input received: {name} must be an integer.") from None
    if number < minimum:
        raise BadRequest(f"Invalid input received: {name} must be >= {minimum}.")
    return number


def parse_sort(params: dict[str, str], keys: tuple[str, ...]) -> list[tuple[str, str]]:
    """``sort=k1:dir,k2`` or ``sort_key``/``sort_dir``; unknown keys are a 400."""
    items: list[tuple[str, str]] = []
    if "sort" in params:
        if "sort_key" in params or "sort_dir" in params:
            raise BadRequest("Invalid input received: The 'sort' parameter cannot be used "
                             "with 'sort_key' or 'sort_dir'.")
        for part in params["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            items.append((key, direction or "desc"))
    elif "sort_key" in params or "sort_dir" in params:
        items.append((params.get("sort_key", "created_at"), params.get("sort_dir", "desc")))
    for key, direction in items:
        if key not in keys:
            raise BadRequest(f"Invalid input received: Invalid sort key {key!r}.")
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Invalid input received: Invalid sort direction {direction!r}.")
    return items


def _metadata(value: str) -> dict[str, Any]:
    try:
        metadata = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        metadata = None
    if not isinstance(metadata, dict):
        raise BadRequest("Invalid input received: metadata must be a dictionary.")
    return metadata


def volume_query(params: dict[str, str], context: RequestContext,
                 limit_max: int) -> VolumeQuery:
    """The ``GET /volumes`` query: ``all_tenants``/``project_id`` (admins), filters, sort,
    ``limit`` (at most ``limit_max``; one more row is asked for, to tell if more follow),
    ``marker`` and ``offset``. Consumes ``all_tenants`` and ``project_id`` from ``params``."""
    all_tenants = context.is_admin and parse_bool(params.pop("all_tenants", "0"),
                                                  "all_tenants")
    project = None if all_tenants else context.project_id
    if context.is_admin and "project_id" in params:
        project = params.pop("project_id")
    filters: dict[str, Any] = {}
    for key in FILTERS:
        if key in params:
            filters[key] = parse_bool(params[key], key) if key == "bootable" else params[key]
    metadata = _metadata(params["metadata"]) if "metadata" in params else None
    limit = parse_int(params["limit"], "limit") if "limit" in params else None
    effective = min(limit, limit_max) if limit is not None else limit_max
    offset = parse_int(params.get("offset", "0"), "offset")
    return VolumeQuery(project, filters=filters, metadata=metadata,
                       sort=parse_sort(params, SORT_KEYS), limit=effective,
                       marker=params.get("marker"), offset=offset)
