"""``python -m benchmarks.profiles.writer_handoff [bootcpu options]``: ``bootcpu`` (the
all-in-one's units in this process) with SQLite's process-wide write lock
(``stratus.core.db.txn._sqlite_writer``) and the event loop watched over the measured
boots, to tell the boots' waits from their CPU in counts that do not depend on the load:

- turns of the event loop (``_run_once``) in all, the loop's idle time in ``select``;
- per write transaction: the turns it held the lock across (0: it never yielded while
  holding it), the seconds held, the seconds waited for it, the longest queue;
- hand-offs: a holder released the lock with others waiting; the turns and seconds until
  the next holder had it (``asyncio.Lock`` wakes the next waiter's task, which runs a
  turn later at the earliest, whatever else that turn runs);
- who took the lock (the first ``stratus`` frame outside ``stratus.core.db``).

Prints the report as JSON on stdout after ``bootcpu``'s own. ``PYTHONPATH`` picks the
tree under test (it patches only names both trees have).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from benchmarks import bootcpu

TURNS = [0]
IDLE = [0.0]
ON = [False]
STATS: dict[str, float] = collections.defaultdict(float)
HOLD_TURNS: collections.Counter[int] = collections.Counter()
HANDOFF_TURNS: collections.Counter[int] = collections.Counter()
HOLDERS: collections.Counter[str] = collections.Counter()
HOLDER_TURNS: collections.Counter[str] = collections.Counter()
LAST_RELEASE: dict[str, tuple[float, int] | None] = {}


def _caller() -> str:
    frame = sys._getframe(3)
    while frame is not None:
        name = frame.f_code.co_filename
        if "/stratus/" in name and "/stratus/core/db/" not in name and "contextlib" not in name:
            return f"{name.split('/stratus/', 1)[1]}:{frame.f_code.co_name}"
        frame = frame.f_back  # type: ignore[assignment]
    return "?"


def _patch() -> None:
    from stratus.core.db import txn

    original = txn._sqlite_writer

    @contextlib.asynccontextmanager
    async def watched(key: str | None) -> AsyncIterator[None]:
        if key is None or not ON[0]:
            async with original(key):
                yield
            return
        writers = txn._writers.get(asyncio.get_running_loop(), {})
        writer = writers.get(key)
        queue = len(writer.lock._waiters or ()) if writer is not None else 0  # type: ignore[attr-defined]
        STATS["max_queue"] = max(STATS["max_queue"], queue)
        who = _caller()
        began = time.perf_counter()
        async with original(key):
            got, got_turn = time.perf_counter(), TURNS[0]
            STATS["acquired"] += 1
            STATS["waited_s"] += got - began
            last = LAST_RELEASE.get(key)
            if last is not None:  # released with waiters: this is the hand-off's end
                STATS["handoffs"] += 1
                STATS["handoff_s"] += got - last[0]
                HANDOFF_TURNS[min(got_turn - last[1], 5)] += 1
                LAST_RELEASE[key] = None
            HOLDERS[who] += 1
            try:
                yield
            finally:
                turns = TURNS[0] - got_turn
                HOLD_TURNS[min(turns, 5)] += 1
                HOLDER_TURNS[who] += turns
                STATS["held_s"] += time.perf_counter() - got
                writer = txn._writers[asyncio.get_running_loop()][key]
                waiting = writer.lock._waiters  # type: ignore[attr-defined]
                LAST_RELEASE[key] = ((time.perf_counter(), TURNS[0])
                                     if waiting and any(not w.done() for w in waiting)
                                     else None)

    txn._sqlite_writer = watched  # type: ignore[assignment]


HELD_AT: collections.Counter[str] = collections.Counter()


def _holders_await(loop: asyncio.AbstractEventLoop) -> None:
    """Where each write lock's holder task is suspended, at the start of a turn."""
    from stratus.core.db import txn

    for writer in txn._writers.get(loop, {}).values():
        task = writer.owner
        if task is None:
            continue
        coro: Any = task.get_coro()
        frames = []
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None)
            if frame is not None:
                frames.append(f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:"
                              f"{frame.f_lineno} {frame.f_code.co_name}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
        HELD_AT[" <- ".join(reversed(frames[-4:]))] += 1


def _watch_loop(loop: asyncio.AbstractEventLoop) -> None:
    run_once = loop._run_once  # type: ignore[attr-defined]
    selector = loop._selector  # type: ignore[attr-defined]
    select = selector.select

    def counted() -> None:
        TURNS[0] += 1
        if ON[0]:
            _holders_await(loop)
        run_once()

    def timed_select(timeout: float | None = None) -> Any:
        if not ON[0]:
            return select(timeout)
        began = time.perf_counter()
        try:
            return select(timeout)
        finally:
            IDLE[0] += time.perf_counter() - began

    loop._run_once = counted  # type: ignore[attr-defined]
    selector.select = timed_select


def main() -> None:
    parser = argparse.ArgumentParser()
    bootcpu.add_arguments(parser)
    args = parser.parse_args(sys.argv[1:])
    _patch()
    original_boot_all = bootcpu._boot_all
    report: dict[str, Any] = {}

    async def boot_all(client: Any, headers: Any, image_id: str, count: int,
                       connections: int, prefix: str) -> list[str]:
        if prefix != "bench":
            return await original_boot_all(client, headers, image_id, count, connections,
                                           prefix)
        _watch_loop(asyncio.get_running_loop())
        ON[0] = True
        turns0, began = TURNS[0], time.perf_counter()
        cpu0 = time.process_time()
        try:
            return await original_boot_all(client, headers, image_id, count, connections,
                                           prefix)
        finally:
            wall = time.perf_counter() - began
            report.update(posts_wall_s=wall, posts_cpu_s=time.process_time() - cpu0,
                          posts_turns=TURNS[0] - turns0, posts_idle_s=IDLE[0])

    bootcpu._boot_all = boot_all  # type: ignore[assignment]

    async def run() -> Any:
        result = await bootcpu.run(args)
        ON[0] = False
        return result

    result = asyncio.run(run())
    boots = args.boots
    report.update(
        metrics={k: round(v, 3) for k, v in result.metrics.items()},
        writer={k: round(v, 4) for k, v in STATS.items()},
        writer_per_boot=round(STATS["acquired"] / boots, 3),
        hold_turns=dict(sorted(HOLD_TURNS.items())),
        handoff_turns=dict(sorted(HANDOFF_TURNS.items())),
        holders={k: [round(v / boots, 3), round(HOLDER_TURNS[k] / max(v, 1), 3)]
                 for k, v in HOLDERS.most_common()},
        idle_s=round(IDLE[0], 3),
        holder_suspended_at=HELD_AT.most_common(12))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
