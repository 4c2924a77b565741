"""``Database.transaction()`` and ``Txn`` on both backends: commit and rollback, the
after-commit actions, ``lock`` excluding a second transaction, ``insert_ignore``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from stratus.core.db import Database, Txn
from stratus.core.db.txn import LOCK_COLUMNS, lock_number
from tests.dbcount import statements_of
from tests.integration.core.conftest import Counter, scratch_database


async def test_commits_on_success_and_rolls_back_on_error(db: Database) -> None:
    async with db.transaction() as txn:
        txn.session.add(Counter(key="a", value=1))
    with pytest.raises(RuntimeError):
        async with db.transaction() as txn:
            txn.session.add(Counter(key="b", value=1))
            await txn.session.flush()
            raise RuntimeError("boom")
    async with db.session() as session:
        assert list(await session.scalars(select(Counter.key))) == ["a"]


async def test_after_commit_runs_in_order_after_the_commit(db: Database) -> None:
    seen: list[str] = []

    async def first() -> None:
        # The row is visible from another session: the commit happened before.
        async with db.session() as session:
            row = await session.get(Counter, "a")
        seen.append(f"first:{row is not None}")

    async def failing() -> None:
        seen.append("failing")
        raise ValueError("a notification failed")

    async def last() -> None:
        seen.append("last")

    async with db.transaction() as txn:
        txn.session.add(Counter(key="a"))
        txn.after_commit(first)
        txn.after_commit(failing)
        txn.after_commit(last)
        assert seen == []
    # A failing action is logged; the ones after it still run; nothing is raised.
    assert seen == ["first:True", "failing", "last"]


async def test_after_commit_does_not_run_on_rollback(db: Database) -> None:
    seen: list[str] = []

    async def action() -> None:
        seen.append("ran")

    with pytest.raises(KeyError):
        async with db.transaction() as txn:
            txn.after_commit(action)
            raise KeyError("x")
    assert seen == []


async def test_insert_ignore_yields_on_a_taken_key(db: Database) -> None:
    async with db.transaction() as txn:
        first = await txn.session.execute(txn.insert_ignore(Counter).values(key="k", value=1))
        second = await txn.session.execute(txn.insert_ignore(Counter).values(key="k", value=2))
        assert Txn.rowcount(first) == 1
        assert Txn.rowcount(second) == 0
    async with db.session() as session:
        assert (await session.get(Counter, "k")).value == 1  # type: ignore[union-attr]


async def _increment(db: Database, gate: asyncio.Event | None, order: list[str],
                     name: str) -> None:
    """Read the counter under the lock, wait, write it back: a lost update without it."""
    async with db.transaction() as txn:
        await txn.lock("counter", "c")
        order.append(f"{name}:locked")
        row = await txn.session.get(Counter, "c")
        assert row is not None
        value = row.value
        if gate is not None:
            gate.set()
        await asyncio.sleep(0.3)
        row.value = value + 1
        order.append(f"{name}:done")


async def _race(first_db: Database, second_db: Database) -> list[str]:
    """Two increments, the second starting while the first holds the lock; the order of
    their steps (the counter must end at 2: no lost update)."""
    async with first_db.transaction() as txn:
        txn.session.add(Counter(key="c", value=0))
    order: list[str] = []
    gate = asyncio.Event()
    first = asyncio.create_task(_increment(first_db, gate, order, "A"))
    await gate.wait()
    second = asyncio.create_task(_increment(second_db, None, order, "B"))
    await asyncio.gather(first, second)
    async with first_db.session() as session:
        assert (await session.get(Counter, "c")).value == 2  # type: ignore[union-attr]
    return order


async def test_lock_makes_the_second_transaction_wait(db: Database) -> None:
    assert await _race(db, db) == ["A:locked", "A:done", "B:locked", "B:done"]


async def test_locks_on_different_keys(db: Database) -> None:
    """PostgreSQL: different keys do not exclude each other. SQLite: a write transaction
    is exclusive as a whole (see ``txn.py``), so the second waits for the first to end."""
    inside = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with db.transaction() as txn:
            await txn.lock("k", "1")
            inside.set()
            await release.wait()

    async def other() -> None:
        async with db.transaction() as txn:
            await txn.lock("k", "2")

    task = asyncio.create_task(holder())
    await inside.wait()
    second = asyncio.create_task(other())
    await asyncio.sleep(0.3)
    assert second.done() is (db.backend == "postgresql")
    release.set()
    async with asyncio.timeout(5):
        await asyncio.gather(task, second)


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    async with scratch_database(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}") as database:
        yield database


async def test_sqlite_write_transactions_are_serialised_across_databases(
        sqlite_db: Database) -> None:
    """Two ``Database`` objects on one file (two units of ``stratus up``) share its lock."""
    other = Database(str(sqlite_db.url))
    try:
        assert await _race(sqlite_db, other) == ["A:locked", "A:done", "B:locked", "B:done"]
    finally:
        await other.dispose()


async def test_nested_sqlite_write_transaction_raises_instead_of_hanging(
        sqlite_db: Database) -> None:
    async with sqlite_db.transaction():
        with pytest.raises(RuntimeError, match="wait for itself"):
            async with sqlite_db.transaction():
                pass


async def test_read_only_transaction_cannot_lock_on_sqlite(db: Database) -> None:
    async with db.transaction(write=False) as txn:
        if db.backend == "sqlite":
            with pytest.raises(RuntimeError):
                await txn.lock("x")
        else:
            await txn.lock("x")


def test_lock_number_is_stable_and_signed_64_bit() -> None:
    assert lock_number("quota", "p1") == lock_number("quota", "p1")
    assert lock_number("quota", "p1") != lock_number("quota", "p2")
    assert lock_number("a/b") != lock_number("a", "b")
    assert -(2**63) <= lock_number("x") < 2**63


# SQLite ignores one_statement.
@pytest.mark.parametrize("empty_db_url", ["postgresql"], indirect=True)
async def test_a_one_statement_transaction_commits_each_statement_alone(db: Database) -> None:
    # In one transaction every statement has the transaction's id; alone, each statement
    # is a transaction of its own.
    txid = text("SELECT txid_current()")
    async with db.transaction(one_statement=True) as txn:
        connection = await txn.connection()
        first, second = [(await connection.execute(txid)).scalar() for _ in range(2)]
        assert first != second
        with pytest.raises(RuntimeError):
            await txn.lock("k")
    async with db.transaction() as txn:  # the pooled connection is back in transactions
        connection = await txn.connection()
        first, second = [(await connection.execute(txid)).scalar() for _ in range(2)]
        assert first == second


# SQLite's write transaction is exclusive already: no statement takes a lock there.
@pytest.mark.parametrize("empty_db_url", ["postgresql"], indirect=True)
async def test_a_lock_taken_by_a_statement_is_held_to_the_end(db: Database) -> None:
    """``lock_by_statement``: the statement selecting ``LOCK_COLUMNS`` takes the lock (a
    second transaction's ``lock`` waits for the first's commit), and the transaction knows
    it holds it (its own ``lock`` of the key sends nothing; the shared one cannot then be
    taken exclusively)."""
    inside = asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        async with db.transaction() as txn:
            key = txn.lock_by_statement("k", "1")
            assert key is not None
            connection = await txn.connection()
            await connection.execute(select(LOCK_COLUMNS[False]), {"lock_key": key})
            with statements_of(db.engine) as seen:
                await txn.lock("k", "1")
                assert txn.lock_by_statement("k", "1") is None
            assert seen.seen == []
            inside.set()
            await asyncio.sleep(0.3)
            order.append("first:done")

    async def second() -> None:
        await inside.wait()
        async with db.transaction() as txn:
            await txn.lock("k", "1")
            order.append("second:locked")

    async with asyncio.timeout(10):
        await asyncio.gather(first(), second())
    assert order == ["first:done", "second:locked"]
    async with db.transaction() as txn:
        key = txn.lock_by_statement("k", "2", shared=True)
        connection = await txn.connection()
        await connection.execute(select(LOCK_COLUMNS[True]), {"lock_key": key})
        with pytest.raises(RuntimeError):
            await txn.lock("k", "2")


@pytest.mark.parametrize("empty_db_url", ["sqlite"], indirect=True)
async def test_no_statement_takes_a_lock_on_sqlite(db: Database) -> None:
    """SQLite's write transaction is the lock: no statement takes one."""
    async with db.transaction() as txn:
        assert txn.lock_by_statement("k") is None
    async with db.transaction(write=False) as txn:
        with pytest.raises(RuntimeError):
            txn.lock_by_statement("k")


class _Turns:
    """Counts the event loop's turns: a task that yields once a turn."""

    def __init__(self) -> None:
        self.count = 0
        self._task = asyncio.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0)
            self.count += 1

    def stop(self) -> None:
        self._task.cancel()


@pytest.mark.parametrize("empty_db_url", ["sqlite"], indirect=True)
async def test_a_sqlite_write_transaction_ends_without_a_turn_of_the_loop(
        db: Database) -> None:
    """The end of a SQLite write transaction (its COMMIT, the connection back to the pool)
    yields nothing to the loop, so it holds the file's write lock for no turn: SQLAlchemy's
    own ``async with`` close took three (its close in a task of its own, shielded), and
    every queued writer of a burst waited for them."""
    turns = _Turns()
    try:
        async with db.transaction() as txn:
            txn.session.add(Counter(key="t", value=1))
            await asyncio.sleep(0)  # the ticker has started
            before = turns.count
        assert turns.count == before
        async with db.transaction() as txn:
            await (await txn.connection()).execute(text(
                "UPDATE core_test_counter SET value = 2 WHERE key = 't'"))
            before = turns.count
        assert turns.count == before
    finally:
        turns.stop()
    async with db.transaction(write=False) as txn:
        assert await txn.session.get(Counter, "t") is not None


@pytest.mark.parametrize("empty_db_url", ["sqlite"], indirect=True)
async def test_a_queued_sqlite_writer_has_the_lock_a_turn_after_the_last_one_ended(
        db: Database) -> None:
    """The next writer in the queue of a SQLite file is woken by the end of the
    transaction, not after the connection's return to the pool: it runs in the next turn."""
    turns = _Turns()
    release = asyncio.Event()
    ended: list[int] = []
    began: list[int] = []

    async def first() -> None:
        async with db.transaction():
            await release.wait()
            ended.append(turns.count)  # the body's end

    async def second() -> None:
        async with db.transaction():
            began.append(turns.count)

    try:
        one = asyncio.create_task(first())
        await asyncio.sleep(0.05)
        two = asyncio.create_task(second())
        await asyncio.sleep(0.05)
        assert not began  # queued behind the first
        release.set()
        async with asyncio.timeout(5):
            await asyncio.gather(one, two)
        assert began[0] - ended[0] <= 1
    finally:
        turns.stop()


@pytest.mark.parametrize("empty_db_url", ["sqlite"], indirect=True)
async def test_a_failed_sqlite_write_transaction_lets_the_lock_go(db: Database) -> None:
    """A body that raises: the transaction rolls back, the lock is let go and the
    connection goes back to the pool (the next writer gets both)."""
    with pytest.raises(ZeroDivisionError):
        async with db.transaction() as txn:
            txn.session.add(Counter(key="r", value=1))
            await txn.connection()
            raise ZeroDivisionError
    async with asyncio.timeout(5):
        async with db.transaction() as txn:
            assert await txn.session.get(Counter, "r") is None
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
