"""Keyset paging in SQL: the database returns only the page asked for.

``page(session, query, ...)`` looks up the marker row's sort values, adds "after the
marker" to ``query`` as a keyset condition, orders by the sort keys with the id as the last
tie-breaker, and fetches ``limit + 1`` rows (the extra one only says whether more follow).

Contracts:

- NULL is the smallest value of every sort key: first on ``asc``, last on ``desc``, on both
  SQLite (its native order) and PostgreSQL (whose native order is the opposite, so
  ``NULLS FIRST``/``NULLS LAST`` are spelt out). This is the order image's listing had
  (it sorted NULL as ``""`` or ``-1``). A caller wanting another order passes an
  expression (``func.coalesce(...)``) as the sort column.
- The id tie-breaker takes the direction of the last sort key (``asc`` with no key), unless
  the sort already names the id column.
- The marker must be a row of ``marker_query`` (default: ``query`` itself, so filters and
  visibility apply); otherwise ``MarkerNotFound`` (a 400; an API that answers 404 maps it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from stratus.core.exceptions import MarkerNotFound, ValidationError

Direction = Literal["asc", "desc"]
#: A sort column: a mapped attribute (``Image.name``) or any SQL expression.
Column = ColumnElement[Any] | QueryableAttribute[Any]


def _expression(column: Column) -> ColumnElement[Any]:
    return column.expression if isinstance(column, QueryableAttribute) else column


@dataclass(frozen=True)
class SortKey:
    """One key of a sort: the API's name of a sort column and a direction."""

    column: str
    direction: Direction = "asc"

    def __post_init__(self) -> None:
        if self.direction not in ("asc", "desc"):
            raise ValidationError(f"Invalid sort direction {self.direction!r}: must be asc "
                                  "or desc.")


@dataclass(frozen=True)
class Page:
    """The rows of one page (entities for a one-entity query, else rows) and whether more
    rows follow it."""

    rows: list[Any]
    more: bool


def ordered_keys(sort_columns: Mapping[str, Column], sort: Sequence[SortKey],
                 id_column: Column) -> list[tuple[ColumnElement[Any], Direction]]:
    """The sort as (expression, direction) pairs, the id tie-breaker last."""
    keys: list[tuple[ColumnElement[Any], Direction]] = []
    for key in sort:
        if key.column not in sort_columns:
            raise ValidationError(f"Invalid sort key {key.column!r}.")
        keys.append((_expression(sort_columns[key.column]), key.direction))
    id_expr = _expression(id_column)
    if not any(expr.compare(id_expr) for expr, _ in keys):
        keys.append((id_expr, keys[-1][1] if keys else "asc"))
    return keys


def _may_be_null(expr: ColumnElement[Any]) -> bool:
    """Whether ``expr`` can be NULL: a column declared NOT NULL cannot; any other
    expression is taken to."""
    return getattr(expr, "nullable", True) is not False


def order_clauses(keys: Sequence[tuple[ColumnElement[Any], Direction]]) -> list[Any]:
    """ORDER BY for ``keys`` with NULL as the smallest value. On a NOT NULL column the
    NULLS FIRST/LAST is left out (the order is the same): PostgreSQL reads a default B-tree
    index in ASC NULLS LAST order, or backwards in DESC NULLS FIRST, so ``ASC NULLS FIRST``
    or ``DESC NULLS LAST`` spelt out would make it sort every row the WHERE keeps instead
    of reading the first page off the index."""
    clauses = []
    for expr, direction in keys:
        ordered = expr.desc() if direction == "desc" else expr.asc()
        if _may_be_null(expr):
            ordered = ordered.nulls_last() if direction == "desc" else ordered.nulls_first()
        clauses.append(ordered)
    return clauses


def _equal(expr: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
    return expr.is_(None) if value is None else expr == value


def _beyond(expr: ColumnElement[Any], value: Any, direction: Direction) -> ColumnElement[bool]:
    """Rows strictly after ``value`` on this key, NULL being the smallest value."""
    if direction == "asc":
        return expr.is_not(None) if value is None else expr > value
    if value is None:
        return false()
    return or_(expr < value, expr.is_(None))


def _bound(expr: ColumnElement[Any], value: Any,
           direction: Direction) -> ColumnElement[bool] | None:
    """A plain range on the first key that every row after ``value`` is in, when there is
    one: the OR of ``after`` alone lets a database walk an index from its start and test
    each entry (a page deep in a list then costs its depth); with this it seeks. Ascending,
    NULL sorts first, so what follows a value is never NULL; descending, NULL follows every
    value, so the range holds only on a column that cannot be NULL."""
    if value is None:
        return None
    if direction == "asc":
        return expr >= value
    if not _may_be_null(expr):
        return expr <= value
    return None


def after(keys: Sequence[tuple[ColumnElement[Any], Direction]],
          values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows after the row whose sort values are ``values``, in the order of ``keys``."""
    alternatives = []
    for i, (expr, direction) in enumerate(keys):
        equal = [_equal(e, v) for (e, _), v in zip(keys[:i], values[:i], strict=True)]
        alternatives.append(and_(*equal, _beyond(expr, values[i], direction)))
    bound = _bound(keys[0][0], values[0], keys[0][1]) if keys else None
    return or_(*alternatives) if bound is None else and_(bound, or_(*alternatives))


async def page(session: AsyncSession, query: Select[Any], *,
               sort_columns: Mapping[str, Column], sort: Sequence[SortKey],
               marker_id: str | None, limit: int | None, id_column: Column,
               marker_query: Select[Any] | None = None) -> Page:
    """One page of ``query`` in SQL (see the module docstring).

    ``sort_columns`` maps the API's sort key names to expressions; ``sort`` is validated
    against it (``ValidationError``). ``limit`` None: every row after the marker.
    """
    keys = ordered_keys(sort_columns, sort, id_column)
    if marker_id is not None:
        scope = query if marker_query is None else marker_query
        # Built anew from the scope's FROM and WHERE, so its loader options (joinedload of
        # an entity no longer selected) do not come along.
        lookup = select(*(expr for expr, _ in keys)).select_from(*scope.get_final_froms())
        if scope.whereclause is not None:
            lookup = lookup.where(scope.whereclause)
        lookup = lookup.where(_expression(id_column) == marker_id).limit(1)
        values = (await session.execute(lookup)).first()
        if values is None:
            raise MarkerNotFound(marker_id)
        query = query.where(after(keys, tuple(values)))
    query = query.order_by(None).order_by(*order_clauses(keys))
    if limit is not None:
        query = query.limit(limit + 1)
    result = await session.execute(query)
    # One entity: unique() as SQLAlchemy requires for joined eager loads of collections.
    rows = list(result.unique().scalars() if len(query.column_descriptions) == 1
                else result.all())
    if limit is not None and len(rows) > limit:
        return Page(rows[:limit], True)
    return Page(rows, False)


__all__ = ["Column", "Direction", "Page", "SortKey", "after", "order_clauses", "ordered_keys",
           "page"]
