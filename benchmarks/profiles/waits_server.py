"""``python benchmarks/profiles/waits_server.py up ...``: ``stratus up`` in this process,
measuring what its event loop waits on while it is idle (used by ``boot_waits``).

SIGUSR1 starts, SIGUSR2 stops and writes ``$PROF_OUT.json`` then ``$PROF_OUT.done``:

- the loop's idle time: every ``select`` of the selector that blocked, its duration;
- at most every ``SAMPLE_S`` seconds, just before a ``select`` that may block, where every
  task is suspended (its innermost Python coroutine frame, and the first ``stratus`` frame
  on the way there); each sample weighted by how long that ``select`` then blocked, so the
  figures say which awaits the idle time was spent behind;
- SQLite's process-wide write lock (``stratus.core.db.txn._sqlite_writer``): acquisitions,
  time waited for it and held, and the longest queue;
- every call handed to aiosqlite's thread (``Connection._execute``), by function: count and
  seconds, and how many of those seconds the file's write lock was held meanwhile.

Any tree's ``stratus`` runs under it unchanged, so two trees are measured by the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

SAMPLE_S = 0.02

STATE: dict[str, Any] = {"on": False}
IDLE: dict[str, float] = defaultdict(float)
IDLE_HIST: Counter[str] = Counter()
WAITS: Counter[str] = Counter()  # innermost await site -> idle seconds behind it
WAITS_STRATUS: Counter[str] = Counter()
WAITS_N: Counter[str] = Counter()
THREAD_CALLS: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
WRITER: dict[str, float] = defaultdict(float)
POOL: dict[str, float] = defaultdict(float)
HELD_BY: dict[str, float] = {"holders": 0}
_last_sample = [0.0]
_sample: list[Counter[str] | None] = [None]


def _bucket(seconds: float) -> str:
    for edge in (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2):
        if seconds < edge:
            return f"<{edge * 1e3:g}ms"
    return ">=200ms"


def _where(frame: FrameType | None) -> str:
    if frame is None:
        return "?"
    code = frame.f_code
    path = code.co_filename
    for marker in ("site-packages/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.split("/stratus/", 1)[-1]
    return f"{path}:{frame.f_lineno} {code.co_name}"


def _task_site(task: asyncio.Task[Any]) -> tuple[str, str]:
    coro: Any = task.get_coro()
    inner = None
    first_stratus = None
    seen = 0
    while coro is not None and seen < 60:
        seen += 1
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None) \
            or getattr(coro, "gi_frame", None)
        if frame is not None:
            inner = frame
            name = frame.f_code.co_filename
            if "/stratus/" in name and "site-packages" not in name:
                first_stratus = frame
        coro = (getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
                or getattr(coro, "gi_yieldfrom", None))
    return _where(inner), _where(first_stratus)


def _snapshot() -> Counter[str]:
    sites: Counter[str] = Counter()
    for task in asyncio.all_tasks():
        if task.done():
            continue
        inner, ours = _task_site(task)
        sites[f"{inner}  <=  {ours}"] += 1
    return sites


_original_select = selectors.EpollSelector.select


def _select(self: selectors.EpollSelector, timeout: float | None = None) -> Any:
    if not STATE["on"] or timeout == 0:
        return _original_select(self, timeout)
    now = time.perf_counter()
    sample = None
    if now - _last_sample[0] >= SAMPLE_S:
        _last_sample[0] = now
        with contextlib.suppress(RuntimeError):
            sample = _snapshot()
    started = time.perf_counter()
    ready = _original_select(self, timeout)
    blocked = time.perf_counter() - started
    IDLE["seconds"] += blocked
    IDLE["selects"] += 1
    IDLE_HIST[_bucket(blocked)] += 1
    if sample is not None:
        IDLE["sampled_seconds"] += blocked
        total = sum(sample.values()) or 1
        for site, n in sample.items():
            WAITS[site] += blocked * n / total
            WAITS_N[site] += n
    return ready


selectors.EpollSelector.select = _select  # type: ignore[method-assign]


def _install_db_probes() -> None:
    import aiosqlite

    from stratus.core.db import txn

    original_writer = txn._sqlite_writer
    holders: dict[str, int] = defaultdict(int)
    queued: dict[str, int] = defaultdict(int)

    @contextlib.asynccontextmanager
    async def writer(key: str | None) -> AsyncIterator[None]:
        if key is None or not STATE["on"]:
            async with original_writer(key):
                yield
            return
        queued[key] += 1
        WRITER["max_queue"] = max(WRITER["max_queue"], queued[key])
        asked = time.perf_counter()
        async with original_writer(key):
            queued[key] -= 1
            got = time.perf_counter()
            WRITER["acquired"] += 1
            WRITER["waited_s"] += got - asked
            holders[key] += 1
            try:
                yield
            finally:
                holders[key] -= 1
                WRITER["held_s"] += time.perf_counter() - got

    txn._sqlite_writer = writer

    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    out: dict[int, int] = defaultdict(int)

    @event.listens_for(Pool, "checkout")
    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        pool = id(getattr(record, "_ConnectionRecord__pool", None))
        out[pool] += 1
        if STATE["on"]:
            POOL["checkouts"] += 1
            POOL["max_out_one_pool"] = max(POOL["max_out_one_pool"], out[pool])

    @event.listens_for(Pool, "checkin")
    def checkin(dbapi_connection: Any, record: Any) -> None:
        pool = id(getattr(record, "_ConnectionRecord__pool", None))
        out[pool] -= 1

    @event.listens_for(Pool, "connect")
    def connect(dbapi_connection: Any, record: Any) -> None:
        if STATE["on"]:
            POOL["connects"] += 1
            if any(holders.values()):
                POOL["connects_writer_held"] += 1

    @event.listens_for(Pool, "close")
    def close(dbapi_connection: Any, record: Any) -> None:
        if STATE["on"]:
            POOL["closes"] += 1

    original_execute = aiosqlite.Connection._execute

    async def execute(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not STATE["on"]:
            return await original_execute(self, fn, *args, **kwargs)
        name = getattr(fn, "__name__", repr(fn))
        if name == "_waiting" and len(args) > 1:
            name = f"_waiting({getattr(args[1], '__name__', '?')})"
        locked = any(holders.values())
        started = time.perf_counter()
        try:
            return await original_execute(self, fn, *args, **kwargs)
        finally:
            took = time.perf_counter() - started
            entry = THREAD_CALLS[name]
            entry[0] += 1
            entry[1] += took
            if locked:
                entry[2] += took

    aiosqlite.Connection._execute = execute


def _on(signum: int, frame: FrameType | None) -> None:
    for table in (IDLE, IDLE_HIST, WAITS, WAITS_N, THREAD_CALLS, WRITER, POOL):
        table.clear()
    STATE.update(on=True, cpu0=time.process_time(), wall0=time.perf_counter())


def _off(signum: int, frame: FrameType | None) -> None:
    STATE["on"] = False
    wall = time.perf_counter() - STATE["wall0"]
    out = os.environ["PROF_OUT"]
    sampled = IDLE.get("sampled_seconds", 0.0) or 1.0
    report = {
        "wall_s": wall,
        "cpu_s": time.process_time() - STATE["cpu0"],
        "loop_idle_s": IDLE.get("seconds", 0.0),
        "loop_blocking_selects": IDLE.get("selects", 0),
        "idle_histogram": dict(sorted(IDLE_HIST.items())),
        "sampled_idle_s": IDLE.get("sampled_seconds", 0.0),
        "writer": dict(WRITER),
        "pool": dict(POOL),
        "thread_calls": {k: {"n": v[0], "s": round(v[1], 4), "s_writer_held": round(v[2], 4)}
                         for k, v in THREAD_CALLS.items()},
        "idle_behind_share": [(site, round(s / sampled, 4), WAITS_N[site])
                              for site, s in WAITS.most_common(40)],
    }
    with open(out + ".json", "w") as f:
        json.dump(report, f, indent=1)
    with open(out + ".done", "w") as f:
        f.write("1")


def main() -> None:
    signal.signal(signal.SIGUSR1, _on)
    signal.signal(signal.SIGUSR2, _off)
    _install_db_probes()
    sys.argv = ["stratus", *sys.argv[1:]]
    from stratus.cli.main import main as stratus_main

    stratus_main()


if __name__ == "__main__":
    main()
