"""Cinder's query strings: the list requests of volumes, snapshots and types, in core's
Cinder dialect (``core.web.listing.CINDER``, ``core.web.params.CINDER``).

Every malformed value is a 400 "Invalid input received: ..." as in Cinder.
"""

from __future__ import annotations

import ast
from typing import Any

from stratus.core.context import RequestContext
from stratus.core.db.paging import SortKey
from stratus.core.exceptions import BadRequest
from stratus.core.web import listing
from stratus.core.web.listing import ListRequest, ListSpec, QueryLike
from stratus.core.web.params import CINDER
from stratus.volume.queries import ListQuery

SORT_KEYS = ("id", "name", "status", "size", "created_at", "updated_at",
             "availability_zone", "bootable")
FILTERS = ("name", "status", "availability_zone", "bootable")
SNAPSHOT_SORT_KEYS = ("id", "name", "status", "size", "created_at", "updated_at")
SNAPSHOT_FILTERS = ("name", "status", "volume_id")
TYPE_SORT_KEYS = ("id", "name", "created_at", "is_public")


def parse_bool(value: str, name: str) -> bool:
    return CINDER.boolean(name, value)


def parse_sort(params: dict[str, str], keys: tuple[str, ...]) -> list[tuple[str, str]]:
    """``sort=k1:dir,k2`` or ``sort_key``/``sort_dir``; unknown keys are a 400."""
    req = listing.CINDER.parse(list(params.items()), ListSpec("", sort_keys=keys))
    return [(key.column, key.direction) for key in req.sort]


def _metadata(value: str) -> dict[str, Any]:
    try:
        metadata = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        metadata = None
    if not isinstance(metadata, dict):
        raise BadRequest("Invalid input received: metadata must be a dictionary.")
    return metadata


def list_sort(req: ListRequest) -> list[SortKey]:
    return [SortKey(key.column, key.direction) for key in req.sort]


def _scope(req: ListRequest, context: RequestContext) -> tuple[ListRequest, str | None]:
    """Whose rows: the caller's project, or (admins) ``all_tenants``/``project_id``; those
    two parameters are then forgotten (not filters, not in the links)."""
    all_tenants = context.is_admin and parse_bool(req.filter("all_tenants") or "0",
                                                  "all_tenants")
    project = None if all_tenants else context.project_id
    if context.is_admin and req.filter("project_id") is not None:
        project = req.filter("project_id")
        return req.without("all_tenants", "project_id"), project
    return req.without("all_tenants"), project


def volume_query(query: QueryLike, spec: ListSpec,
                 context: RequestContext) -> tuple[ListRequest, ListQuery]:
    """The ``GET /volumes`` request: filters, sort, ``limit`` (at most the spec's),
    ``marker`` and ``offset``."""
    req, project = _scope(listing.CINDER.parse(query, spec), context)
    filters: dict[str, Any] = {}
    for key in FILTERS:
        value = req.filter(key)
        if value is not None:
            filters[key] = parse_bool(value, key) if key == "bootable" else value
    metadata = req.filter("metadata")
    return req, ListQuery(project, filters=filters,
                            metadata=_metadata(metadata) if metadata is not None else None,
                            sort=list_sort(req), limit=req.limit, marker=req.marker,
                            offset=req.offset)


def snapshot_query(query: QueryLike, spec: ListSpec,
                   context: RequestContext) -> tuple[ListRequest, ListQuery]:
    """The ``GET /snapshots`` request (``name``, ``status`` and ``volume_id`` filters)."""
    req, project = _scope(listing.CINDER.parse(query, spec), context)
    filters = {k: req.filter(k) for k in SNAPSHOT_FILTERS if req.filter(k) is not None}
    return req, ListQuery(project, filters=filters, sort=list_sort(req), limit=req.limit,
                            marker=req.marker, offset=req.offset)
