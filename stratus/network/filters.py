"""Neutron's list queries in SQL: which attributes of each resource filter and sort, and
one page of a list (``list_page``), so no list loads more rows than the page it serves.

Contracts (Neutron's, as the API had them when it filtered in Python):

* Any attribute a resource shows filters its list; several values mean any of them. Values
  compare as the API shows them: booleans as ``true``/``false`` (case-blind), numbers as
  digits, a null as the empty string, timestamps as ``2026-01-01T12:00:00Z``.
  ``fixed_ips`` takes ``ip_address=X`` / ``subnet_id=Y``; list attributes match when they
  hold the value; attributes that are documents (``binding:profile``, ``allocation_pools``)
  match nothing. ``tags`` / ``tags-any`` / ``not-tags`` / ``not-tags-any`` take
  comma-separated tags. Any other name is a 400 (Neutron's filter validation), as is an
  attribute the caller may not see (``provider:*``, ``binding:*``).
* Sort keys are the scalar attributes; without any, the resource's own order (creation,
  then id). ``page_reverse`` walks the order backwards from the marker; the page is still
  returned in the forward order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    cast,
    exists,
    false,
    func,
    not_,
    or_,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.db.paging import Column, Page, SortKey, page
from stratus.core.exceptions import MarkerNotFound
from stratus.core.policy import Caller
from stratus.core.web import params
from stratus.network.errors import InvalidInput

TAG_FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")

#: A filter: the values asked for (any of them) and the SQL dialect → a WHERE clause.
Filter = Callable[[list[str], str], ColumnElement[bool]]


@dataclass(frozen=True)
class ListQuery:
    """A list request as the domain needs it (the API parses it from the query string)."""

    filters: Mapping[str, list[str]] = field(default_factory=dict)
    sort: Sequence[SortKey] = ()
    marker: str | None = None
    limit: int | None = None
    page_reverse: bool = False
    #: The attributes the answer keeps (``fields``; empty: all): a part may leave out
    #: loading what none of them shows.
    fields: tuple[str, ...] = ()

    def leaves_out(self, attribute: str) -> bool:
        """Whether the answer shows nothing of ``attribute`` and no filter reads it."""
        return bool(self.fields) and attribute not in self.fields \
            and attribute not in self.filters


@dataclass(frozen=True)
class Attributes:
    """How a resource's attributes filter and sort. ``rules``: attribute → the policy rule
    a caller needs to see (and so to filter on) it."""

    filters: Mapping[str, Filter]
    sort: Mapping[str, Column]
    default_sort: tuple[SortKey, ...]
    id_column: Column
    tags: Column | None = None
    rules: Mapping[str, str] = field(default_factory=dict)

    @property
    def sort_keys(self) -> frozenset[str]:
        return frozenset(self.sort)


# Filters -----------------------------------------------------------------------------------


def text(column: Column) -> Filter:
    """A string column; ``""`` also matches null."""
    def where(values: list[str], _: str) -> ColumnElement[bool]:
        clause = column.in_(values)
        return or_(clause, column.is_(None)) if "" in values else clause
    return where


def boolean(column: Column) -> Filter:
    """A boolean column; a value that is not Neutron's word for one matches nothing."""
    words = params.NEUTRON.true | params.NEUTRON.false

    def where(values: list[str], _: str) -> ColumnElement[bool]:
        wanted = {v.lower() for v in values} & words
        return column.in_([params.NEUTRON.boolean("", v) for v in wanted]) if wanted \
            else false()
    return where


def integer(column: Column) -> Filter:
    def where(values: list[str], _: str) -> ColumnElement[bool]:
        numbers = [int(v) for v in values if v.lstrip("-").isdigit() and str(int(v)) == v]
        clause = column.in_(numbers) if numbers else false()
        return or_(clause, column.is_(None)) if "" in values else clause
    return where


def timestamp(column: Column, shown: str = "%Y-%m-%dT%H:%M:%SZ") -> Filter:
    """A time as the API shows it (to the second)."""
    def where(values: list[str], _: str) -> ColumnElement[bool]:
        clauses = []
        for value in values:
            try:
                start = dt.datetime.strptime(value, shown).replace(tzinfo=dt.UTC)
            except ValueError:
                continue
            clauses.append(and_(column >= start, column < start + dt.timedelta(seconds=1)))
        return or_(*clauses) if clauses else false()
    return where


def constant(value: Any) -> Filter:
    """An attribute every row shows the same."""
    shown = ("true" if value else "false") if isinstance(value, bool) else (
        "" if value is None else str(value))

    def where(values: list[str], _: str) -> ColumnElement[bool]:
        wanted = {v.lower() for v in values} if isinstance(value, bool) else set(values)
        return true() if shown in wanted else false()
    return where


def nothing(values: list[str], dialect: str) -> ColumnElement[bool]:
    """A document attribute: no value given as text matches it."""
    return false()


def holds(column: Column, value: str, dialect: str) -> ColumnElement[bool]:
    """The JSON list in ``column`` holds the string ``value``."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB  # not imported by SQLite clouds

        return cast(column, JSONB).contains([value])
    items = func.json_each(column).table_valued("value")
    return exists().select_from(items).where(items.c.value == value)


def json_list(column: Column) -> Filter:
    def where(values: list[str], dialect: str) -> ColumnElement[bool]:
        return or_(*(holds(column, v, dialect) for v in values))
    return where


def member(id_column: Column, owners: Callable[[list[str]], Select[Any]]) -> Filter:
    """A row whose id is among ``owners(values)`` (a related table)."""
    def where(values: list[str], _: str) -> ColumnElement[bool]:
        return id_column.in_(owners(values))
    return where


def _tag_filter(column: Column | None, key: str, values: list[str],
                dialect: str) -> ColumnElement[bool]:
    wanted = sorted({t for v in values for t in v.split(",") if t})
    if not wanted:
        return false() if key == "tags-any" else true()
    if column is None:  # a resource without tags holds none
        return true() if key.startswith("not-") else false()
    held = [holds(column, t, dialect) for t in wanted]
    if key == "tags":
        return and_(*held)
    if key == "tags-any":
        return or_(*held)
    if key == "not-tags":
        return not_(and_(*held))
    return not_(or_(*held))


def standard(model: Any) -> dict[str, Filter]:
    """The standard attributes (project, description, tags, timestamps, revision)."""
    return {"tenant_id": text(model.project_id), "project_id": text(model.project_id),
            "description": text(model.description),
            "created_at": timestamp(model.created_at),
            "updated_at": timestamp(model.updated_at),
            "revision_number": integer(model.revision_number)}


def standard_sort(model: Any) -> dict[str, Column]:
    return {"tenant_id": model.project_id, "project_id": model.project_id,
            "description": model.description, "created_at": model.created_at,
            "updated_at": model.updated_at, "revision_number": model.revision_number}


#: The order of a list without sort keys: creation, then id.
BY_CREATION = (SortKey("created_at"),)


# Paging ------------------------------------------------------------------------------------


def where(attrs: Attributes, query: ListQuery, caller: Caller,
          dialect: str) -> list[ColumnElement[bool]]:
    """The WHERE clauses of ``query``'s filters; a 400 for a name the resource lacks."""
    clauses = []
    for key, values in query.filters.items():
        if key in TAG_FILTERS:
            clauses.append(_tag_filter(attrs.tags, key, values, dialect))
            continue
        rule = attrs.rules.get(key)
        visible = rule is None or caller.check(rule, {"project_id": caller.project_id})
        if key not in attrs.filters or not visible:
            raise InvalidInput(f"['{key}'] is invalid attribute for filtering")
        clauses.append(attrs.filters[key](values, dialect))
    return clauses


async def list_page(session: AsyncSession, dialect: str, caller: Caller, attrs: Attributes,
                    visible: Select[Any], query: ListQuery) -> Page:
    """One page of ``visible`` rows (what the caller may see) matching ``query``."""
    for key in query.sort:
        rule = attrs.rules.get(key.column)
        if key.column not in attrs.sort or (
                rule is not None and not caller.check(rule, {"project_id": caller.project_id})):
            raise InvalidInput(f"{key.column} is invalid attribute for sort_keys")
    sort = list(query.sort or attrs.default_sort)
    if query.page_reverse:  # the id tie-breaker follows the last key, so it turns too
        sort = [SortKey(k.column, "asc" if k.direction == "desc" else "desc") for k in sort]
    try:
        result = await page(session, visible.where(*where(attrs, query, caller, dialect)),
                            sort_columns=attrs.sort, sort=sort, marker_id=query.marker,
                            limit=query.limit, id_column=attrs.id_column)
    except MarkerNotFound as exc:
        raise InvalidInput(f"Marker {query.marker} could not be found.") from exc
    if query.page_reverse:
        return Page(list(reversed(result.rows)), result.more)
    return result
