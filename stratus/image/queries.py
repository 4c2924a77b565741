"""The SQL of ``GET /v2/images``: which images a caller sees, the filters, the sort columns.

``Filters`` and ``Page`` are the parsed query; ``visibility_clause`` is Glance's visibility
rule as one WHERE clause; ``SORT_COLUMNS`` the sort keys as expressions (NULLs sort as ``""``
or ``-1``) for ``stratus.core.db.paging``, which pages in SQL.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, not_, or_, select, true

from stratus.core.policy import Caller
from stratus.image.models import Image, ImageMember, ImageProperty, ImageTag


@dataclass
class Filters:
    """``GET /v2/images`` filters. ``None`` means "not filtered"."""

    ids: list[str] | None = None
    names: list[str] | None = None
    statuses: list[str] | None = None
    disk_formats: list[str] | None = None
    container_formats: list[str] | None = None
    visibility: str | None = None
    owner: str | None = None
    tags: list[str] = field(default_factory=list)
    member_status: str = "accepted"
    os_hidden: bool | None = False
    protected: bool | None = None
    size_min: int | None = None
    size_max: int | None = None
    created_at: list[tuple[str, dt.datetime]] = field(default_factory=list)
    updated_at: list[tuple[str, dt.datetime]] = field(default_factory=list)
    properties: dict[str, list[str]] = field(default_factory=dict)
    #: Image attributes compared for equality (``size=1024``, ``checksum=...``), as Glance
    #: compares any filter that names an image column.
    attributes: dict[str, int | str] = field(default_factory=dict)


#: The columns ``attributes`` may name: integers, then text.
INTEGER_ATTRIBUTES = ("size", "virtual_size", "min_ram", "min_disk")
TEXT_ATTRIBUTES = ("checksum", "os_hash_algo", "os_hash_value")


SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "virtual_size",
             "id", "created_at", "updated_at", "visibility", "owner", "min_disk", "min_ram",
             "protected", "os_hidden")
TIME_OPERATORS = ("gt", "gte", "lt", "lte", "eq", "neq")


@dataclass
class Page:
    limit: int
    marker: str | None = None
    #: (key, "asc" | "desc") in order of precedence.
    sort: list[tuple[str, str]] = field(default_factory=lambda: [("created_at", "desc")])


def visibility_clause(caller: Caller, filters: Filters) -> ColumnElement[bool]:
    me = caller.project_id
    owned = Image.owner == me if me else false()
    statuses = None if filters.member_status == "all" else [filters.member_status]
    member_rows = select(ImageMember.image_id).where(ImageMember.member == (me or ""))
    if statuses is not None:
        member_rows = member_rows.where(ImageMember.status.in_(statuses))
    shared_with_me = and_(Image.visibility == "shared", Image.id.in_(member_rows)) \
        if me else false()
    vis = filters.visibility
    if vis is None:
        if caller.is_admin:
            return true()
        return or_(Image.visibility == "public", owned, shared_with_me)
    if vis == "all":
        if caller.is_admin:
            return true()
        return or_(Image.visibility.in_(("public", "community")), owned, shared_with_me)
    clause = Image.visibility == vis
    if caller.is_admin or vis in ("public", "community"):
        return clause
    if vis == "private":
        return and_(clause, owned)
    return and_(clause, or_(owned, shared_with_me))


def filter_clauses(f: Filters) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    lists: list[tuple[Any, list[str] | None]] = [
        (Image.id, f.ids), (Image.name, f.names),
        (Image.status, f.statuses), (Image.disk_format, f.disk_formats),
        (Image.container_format, f.container_formats)]
    for column, values in lists:
        if values is not None:
            clauses.append(column.in_(values))
    if f.owner is not None:
        clauses.append(Image.owner == f.owner)
    for tag in f.tags:
        clauses.append(Image.id.in_(select(ImageTag.image_id).where(ImageTag.value == tag)))
    if f.os_hidden is not None:
        clauses.append(Image.os_hidden == f.os_hidden)
    if f.protected is not None:
        clauses.append(Image.protected == f.protected)
    if f.size_min is not None:
        clauses.append(Image.size >= f.size_min)
    if f.size_max is not None:
        clauses.append(Image.size <= f.size_max)
    for op, when in f.created_at:
        clauses.append(_compare(Image.created_at, op, when))
    for op, when in f.updated_at:
        clauses.append(_compare(Image.updated_at, op, when))
    for name, value in f.attributes.items():
        clauses.append(getattr(Image, name) == value)
    for name, values in f.properties.items():
        clauses.append(Image.id.in_(select(ImageProperty.image_id).where(
            ImageProperty.name == name, ImageProperty.value.in_(values))))
    return clauses


_NULLABLE_TEXT = ("name", "disk_format", "container_format", "owner")
_NULLABLE_INT = ("size", "virtual_size")

#: Sort key → SQL expression: NULL sorts as "" (text) or -1 (sizes), as Glance's order has it.
SORT_COLUMNS: dict[str, Any] = {
    key: func.coalesce(getattr(Image, key), "") if key in _NULLABLE_TEXT
    else func.coalesce(getattr(Image, key), -1) if key in _NULLABLE_INT
    else getattr(Image, key)
    for key in SORT_KEYS}


def visible_clause(caller: Caller) -> ColumnElement[bool]:
    """The images the caller may see at all (a marker must be one): any to an admin;
    public, community, its own, and shared ones it is a member of (any status)."""
    if caller.is_admin:
        return true()
    me = caller.project_id
    if not me:
        return Image.visibility.in_(("public", "community"))
    member_of = select(ImageMember.image_id).where(ImageMember.member == me)
    return or_(Image.visibility.in_(("public", "community")), Image.owner == me,
               and_(Image.visibility == "shared", Image.id.in_(member_of)))


def _compare(column: Any, op: str, when: dt.datetime) -> ColumnElement[bool]:
    result: ColumnElement[bool]
    if op == "gt":
        result = column > when
    elif op == "gte":
        result = column >= when
    elif op == "lt":
        result = column < when
    elif op == "lte":
        result = column <= when
    elif op == "neq":
        result = not_(column == when)
    else:
        result = column == when
    return result

