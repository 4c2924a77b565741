"""Keyset paging in SQL (``core.db.paging``) on both backends: walking every page gives the
full order (asc, desc, several keys, ties, NULLs first on asc and last on desc), a missing
or invisible marker is ``MarkerNotFound``, and the database returns only the page."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from stratus.core.db import Database
from stratus.core.db.paging import Column, SortKey, page
from stratus.core.exceptions import MarkerNotFound, ValidationError
from tests.dbcount import count_loaded
from tests.integration.core.conftest import Item, Tag

COLUMNS: dict[str, Column] = {"name": Item.name, "size": Item.size, "id": Item.id}

NAMES = [None, "a", "b", "b", None, "c", "a", "b", None, "d", "c", "a"]
SIZES = [3, None, 1, 1, 2, None, 3, 2, 2, 1, None, 3]


@pytest.fixture
async def items(db: Database) -> Database:
    async with db.transaction() as txn:
        for i, (name, size) in enumerate(zip(NAMES, SIZES, strict=True)):
            txn.session.add(Item(id=f"id-{i:02d}", name=name, size=size,
                                 owner="p1" if i % 4 else "p2"))
    return db


def expected(sort: Sequence[SortKey]) -> list[str]:
    """The order the contract promises, computed in Python: NULL smallest, id tie-breaker
    in the last key's direction."""
    rows = [(f"id-{i:02d}", n, s) for i, (n, s) in enumerate(zip(NAMES, SIZES, strict=True))]
    keys = [*sort]
    if not any(k.column == "id" for k in keys):
        keys.append(SortKey("id", keys[-1].direction if keys else "asc"))
    index = {"id": 0, "name": 1, "size": 2}
    for key in reversed(keys):  # stable sorts, least significant key first
        rows.sort(key=lambda r, k=key: (r[index[k.column]] is not None,  # type: ignore[misc]
                                        r[index[k.column]] or 0 if k.column == "size"
                                        else r[index[k.column]] or ""),
                  reverse=key.direction == "desc")
    return [r[0] for r in rows]


async def walk(db: Database, sort: Sequence[SortKey], limit: int) -> list[str]:
    seen: list[str] = []
    marker: str | None = None
    while True:
        async with db.session() as session:
            result = await page(session, select(Item), sort_columns=COLUMNS, sort=sort,
                                marker_id=marker, limit=limit, id_column=Item.id)
        assert len(result.rows) <= limit
        seen += [row.id for row in result.rows]
        if not result.more:
            return seen
        marker = result.rows[-1].id


SORTS = [
    [],
    [SortKey("name")],
    [SortKey("name", "desc")],
    [SortKey("size", "desc"), SortKey("name", "asc")],
    [SortKey("name", "asc"), SortKey("size", "desc")],
    [SortKey("size"), SortKey("id", "desc")],
]


@pytest.mark.parametrize("sort", SORTS, ids=lambda s: ",".join(
    f"{k.column}:{k.direction}" for k in s) or "default")
async def test_walking_every_page_gives_the_full_order(items: Database,
                                                        sort: list[SortKey]) -> None:
    want = expected(sort)
    for limit in (1, 2, 5, 100):
        assert await walk(items, sort, limit) == want


async def test_nulls_sort_first_on_asc_and_last_on_desc(items: Database) -> None:
    async with items.session() as session:
        up = await page(session, select(Item), sort_columns=COLUMNS, sort=[SortKey("name")],
                        marker_id=None, limit=3, id_column=Item.id)
        down = await page(session, select(Item), sort_columns=COLUMNS,
                          sort=[SortKey("name", "desc")], marker_id=None, limit=None,
                          id_column=Item.id)
    assert [r.name for r in up.rows] == [None, None, None] and up.more
    assert [r.name for r in down.rows][-3:] == [None, None, None] and not down.more


async def test_filters_apply_and_the_marker_must_match_them(items: Database) -> None:
    query = select(Item).where(Item.owner == "p1")
    async with items.session() as session:
        first = await page(session, query, sort_columns=COLUMNS, sort=[], marker_id=None,
                           limit=2, id_column=Item.id)
        assert [r.id for r in first.rows] == ["id-01", "id-02"]
        with pytest.raises(MarkerNotFound):  # id-00 belongs to p2: not in this listing
            await page(session, query, sort_columns=COLUMNS, sort=[], marker_id="id-00",
                       limit=2, id_column=Item.id)
        # A wider marker query (e.g. visibility only) lets it serve as a marker anyway.
        after = await page(session, query, sort_columns=COLUMNS, sort=[], marker_id="id-00",
                           limit=2, id_column=Item.id, marker_query=select(Item))
        assert [r.id for r in after.rows] == ["id-01", "id-02"]


async def test_joined_eager_loads_page_by_item(items: Database) -> None:
    """A query with a joinedload of a collection: the page counts items, not joined rows,
    and the marker lookup ignores the loader option."""
    async with items.transaction() as txn:
        for i in range(4):
            for tag in ("x", "y", "z"):
                txn.session.add(Tag(item_id=f"id-{i:02d}", tag=tag))
    query = select(Item).options(joinedload(Item.tags))
    async with items.session() as session:
        result = await page(session, query, sort_columns=COLUMNS, sort=[], marker_id="id-00",
                            limit=2, id_column=Item.id)
    assert [r.id for r in result.rows] == ["id-01", "id-02"] and result.more
    assert [sorted(t.tag for t in r.tags) for r in result.rows] == [["x", "y", "z"]] * 2


async def test_a_missing_marker_is_marker_not_found(items: Database) -> None:
    async with items.session() as session:
        with pytest.raises(MarkerNotFound) as caught:
            await page(session, select(Item), sort_columns=COLUMNS, sort=[SortKey("name")],
                       marker_id="nope", limit=2, id_column=Item.id)
    assert caught.value.status == 400
    assert "nope" in caught.value.message


async def test_unknown_sort_key_and_direction_are_rejected(items: Database) -> None:
    with pytest.raises(ValidationError):
        SortKey("name", "sideways")  # type: ignore[arg-type]
    async with items.session() as session:
        with pytest.raises(ValidationError):
            await page(session, select(Item), sort_columns=COLUMNS, sort=[SortKey("owner")],
                       marker_id=None, limit=2, id_column=Item.id)


async def test_expressions_sort_as_given(items: Database) -> None:
    """A coalesce as the sort column: NULL names sort as "" (image's historical order)."""
    columns = {**COLUMNS, "name": func.coalesce(Item.name, "")}
    async with items.session() as session:
        result = await page(session, select(Item), sort_columns=columns,
                            sort=[SortKey("name", "desc")], marker_id="id-09", limit=2,
                            id_column=Item.id)
    assert [r.id for r in result.rows] == ["id-10", "id-05"]


async def test_page_two_of_a_thousand_rows_loads_only_the_page(db: Database) -> None:
    async with db.transaction() as txn:
        for i in range(1000):
            txn.session.add(Item(id=f"row-{i:04d}", name=f"n{i % 37}", size=i % 11))
    sort = [SortKey("name", "desc"), SortKey("size")]
    async with db.session() as session:
        first = await page(session, select(Item), sort_columns=COLUMNS, sort=sort,
                           marker_id=None, limit=20, id_column=Item.id)
    with count_loaded(Item) as loaded:
        async with db.session() as session:
            second = await page(session, select(Item), sort_columns=COLUMNS, sort=sort,
                                marker_id=first.rows[-1].id, limit=20, id_column=Item.id)
    assert len(second.rows) == 20 and second.more
    assert loaded.count == 21  # the page and the one row that says more follow
    async with db.session() as session:  # the block is over: no longer counted
        await session.scalars(select(Item).limit(5))
    assert loaded.count == 21
