"""Group commit: concurrent callers' small units of work run in one transaction.

A caller hands ``GroupCommit.run`` a *unit*: a coroutine function of a ``Txn`` that does a
few statements and returns a result. Units that arrive together (in the same turn of the
event loop, or while every lane is busy with a batch) run one after the other in one
transaction, committed once; each caller then gets its own unit's result or exception. A
database does the same with its commits (one log flush for many); here what is shared is
the transaction's own cost: a pooled connection's check-out and check-in, BEGIN and COMMIT
(on PostgreSQL two round trips and a WAL flush; on SQLite the pages written to the WAL
once for the batch, and one checkpoint in ``CHECKPOINT_EVERY_COMMITS`` batches, not units),
and the Python around them, which under a burst of boots is most of a small hop's cost.

Contracts:

- A batch of one is the plain transaction ``Database.transaction()`` makes, in the
  caller's own task (``one_statement`` honoured): with no concurrency, nothing changes but
  one turn of the event loop the caller yields first, to let the callers of that turn
  join (on SQLite a transaction never yields to the loop otherwise: the driver runs its
  statements on the loop's thread, so without that turn no two units would ever meet).
- No unit's effects are seen as committed before its batch commits, and a caller is
  answered only after that commit. ``after_commit`` actions run after the batch's commit.
- One unit's failure fails no other. When a unit raises, the batch is rolled back; the
  others run again as a batch (up to ``MAX_PEELS`` times; then each alone), and then
  that unit alone, in a transaction of its own, whose outcome (result or exception) its
  caller gets.
  When the batch fails for the database's sake (a deadlock, a lock wait over
  ``lock_timeout_ms``, a busy SQLite lock, a failed COMMIT), every unit runs again alone,
  all at once, each in a task of its own, as their transactions would have run without
  the group (the lane goes on meanwhile).
  So a unit may run more than once, each run but the last rolled back: it must do nothing
  outside its transaction (queue anything else with ``txn.after_commit``) and keep no
  state between runs. A unit sees the effects of the units before it in its batch, as it
  would had they committed just before (its ORM objects are forgotten after it: the next
  unit loads afresh).
- Lock order: a batch runs its units sorted by ``key`` (stable, so one key's units keep
  their order of arrival). Units keyed by the row they lock (an instance's uuid) then lock
  rows in one order in every batch of every process, so two batches cannot deadlock on
  them. Against anything else (another process's transaction locking in another order), a
  batch on PostgreSQL waits at most ``lock_timeout_ms`` for a lock (``SET LOCAL
  lock_timeout``, under PostgreSQL's ``deadlock_timeout`` of 1 s): a deadlock involving a
  batch ends by the batch giving way (its units then run alone, waiting as before) before
  PostgreSQL's detector could choose the other transaction as its victim.
- Cancellation: a caller cancelled before its unit ran in a batch is taken out (the unit
  never runs). A caller cancelled while its batch runs gets ``CancelledError`` at once;
  the batch goes on, and its unit's effects commit or not with it, as a transaction's do
  when its caller is cancelled after its COMMIT was sent. Nobody else's unit is affected.
- Context: a unit runs in its caller's context (``contextvars``: the request id and
  instance its log lines name, the OpenTelemetry span its spans are children of), as a
  copy taken when it was handed over, as a task of its own would have it; so do the
  ``after_commit`` actions it queued. What a batch does for all its units (BEGIN, COMMIT,
  its own log lines) runs in a context of its own, empty: it is no one caller's.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import types
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from stratus.core.db.txn import Txn

if TYPE_CHECKING:
    from stratus.core.db import Database

LOG = logging.getLogger(__name__)

T = TypeVar("T")

#: How many units one batch takes at most: bounds the work a failed batch redoes.
MAX_BATCH = 64
#: Units of one batch that may fail on their own (each then runs alone, the rest together
#: again) before the rest run alone too: bounds how often a unit runs.
MAX_PEELS = 3
#: PostgreSQL: the longest a batch waits for a lock before it gives way (milliseconds).
LOCK_TIMEOUT_MS = 200


#: Every group commit's counts in this process (benchmarks read them): batches of more than
#: one unit, the units they held, the units run again alone.
TOTALS: collections.Counter[str] = collections.Counter()


class _Unit(Generic[T]):
    __slots__ = ("context", "future", "key", "one_statement", "work")

    def __init__(self, work: Callable[[Txn], Awaitable[T]], key: str, one_statement: bool,
                 future: asyncio.Future[T]) -> None:
        self.work = work
        self.key = key
        self.one_statement = one_statement
        self.future = future
        #: The caller's context when it handed the unit over (a copy: what the unit sets
        #: stays its own, as in a task); the unit runs in it wherever it runs.
        self.context = contextvars.copy_context()


class _UnitFailed(Exception):
    """A unit of a batch raised ``error`` (the batch's transaction is rolled back)."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


class GroupCommit:
    """Group commit of one database's small transactions (see the module docstring).

    ``write``: as ``Database.transaction(write=...)`` (on SQLite, whether the batch queues
    with the file's writers). ``lanes``: batches that may run at once (SQLite has one
    writer: 1; on PostgreSQL more let one batch wait on a lock while others go on).
    """

    def __init__(self, db: Database, *, write: bool = True, lanes: int = 1,
                 max_batch: int = MAX_BATCH, lock_timeout_ms: int = LOCK_TIMEOUT_MS) -> None:
        if lanes < 1 or max_batch < 1:
            raise ValueError("a group commit needs at least one lane and one unit a batch")
        self.db = db
        self.write = write
        self.lanes = lanes
        self.max_batch = max_batch
        self.lock_timeout_ms = lock_timeout_ms
        #: Lanes in use: a caller gathering, or a batch's task.
        self._busy = 0
        #: The batch being gathered in this turn of the loop (None: none is).
        self._gathering: list[_Unit[Any]] | None = None
        #: Units that found every lane busy: the next free lane takes them.
        self._pending: deque[_Unit[Any]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Counts, for benchmarks and tests: transactions committed or tried by batches of
        #: more than one unit, the units they held, and the units run again alone.
        self.batches = 0
        self.batched_units = 0
        self.retried_alone = 0

    async def run(self, work: Callable[[Txn], Awaitable[T]], *, key: str = "",
                  one_statement: bool = False) -> T:
        """``work(txn)`` in a transaction, maybe shared with concurrent callers' units;
        its result or exception. ``key``: what it locks (the batch's order);
        ``one_statement``: as ``Database.transaction``'s, honoured when it runs alone."""
        gathering = self._gathering
        if gathering is not None and len(gathering) < self.max_batch:
            return await self._join(gathering, work, key, one_statement)
        if self._busy >= self.lanes or gathering is not None:
            return await self._join(self._pending, work, key, one_statement)
        # A free lane: gather this turn's units, then run them.
        self._busy += 1
        loop = asyncio.get_running_loop()
        own: _Unit[T] = _Unit(work, key, one_statement, loop.create_future())
        batch: list[_Unit[Any]] = [own]
        self._gathering = batch
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            own.future.cancel()
            self._close_gathering(batch)
            self._launch(batch)  # those who joined still run
            raise
        self._close_gathering(batch)
        if len(batch) == 1:
            # Alone: today's transaction, in the caller's task, holding no lane (whatever
            # it waits for, a row lock held for long, holds up no batch).
            self._busy -= 1
            self._next()
            return await self._alone(work, one_statement)
        self._launch(batch)
        return await own.future

    def _close_gathering(self, batch: list[_Unit[Any]]) -> None:
        if self._gathering is batch:
            self._gathering = None

    async def _join(self, queue: list[_Unit[Any]] | deque[_Unit[Any]],
                    work: Callable[[Txn], Awaitable[T]], key: str, one_statement: bool) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        queue.append(_Unit(work, key, one_statement, future))
        # Cancelled before its batch ran it: the future is cancelled with the caller, and
        # a batch skips a unit whose future is done.
        return await future

    def _launch(self, batch: list[_Unit[Any]]) -> None:
        """``batch`` run in a task of its own (this lane's), then whatever is pending."""
        # Its own empty context: a batch's work is no one caller's (each unit's runs in its
        # caller's, ``_together``), and a lane goes on with later callers' batches.
        task = asyncio.get_running_loop().create_task(self._lane(batch),
                                                      context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _next(self) -> None:
        """A lane was freed: if units are pending, a task of its own runs them."""
        if self._pending and self._busy < self.lanes:
            self._busy += 1
            self._launch([])

    async def _lane(self, batch: list[_Unit[Any]]) -> None:
        try:
            while True:
                live = [unit for unit in batch if not unit.future.done()]
                if live:
                    await self._settle(live)
                if not self._pending:
                    return
                batch = [self._pending.popleft()
                         for _ in range(min(self.max_batch, len(self._pending)))]
        except BaseException as exc:
            # This lane's task was cancelled (the loop is closing), or a bug: nobody is left
            # waiting for ever.
            for unit in (*batch, *self._pending):
                if unit.future.done():
                    continue
                if isinstance(exc, Exception):
                    unit.future.set_exception(exc)
                else:
                    unit.future.cancel()
            self._pending.clear()
            raise
        finally:
            self._busy -= 1

    async def _settle(self, batch: list[_Unit[Any]], *, peels: int = MAX_PEELS) -> None:
        """Each unit of ``batch`` answered: together if they can be, else alone."""
        if len(batch) == 1:  # as a caller alone: in a task of its own, holding no lane
            self._alone_soon(batch, retry=False)
            return
        batch.sort(key=_unit_key)
        try:
            results = await self._together(batch)
        except _UnitFailed as failed:
            if isinstance(failed.error, DBAPIError):
                # The database's failure (a deadlock, a lock timeout, a busy lock): every
                # unit alone, at once, as their transactions would have run without the
                # group (one waiting on a lock holds up no other).
                LOG.info("a batch of %d units failed (%s); each runs alone", len(batch),
                         failed.error)
                self._alone_soon(batch)
                return
            if peels == 0:  # one unit's failure too many: every unit alone
                self._alone_soon(batch)
                return
            # One unit's own failure: the others together again, then it alone (after
            # them, as it ran in the batch: a claim refused for the ones before it is
            # refused again, not granted ahead of them).
            rest = [unit for n, unit in enumerate(batch)
                    if n != failed.index and not unit.future.done()]
            if rest:
                await self._settle(rest, peels=peels - 1)
            self._alone_soon([batch[failed.index]])
            return
        except Exception as exc:  # the COMMIT failed: nothing of the batch stands
            LOG.info("a batch of %d units did not commit (%s); each runs alone", len(batch),
                     exc)
            self._alone_soon(batch)
            return
        for unit, result in zip(batch, results, strict=True):
            if not unit.future.done():
                unit.future.set_result(result)

    async def _together(self, batch: list[_Unit[Any]]) -> list[Any]:
        results: list[Any] = []
        self.batches += 1
        self.batched_units += len(batch)
        TOTALS["batches"] += 1
        TOTALS["batched_units"] += len(batch)
        async with self.db.transaction(write=self.write) as txn:
            if txn.dialect == "postgresql" and self.lock_timeout_ms > 0:
                connection = await txn.connection()
                await connection.execute(text(
                    f"SET LOCAL lock_timeout = {int(self.lock_timeout_ms)}"))
            for index, unit in enumerate(batch):
                if unit.future.done():  # its caller was cancelled before its turn
                    results.append(None)
                    continue
                try:
                    # In its caller's context, and so are the actions it queues to run
                    # after the commit (its bus calls' spans and log lines are its own).
                    context, queued = unit.context, len(txn._after)
                    results.append(await _stepped_in(context, context.run(unit.work, txn)))
                    if len(txn._after) > queued:
                        txn._after[queued:] = [_bound(context, action)
                                               for action in txn._after[queued:]]
                    await txn.forget_objects()
                except Exception as exc:
                    raise _UnitFailed(index, exc) from exc
        return results

    def _alone_soon(self, units: list[_Unit[Any]], *, retry: bool = True) -> None:
        """Each unit run again alone in a task of its own, at once, as its transaction
        would have run without the group: the lane goes on with the next batch meanwhile,
        whatever one of them waits for (a row lock held for long)."""
        loop = asyncio.get_running_loop()
        for unit in units:
            task = loop.create_task(self._settle_alone([unit], retry=retry),
                                    context=unit.context)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _settle_alone(self, units: list[_Unit[Any]], *, retry: bool = True) -> None:
        """Each unit in a transaction of its own (``retry``: after its batch failed); its
        caller gets that outcome."""
        for unit in units:
            future = unit.future
            if future.done():
                continue
            self.retried_alone += retry
            TOTALS["retried_alone"] += retry
            try:
                result = await self._alone(unit.work, unit.one_statement)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            except BaseException:  # this task cancelled (the loop is closing)
                future.cancel()
                raise
            else:
                if not future.done():
                    future.set_result(result)

    async def _alone(self, work: Callable[[Txn], Awaitable[T]], one_statement: bool) -> T:
        async with self.db.transaction(write=self.write, one_statement=one_statement) as txn:
            return await work(txn)


def _unit_key(unit: _Unit[Any]) -> str:
    return unit.key


@types.coroutine
def _stepped_in(context: contextvars.Context,
                awaitable: Awaitable[T]) -> Generator[Any, Any, T]:
    """``await awaitable``, each of its steps run in ``context``: what a task made with
    ``context=`` does, in the awaiting task (``_together``'s), without a task of its own
    and the turn of the event loop it waits to start and to hand its result back. What the
    awaitable yields (the future it waits for) is the awaiting task's to wait on; what that
    task gets (the wake-up, a cancellation) is thrown or sent on into the awaitable."""
    steps = awaitable.__await__()
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            if error is None:
                waited = context.run(steps.send, value)
            else:
                waited, error = context.run(steps.throw, error), None
        except StopIteration as done:
            result: T = done.value
            return result
        try:
            value = yield waited
        except GeneratorExit:  # closed early: the awaitable's clean-up in its context too
            context.run(steps.close)
            raise
        except BaseException as exc:  # a cancellation: the awaitable's to handle
            value, error = None, exc


def _bound(context: contextvars.Context,
           action: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``action`` run in ``context``."""
    def run() -> Awaitable[None]:
        return _stepped_in(context, context.run(action))

    return run


__all__ = ["LOCK_TIMEOUT_MS", "MAX_BATCH", "MAX_PEELS", "TOTALS", "GroupCommit"]
