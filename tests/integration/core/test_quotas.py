"""``core.quotas`` on both backends: defaults and overrides, set and reset, the projects
with overrides, and a check that counts under the project's lock (no two requests take the
last unit)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from sqlalchemy import func, select

from stratus.core.db import Database, Txn
from stratus.core.exceptions import Conflict, Forbidden
from stratus.core.quotas import NeedsExclusiveLock, Overage, Quotas, QuotaTable
from tests.integration.core.conftest import Item, QuotaRow

TABLE = QuotaTable(QuotaRow, {"items": 3, "bytes": -1}, scope="core-test")


async def test_limits_are_defaults_with_overrides(db: Database) -> None:
    async with db.transaction() as txn:
        quotas = Quotas(txn, TABLE)
        assert await quotas.limits("p1") == {"items": 3, "bytes": -1}
        assert await quotas.set("p1", {"items": 5, "extra": 7}) == {
            "items": 5, "bytes": -1, "extra": 7}
        assert await quotas.set("p1", {"items": 6}) == {"items": 6, "bytes": -1, "extra": 7}
        await quotas.set("p2", {"bytes": 10})
        assert await quotas.projects_with_quotas() == ["p1", "p2"]
    async with db.transaction() as txn:
        quotas = Quotas(txn, TABLE)
        await quotas.reset("p1")
        assert await quotas.limits("p1") == {"items": 3, "bytes": -1}
        assert await quotas.projects_with_quotas() == ["p2"]


async def _usage(txn: Txn, project_id: str) -> Mapping[str, int]:
    count = await txn.session.scalar(
        select(func.count()).select_from(Item).where(Item.owner == project_id))
    return {"items": int(count or 0)}


async def test_check_raises_the_tables_error_when_over(db: Database) -> None:
    async with db.transaction() as txn:
        for i in range(3):
            txn.session.add(Item(id=f"i{i}", owner="p1"))
    async with db.transaction() as txn:
        quotas = Quotas(txn, TABLE)
        await quotas.check("p1", {"items": 0}, await _usage(txn, "p1"))
        with pytest.raises(Forbidden) as caught:
            await quotas.check("p1", {"items": 1}, lambda: _usage(txn, "p1"))
    assert caught.value.message == (
        "Quota exceeded for items: Requested 1, but already used 3 of 3 items")

    def conflict(over: Overage) -> Exception:
        return Conflict(f"Quota exceeded for resources: ['{over.resource}'].")

    async with db.transaction() as txn:
        with pytest.raises(Conflict):
            await Quotas(txn, QuotaTable(QuotaRow, {"items": 2}, scope="x", over=conflict)
                         ).check("p1", {"items": 1}, {"items": 2})


async def test_unlimited_resources_are_not_counted(db: Database) -> None:
    async def never() -> Mapping[str, int]:
        raise AssertionError("counted an unlimited resource")

    async with db.transaction() as txn:
        await Quotas(txn, TABLE).check("p1", {"bytes": 10**12}, never)


async def test_concurrent_checks_cannot_both_take_the_last_unit(db: Database) -> None:
    async with db.transaction() as txn:
        for i in range(2):
            txn.session.add(Item(id=f"i{i}", owner="p1"))

    async def create(item_id: str) -> str:
        try:
            async with db.transaction() as txn:
                await Quotas(txn, TABLE).check("p1", {"items": 1}, lambda: _usage(txn, "p1"))
                await asyncio.sleep(0.2)  # the other request checks meanwhile
                txn.session.add(Item(id=item_id, owner="p1"))
        except Forbidden:
            return "over"
        return "made"

    results = await asyncio.gather(create("a"), create("b"))
    assert sorted(results) == ["made", "over"]
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Item)) == 3


UNLIMITED = QuotaTable(QuotaRow, {"items": -1}, scope="core-test-unlimited")


async def test_a_shared_check_that_finds_a_limit_asks_for_the_exclusive_lock(
        db: Database) -> None:
    table = QuotaTable(QuotaRow, {"items": -1}, scope="core-test-hint")
    assert not table.probably_unlimited("p1")
    async with db.transaction() as txn:
        await Quotas(txn, table).check("p1", {"items": 1}, {"items": 0}, shared=True)
    assert table.probably_unlimited("p1")
    async with db.transaction() as txn:
        await Quotas(txn, table).set("p1", {"items": 5})
    with pytest.raises(NeedsExclusiveLock):
        async with db.transaction() as txn:
            await Quotas(txn, table).check("p1", {"items": 1}, {"items": 0}, shared=True)
    assert not table.probably_unlimited("p1")
    async with db.transaction() as txn:  # the same check again under the exclusive lock
        await Quotas(txn, table).check("p1", {"items": 1}, {"items": 0})


async def test_a_counting_check_waits_for_shared_checks_to_commit(db: Database) -> None:
    async with db.transaction() as txn:
        for i in range(2):
            txn.session.add(Item(id=f"i{i}", owner="p1"))
    locked = asyncio.Event()

    async def create_unlimited() -> None:
        async with db.transaction() as txn:
            await Quotas(txn, UNLIMITED).check("p1", {"items": 1}, {}, shared=True)
            locked.set()
            await asyncio.sleep(0.2)  # a limit is set and counted against meanwhile
            txn.session.add(Item(id="a", owner="p1"))

    async def create_counted() -> str:
        await locked.wait()
        async with db.transaction() as txn:
            await Quotas(txn, UNLIMITED).set("p1", {"items": 3})
        try:
            async with db.transaction() as txn:
                await Quotas(txn, UNLIMITED).check("p1", {"items": 1},
                                                   lambda: _usage(txn, "p1"))
                txn.session.add(Item(id="b", owner="p1"))
        except Forbidden:
            return "over"
        return "made"

    _, counted = await asyncio.gather(create_unlimited(), create_counted())
    assert counted == "over"  # it counted the shared check's row: 3 of 3
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Item)) == 3


# SQLite runs one write transaction at a time anyway.
@pytest.mark.parametrize("empty_db_url", ["postgresql"], indirect=True)
async def test_shared_checks_hold_the_lock_together(db: Database) -> None:
    both = asyncio.Barrier(2)

    async def create() -> None:
        async with db.transaction() as txn:
            await Quotas(txn, UNLIMITED).check("p1", {"items": 1}, {}, shared=True)
            # Exclusive, the second would wait for the first's commit, which waits here.
            async with asyncio.timeout(30):
                await both.wait()

    await asyncio.gather(create(), create())


# SQLite's lock() is the transaction's own write lock.
@pytest.mark.parametrize("empty_db_url", ["postgresql"], indirect=True)
async def test_a_key_held_shared_is_not_then_taken_exclusively(db: Database) -> None:
    async with db.transaction() as txn:
        await txn.lock("k", shared=True)
        await txn.lock("k", shared=True)  # held: no second statement
        with pytest.raises(RuntimeError):
            await txn.lock("k")
