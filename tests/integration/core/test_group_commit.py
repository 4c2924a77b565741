"""``GroupCommit`` on both backends: concurrent units share one transaction, each caller
gets its own outcome, one failing unit fails no other, a cancelled caller's unit does not
run, each unit runs in its own caller's context (request id, span), and on PostgreSQL a
batch gives way on a lock rather than deadlock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import event, select, text, update
from sqlalchemy.exc import IntegrityError

from stratus.core import tracing
from stratus.core.context import current_request_id, set_request_id
from stratus.core.db import Database, GroupCommit, Txn
from stratus.core.logging import RequestIdFilter
from tests.integration.core.conftest import Counter


@pytest.fixture
def commits(db: Database) -> Iterator[list[int]]:
    """How many COMMITs the database's engine made (one entry each)."""
    seen: list[int] = []

    def count(*_: Any) -> None:
        seen.append(1)

    event.listen(db.engine.sync_engine, "commit", count)
    yield seen
    event.remove(db.engine.sync_engine, "commit", count)


def insert(key: str, value: int = 0) -> Callable[[Txn], Awaitable[str]]:
    async def unit(txn: Txn) -> str:
        connection = await txn.connection()
        await connection.execute(Counter.__table__.insert().values(key=key, value=value))
        return key

    return unit


async def seed(db: Database, *row_keys: str) -> None:
    """A counter row of value 0 for each key, committed."""
    async with db.transaction() as txn:
        txn.session.add_all([Counter(key=key, value=0) for key in row_keys])


@contextlib.asynccontextmanager
async def row_locked(db: Database, key: str) -> AsyncIterator[None]:
    """Another transaction holds ``key``'s row ``FOR UPDATE`` over the block; it commits
    (and is waited for) on leaving."""
    locked = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with db.transaction() as txn:
            connection = await txn.connection()
            await connection.execute(select(Counter.value).where(Counter.key == key)
                                     .with_for_update())
            locked.set()
            await release.wait()

    holding = asyncio.create_task(holder())
    await locked.wait()
    try:
        yield
    finally:
        release.set()
        async with asyncio.timeout(10):
            await holding


async def keys(db: Database) -> list[str]:
    async with db.transaction(write=False) as txn:
        connection = await txn.connection()
        return sorted((await connection.execute(select(Counter.key))).scalars())


async def test_a_lone_caller_is_one_plain_transaction(db: Database,
                                                      commits: list[int]) -> None:
    group = GroupCommit(db)
    assert await group.run(insert("a")) == "a"
    assert len(commits) == 1
    assert group.batches == 0
    assert await keys(db) == ["a"]


async def test_concurrent_callers_share_one_commit(db: Database, commits: list[int]) -> None:
    group = GroupCommit(db)
    results = await asyncio.gather(*(group.run(insert(f"k{n}"), key=f"k{n}")
                                     for n in range(10)))
    assert results == [f"k{n}" for n in range(10)]  # each caller its own result
    assert len(commits) == 1
    assert (group.batches, group.batched_units, group.retried_alone) == (1, 10, 0)
    assert await keys(db) == sorted(f"k{n}" for n in range(10))


async def test_units_that_arrive_while_a_batch_runs_form_the_next(db: Database) -> None:
    group = GroupCommit(db)
    release = asyncio.Event()
    started = asyncio.Event()

    async def held(txn: Txn) -> str:
        await insert("first")(txn)
        started.set()
        await release.wait()
        return "first"

    # A batch of two (one lane: SQLite's), held open by its first unit.
    first = asyncio.create_task(group.run(held, key="a"))
    beside = asyncio.create_task(group.run(insert("second"), key="b"))
    await started.wait()
    later = [asyncio.create_task(group.run(insert(f"l{n}"))) for n in range(5)]
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in later)  # queued behind the running batch
    release.set()
    assert (await first, await beside) == ("first", "second")
    assert await asyncio.gather(*later) == [f"l{n}" for n in range(5)]
    assert (group.batches, group.batched_units) == (2, 7)


async def test_a_unit_sees_the_units_before_it_of_the_same_key(db: Database) -> None:
    await seed(db, "c")
    group = GroupCommit(db)

    async def increment(txn: Txn) -> int:
        connection = await txn.connection()
        await connection.execute(update(Counter).where(Counter.key == "c")
                                 .values(value=Counter.value + 1))
        return int((await connection.execute(
            select(Counter.value).where(Counter.key == "c"))).scalar_one())

    # Arrival order kept for one key (the batch's sort is stable).
    assert await asyncio.gather(*(group.run(increment, key="c") for _ in range(5))) == [
        1, 2, 3, 4, 5]


async def test_a_batch_runs_its_units_in_key_order(db: Database) -> None:
    group = GroupCommit(db)
    order: list[str] = []

    def noting(key: str) -> Callable[[Txn], Awaitable[str]]:
        async def unit(txn: Txn) -> str:
            order.append(key)
            return key
        return unit

    results = await asyncio.gather(*(group.run(noting(k), key=k) for k in "dbca"))
    assert results == list("dbca")
    # The first caller gathers; all four run as one batch, sorted.
    assert order == list("abcd")


async def test_one_failing_unit_fails_no_other(db: Database, commits: list[int]) -> None:
    group = GroupCommit(db)

    async def failing(txn: Txn) -> str:
        await insert("bad")(txn)  # written, then undone with its failure
        raise ValueError("this unit fails")

    outcomes = await asyncio.gather(
        group.run(insert("a"), key="a"), group.run(failing, key="b"),
        group.run(insert("c"), key="c"), return_exceptions=True)
    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert isinstance(outcomes[1], ValueError)
    # The batch rolled back; the failing unit ran again alone (and failed again, nothing
    # committed), the other two together: one commit.
    assert len(commits) == 1
    assert group.retried_alone == 1
    assert await keys(db) == ["a", "c"]


async def test_failing_units_are_taken_out_one_by_one(db: Database,
                                                       commits: list[int]) -> None:
    group = GroupCommit(db)

    async def failing(txn: Txn) -> str:
        raise LookupError("gone")

    outcomes = await asyncio.gather(*(
        group.run(failing if n in (2, 5) else insert(f"k{n}"), key=f"k{n}")
        for n in range(8)), return_exceptions=True)
    assert [type(o).__name__ for o in outcomes] == [
        "str", "str", "LookupError", "str", "str", "LookupError", "str", "str"]
    assert len(commits) == 1  # the six others still together
    assert group.retried_alone == 2
    assert await keys(db) == [f"k{n}" for n in (0, 1, 3, 4, 6, 7)]


async def test_a_database_error_runs_every_unit_alone(db: Database) -> None:
    await seed(db, "taken")
    group = GroupCommit(db)
    outcomes = await asyncio.gather(
        group.run(insert("a"), key="a"), group.run(insert("taken"), key="b"),
        group.run(insert("c"), key="c"), return_exceptions=True)
    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert isinstance(outcomes[1], IntegrityError)
    assert await keys(db) == ["a", "c", "taken"]
    assert group.retried_alone == 3


async def test_nothing_is_committed_before_the_batch_commits(db: Database) -> None:
    group = GroupCommit(db)
    seen_by_others: list[list[str]] = []
    reader = Database(str(db.url.render_as_string(hide_password=False)))

    async def second(txn: Txn) -> str:
        await insert("b")(txn)
        # The first unit of the batch wrote already; another connection sees nothing.
        async with reader.transaction(write=False) as other:
            connection = await other.connection()
            seen_by_others.append(list((await connection.execute(
                select(Counter.key))).scalars()))
        return "b"

    try:
        assert await asyncio.gather(group.run(insert("a"), key="a"),
                                    group.run(second, key="b")) == ["a", "b"]
    finally:
        await reader.dispose()
    assert seen_by_others == [[]]
    assert await keys(db) == ["a", "b"]


async def test_a_caller_cancelled_before_its_turn_has_its_unit_not_run(
        db: Database) -> None:
    group = GroupCommit(db)
    release = asyncio.Event()
    started = asyncio.Event()

    async def held(txn: Txn) -> str:
        started.set()
        await release.wait()
        return "held"

    first = asyncio.create_task(group.run(held, key="a"))
    beside = asyncio.create_task(group.run(insert("beside"), key="b"))
    await started.wait()  # a batch of two runs, holding the one lane
    cancelled = asyncio.create_task(group.run(insert("cancelled")))
    kept = asyncio.create_task(group.run(insert("kept")))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    release.set()
    assert (await first, await beside) == ("held", "beside")
    assert await kept == "kept"
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await keys(db) == ["beside", "kept"]


async def test_a_caller_cancelled_mid_batch_fails_no_other(db: Database) -> None:
    group = GroupCommit(db)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def slow(txn: Txn) -> str:
        await insert("a")(txn)
        inside.set()
        await release.wait()
        return "a"

    lead = asyncio.create_task(group.run(insert("0"), key="0"))
    waiting = asyncio.create_task(group.run(slow, key="a"))
    later = asyncio.create_task(group.run(insert("b"), key="b"))
    after = asyncio.create_task(group.run(insert("c"), key="c"))
    await inside.wait()  # the batch (0, a, b, c) is at "a"
    waiting.cancel()  # its unit runs on, and commits with the batch
    later.cancel()  # not run yet: skipped
    await asyncio.sleep(0)
    release.set()
    assert await lead == "0"
    assert await after == "c"
    for task in (waiting, later):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await keys(db) == ["0", "a", "c"]


async def test_a_gathering_caller_cancelled_still_runs_the_others(db: Database) -> None:
    group = GroupCommit(db)
    lead = asyncio.create_task(group.run(insert("lead"), key="a"))
    other = asyncio.create_task(group.run(insert("other"), key="b"))
    await asyncio.sleep(0)  # the lead is gathering, the other joined it
    assert group._gathering is not None and len(group._gathering) == 2
    lead.cancel()
    assert await other == "other"
    with pytest.raises(asyncio.CancelledError):
        await lead
    assert await keys(db) == ["other"]


@pytest.mark.parametrize("empty_db_url", ["postgresql"], indirect=True)
async def test_postgresql_batches_lock_in_key_order_and_do_not_deadlock(
        db: Database) -> None:
    """Two processes' batches (two ``Database``s) taking the same two rows, their callers
    arriving in opposite orders: sorted by key, both lock ``a`` first, so neither gives
    way (a deadlock would show as units run again alone)."""
    await seed(db, "a", "b")
    other = Database(db.url.render_as_string(hide_password=False))
    groups = [GroupCommit(db), GroupCommit(other)]

    def locking(key: str) -> Callable[[Txn], Awaitable[str]]:
        async def unit(txn: Txn) -> str:
            connection = await txn.connection()
            await connection.execute(select(Counter.value).where(Counter.key == key)
                                     .with_for_update())
            await asyncio.sleep(0.05)
            await connection.execute(update(Counter).where(Counter.key == key)
                                     .values(value=Counter.value + 1))
            return key
        return unit

    try:
        async with asyncio.timeout(10):
            results = await asyncio.gather(
                groups[0].run(locking("a"), key="a"), groups[0].run(locking("b"), key="b"),
                groups[1].run(locking("b"), key="b"), groups[1].run(locking("a"), key="a"))
    finally:
        await other.dispose()
    assert results == ["a", "b", "b", "a"]
    assert [g.retried_alone for g in groups] == [0, 0]
    assert [g.batches for g in groups] == [1, 1]
    async with db.transaction(write=False) as txn:
        connection = await txn.connection()
        assert dict((await connection.execute(select(Counter.key, Counter.value))).all()) \
            == {"a": 2, "b": 2}


@pytest.mark.parametrize("empty_db_url", ["postgresql"], indirect=True)
async def test_postgresql_a_batch_gives_way_on_a_held_lock(db: Database) -> None:
    """A row locked by another transaction past the batch's lock timeout: the batch rolls
    back and its units run alone, the one on that row waiting as a transaction would."""
    await seed(db, "x")
    group = GroupCommit(db, lock_timeout_ms=100)
    async def bump(txn: Txn) -> int:
        connection = await txn.connection()
        return int((await connection.execute(text(
            "UPDATE core_test_counter SET value = value + 1 WHERE key = 'x' "
            "RETURNING value"))).scalar_one())

    async with row_locked(db, "x"):
        units = [asyncio.create_task(group.run(insert("a"), key="a")),
                 asyncio.create_task(group.run(bump, key="x"))]
        await asyncio.sleep(0.4)  # past the lock timeout: the batch gave way
        assert group.retried_alone >= 1
    async with asyncio.timeout(10):
        assert await asyncio.gather(*units) == ["a", 1]
    assert await keys(db) == ["a", "x"]


@pytest.mark.parametrize("empty_db_url", ["postgresql"], indirect=True)
async def test_postgresql_a_lone_unit_waiting_on_a_lock_holds_up_no_batch(
        db: Database) -> None:
    await seed(db, "x")
    group = GroupCommit(db)
    async def bump(txn: Txn) -> str:
        connection = await txn.connection()
        await connection.execute(text(
            "UPDATE core_test_counter SET value = value + 1 WHERE key = 'x'"))
        return "x"

    async with row_locked(db, "x"):
        waiting = asyncio.create_task(group.run(bump, key="x"))  # alone, waits for the lock
        await asyncio.sleep(0.1)
        async with asyncio.timeout(5):  # the one lane is free: these commit meanwhile
            assert await asyncio.gather(group.run(insert("a"), key="a"),
                                        group.run(insert("b"), key="b")) == ["a", "b"]
        assert not waiting.done()
    async with asyncio.timeout(10):
        assert await waiting == "x"


@pytest.mark.parametrize("empty_db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("lock_timeouts_ms", [(0, 0), (200, 0)])
async def test_postgresql_a_deadlocked_batch_falls_back_to_single_units(
        db: Database, lock_timeouts_ms: tuple[int, int]) -> None:
    """Two batches (two processes' groups) whose units lock two rows in opposite orders:
    a deadlock. The batch PostgreSQL's detector picks (lock timeouts 0), or the one whose
    lock wait times out, rolls back and its units run alone: every caller gets its result,
    none an error. (Not both timing out at once: their units, run alone at the same time,
    would then deadlock as any two transactions locking in opposite orders do.)"""
    await seed(db, "a", "b")
    other = Database(db.url.render_as_string(hide_password=False))
    groups = [GroupCommit(db, lock_timeout_ms=lock_timeouts_ms[0]),
              GroupCommit(other, lock_timeout_ms=lock_timeouts_ms[1])]
    both_locked = asyncio.Barrier(2)

    def crossing(first: str, second: str) -> Callable[[Txn], Awaitable[str]]:
        runs = 0

        async def unit(txn: Txn) -> str:
            nonlocal runs
            runs += 1
            connection = await txn.connection()
            for n, key in enumerate((first, second)):
                await connection.execute(update(Counter).where(Counter.key == key)
                                         .values(value=Counter.value + 1))
                if n == 0 and runs == 1:
                    await both_locked.wait()  # each batch holds its first row
            return first + second

        return unit

    try:
        async with asyncio.timeout(20):
            results = await asyncio.gather(
                groups[0].run(crossing("a", "b"), key="1"), groups[0].run(insert("x"), key="2"),
                groups[1].run(crossing("b", "a"), key="1"), groups[1].run(insert("y"), key="2"))
    finally:
        await other.dispose()
    assert results == ["ab", "x", "ba", "y"]
    assert sorted(g.retried_alone for g in groups) == [0, 2]
    async with db.transaction(write=False) as txn:
        connection = await txn.connection()
        assert dict((await connection.execute(select(Counter.key, Counter.value))).all()) \
            == {"a": 2, "b": 2, "x": 0, "y": 0}


class _Seen:
    """What units of a group commit saw of their callers' context: for each run of a unit
    (and of the after-commit action it queued), the request id it read and logged."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.runs: list[tuple[str, str | None]] = []
        self.after: list[tuple[str, str | None]] = []
        caplog.set_level(logging.INFO)
        caplog.handler.addFilter(RequestIdFilter())  # stamps each record as it is logged
        self.caplog = caplog
        self.log = logging.getLogger("tests.group_commit")

    def logged(self, message: str) -> list[str]:
        return [record.request_id for record in self.caplog.records  # type: ignore[attr-defined]
                if record.getMessage() == message]

    def unit(self, name: str, *, fails: bool = False) -> Callable[[Txn], Awaitable[str]]:
        async def work(txn: Txn) -> str:
            self.runs.append((name, current_request_id()))
            self.log.info("unit %s", name)
            with tracing.span(f"unit {name}"):
                await insert(name)(txn)

            async def after() -> None:
                self.after.append((name, current_request_id()))
                with tracing.span(f"after {name}"):
                    pass

            txn.after_commit(after)
            return name

        return work

    async def caller(self, group: GroupCommit, name: str) -> str:
        """``name``'s unit run under request ``req-<name>``, inside span ``caller <name>``."""
        set_request_id(f"req-{name}")  # this caller's task's context only
        with tracing.span(f"caller {name}"):
            return await group.run(self.unit(name), key=name)


def _parents(spans: InMemorySpanExporter) -> dict[str, str]:
    """Each finished span's name -> its parent's name; request ids stamped as expected."""
    finished = spans.get_finished_spans()
    names = {s.context.span_id: s.name for s in finished}
    for s in finished:
        assert s.attributes is not None
        name = s.name.split()[-1]
        assert s.attributes[tracing.REQUEST_ID_ATTRIBUTE] == f"req-{name}", s.name
    return {s.name: names.get(s.parent.span_id, "?") if s.parent else "-" for s in finished}


async def test_each_unit_of_a_batch_runs_in_its_callers_context(
        db: Database, span_exporter: InMemorySpanExporter,
        caplog: pytest.LogCaptureFixture) -> None:
    """Units batched together each see, log and trace under their own caller's request id
    and span, and so do the after-commit actions they queue (they all ran in the batch's
    task, whose context was its first caller's)."""
    seen = _Seen(caplog)
    group = GroupCommit(db)
    names = ["a", "b", "c"]
    assert await asyncio.gather(*(seen.caller(group, n) for n in names)) == names
    assert (group.batches, group.batched_units, group.retried_alone) == (1, 3, 0)
    assert seen.runs == seen.after == [(n, f"req-{n}") for n in names]
    assert [seen.logged(f"unit {n}") for n in names] == [[f"req-{n}"] for n in names]
    assert _parents(span_exporter) == {
        **{f"unit {n}": f"caller {n}" for n in names},
        **{f"after {n}": f"caller {n}" for n in names},
        **{f"caller {n}": "-" for n in names}}
    assert current_request_id() is None  # nothing leaked into the test's own context


async def test_a_unit_run_again_alone_runs_in_its_callers_context(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """A batch that fails for the database's sake runs each unit again alone, in a task of
    its own: in its caller's context too. The batch's own log line names no caller."""
    async with db.transaction() as txn:
        txn.session.add(Counter(key="taken", value=0))
    seen = _Seen(caplog)
    group = GroupCommit(db)

    async def caller(name: str, work: Callable[[Txn], Awaitable[str]]) -> str:
        set_request_id(f"req-{name}")
        return await group.run(work, key=name)

    outcomes = await asyncio.gather(
        caller("a", seen.unit("a")), caller("taken", seen.unit("taken")),
        caller("c", seen.unit("c")), return_exceptions=True)
    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert isinstance(outcomes[1], IntegrityError)
    assert group.retried_alone == 3
    # In the batch, then each alone; every run under its own caller's id.
    assert sorted(seen.runs) == sorted(2 * [(n, f"req-{n}") for n in ("a", "taken", "c")])
    assert sorted(seen.after) == [("a", "req-a"), ("c", "req-c")]
    failed = [r for r in caplog.records if r.name == "stratus.core.db.group"]
    assert [r.request_id for r in failed] == ["-"]  # type: ignore[attr-defined]


async def test_a_batch_cancelled_mid_unit_cancels_the_unit_in_its_context(
        db: Database) -> None:
    """The batch's task cancelled (the loop closing) while a unit waits: the cancellation
    reaches the unit where it waits, in its caller's context, and every caller is answered."""
    group = GroupCommit(db)
    inside = asyncio.Event()
    cancelled_in: list[str | None] = []

    async def waits(txn: Txn) -> str:
        inside.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled_in.append(current_request_id())
            raise
        return "never"

    async def caller(name: str, work: Callable[[Txn], Awaitable[str]]) -> str:
        set_request_id(f"req-{name}")
        return await group.run(work, key=name)

    first = asyncio.create_task(caller("a", insert("a")))
    waiting = asyncio.create_task(caller("b", waits))
    await inside.wait()
    (lane,) = group._tasks
    lane.cancel()
    for task in (first, waiting):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert cancelled_in == ["req-b"]
    assert await keys(db) == []
