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
from stratus.core.quotas import Overage, Quotas, QuotaTable
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
