"""The SQL of ``GET /v2/images``: which images a caller sees, the filters, keyset paging.

``Filters`` and ``Page`` are the parsed query; ``visibility_clause`` is Glance's visibility
rule as one WHERE clause; ``after`` is keyset pagination over nullable sort keys (NULLs sort
as ``""`` or ``-1``, the same in the ORDER BY and in the marker comparison).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, not_, or_, select, true

from stratus.image.caller import Caller
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
    for name, values in f.properties.items():
        clauses.append(Image.id.in_(select(ImageProperty.image_id).where(
            ImageProperty.name == name, ImageProperty.value.in_(values))))
    return clauses


_NULLABLE_TEXT = ("name", "disk_format", "container_format", "owner")
_NULLABLE_INT = ("size", "virtual_size")


def _sort_expr(key: str) -> Any:
    column = getattr(Image, key)
    if key in _NULLABLE_TEXT:
        return func.coalesce(column, "")
    if key in _NULLABLE_INT:
        return func.coalesce(column, -1)
    return column


def _sort_value(image: Image, key: str) -> Any:
    value = getattr(image, key)
    if value is None:
        return "" if key in _NULLABLE_TEXT else -1
    return value


def after(marker: Image, keys: Iterable[tuple[str, str]]) -> ColumnElement[bool]:
    """Rows after ``marker`` in the order given by ``keys`` (keyset pagination)."""
    keys = list(keys)
    alternatives = []
    for i, (key, direction) in enumerate(keys):
        equal = [_sort_expr(k) == _sort_value(marker, k) for k, _ in keys[:i]]
        expr, value = _sort_expr(key), _sort_value(marker, key)
        beyond = expr < value if direction == "desc" else expr > value
        alternatives.append(and_(*equal, beyond))
    return or_(*alternatives)


def order_by(keys: Iterable[tuple[str, str]]) -> list[Any]:
    """ORDER BY expressions for ``keys`` (the same NULL handling as ``after``)."""
    return [_sort_expr(k).desc() if d == "desc" else _sort_expr(k).asc() for k, d in keys]


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

