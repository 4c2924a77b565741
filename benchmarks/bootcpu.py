"""Boot CPU in one process: the all-in-one's units built in this interpreter, boots sent
through ASGI, and this process's CPU time (``time.process_time``) per boot.

``boot`` measures a real ``stratus up`` over HTTP; its CPU per boot moves 10-25 % between
identical runs on a loaded machine (the HTTP server, the polls, idle heartbeats of the fake
hosts during a long run). This scenario leaves out what is not the boot path (uvicorn, the
client's polling) so that two trees can be compared, and so that a profile shows the boot
path itself: ``--profile FILE`` writes a cProfile of the measured boots (``pstats`` format).

The cloud: SQLite, the memory bus, the fake virt driver with ``--hosts`` hosts, the noop
network backend, tracing and its span store on as in ``stratus up``; the admin project's
quota lifted, a 4 KiB raw image, ``--warmup`` boots. Then ``--boots`` POSTs at once (no more
than ``--connections`` in flight) and a wait until none is building, polled every
``--poll-interval`` with ``GET /servers?status=BUILD`` (that poll's CPU is counted too, as in
``boot``, and reported apart as ``poll_cpu_ms``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import gc
import os
import pstats
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import Goal, Result
from benchmarks._inprocess import API, admin_with_image, in_process_cloud

DESCRIPTION = "CPU per boot (POST /servers to ACTIVE) of the all-in-one's units in one process"

UNITS = ("identity-api", "image-api", "compute-api", "scheduler", "conductor", "compute-agent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--boots", type=int, default=200, help="boots measured (default 200)")
    parser.add_argument("--hosts", type=int, default=10, help="fake hosts (default 10)")
    parser.add_argument("--warmup", type=int, default=20,
                        help="boots made first and not counted (default 20)")
    parser.add_argument("--connections", type=int, default=50,
                        help="POSTs in flight at most (default 50)")
    parser.add_argument("--poll-interval", type=float, default=0.5,
                        help="seconds between GET /servers?status=BUILD (default 0.5)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="write a cProfile of the measured boots here (the main thread "
                             "only: not SQLite's, and coroutines' times include waits)")
    parser.add_argument("--profile-clock", choices=("wall", "cpu"), default="wall",
                        help="--profile's clock: wall (default) or the main thread's CPU "
                             "time (time.thread_time: what a function costs in CPU, not the "
                             "time it waited or stood preempted on a loaded machine)")
    parser.add_argument("--gc-thresholds", type=_thresholds, default=None, metavar="A,B,C",
                        help="the cyclic collector's thresholds over the measured boots "
                             "(default: stratus's, COLLECTOR_THRESHOLDS)")
    parser.add_argument("--callgrind", action="store_true",
                        help="run under valgrind --tool=callgrind --instr-atstart=no: "
                             "instrumentation is switched on for the measured boots only "
                             "(callgrind_control), so the output's instruction count is "
                             "theirs, whatever the machine's load")
    parser.add_argument("--py-spy", type=Path, metavar="FILE",
                        help="sample the measured boots with py-spy (every thread, CPU only) "
                             "into FILE as collapsed stacks")


def _thresholds(text: str) -> tuple[int, int, int]:
    first, second, third = (int(part) for part in text.split(","))
    return first, second, third


async def _boot_all(client: httpx.AsyncClient, headers: dict[str, str], image_id: str,
                    count: int, connections: int, prefix: str) -> list[str]:
    gate = asyncio.Semaphore(connections)

    async def one(index: int) -> str:
        async with gate:
            response = await client.post(f"{API}/servers", headers=headers, json={
                "server": {"name": f"{prefix}-{index}", "imageRef": image_id,
                           "flavorRef": "1", "networks": "none"}})
        if response.status_code != 202:
            raise RuntimeError(f"POST /servers: {response.status_code} {response.text[:300]}")
        return str(response.json()["server"]["id"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def _wait_built(client: httpx.AsyncClient, headers: dict[str, str],
                      interval: float) -> float:
    """Poll until nothing is building; the CPU seconds the polls themselves took. A page of
    one is enough to tell, as ``boot`` asks (a full page listed every building server on
    each poll: ORM rows by the thousand in the profile that are not the boot path's)."""
    spent = 0.0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        started = time.process_time()
        response = await client.get(f"{API}/servers?status=BUILD&limit=1", headers=headers)
        spent += time.process_time() - started
        response.raise_for_status()
        if not response.json()["servers"]:
            return spent
        await asyncio.sleep(interval)
    raise RuntimeError("boots still building after 600 s")


async def run(args: argparse.Namespace) -> Result:
    if args.gc_thresholds is None:
        from stratus.cli.main import COLLECTOR_THRESHOLDS

        args.gc_thresholds = COLLECTOR_THRESHOLDS
    async with in_process_cloud(UNITS, prefix="bench-bootcpu-", connections=args.connections,
                                compute={"virt_driver": "fake",
                                         "fake_hosts": args.hosts}) as cloud:
        return await _measure(cloud.client, args, cloud.data_dir)


async def _measure(client: httpx.AsyncClient, args: argparse.Namespace,
                   data_dir: Path) -> Result:
    headers, image_id = await admin_with_image(client)
    await _hosts_up(client, headers, args.hosts)
    await _boot_all(client, headers, image_id, args.warmup, args.connections, "warm")
    await _wait_built(client, headers, args.poll_interval)
    # As `stratus up` does once it serves: start-up's objects frozen, the serving thresholds.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*args.gc_thresholds)
    collector = _CollectorClock()

    profiler = None
    if args.profile:
        profiler = (cProfile.Profile(time.thread_time) if args.profile_clock == "cpu"
                    else cProfile.Profile())
    spy = await _start_py_spy(args.py_spy) if args.py_spy else None
    if args.callgrind:
        await _callgrind("on")
    spans_before = _stored_spans(data_dir)
    counts = _SqlCounter()
    grouped_before = _grouped()
    threads_before = _thread_cpu()
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    ids = await _boot_all(client, headers, image_id, args.boots, args.connections, "bench")
    poll_cpu = await _wait_built(client, headers, args.poll_interval)
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    if args.callgrind:
        await _callgrind("off")
    cpu = time.process_time() - cpu_before
    wall = time.perf_counter() - wall_before
    collector.stop()
    counts.stop()
    grouped = _grouped() - grouped_before
    for statement, seen in counts.kinds.most_common():  # what the statements were
        print(f"{seen / args.boots:7.2f}  {statement}", file=sys.stderr)
    threads_after = _thread_cpu()
    spans = _stored_spans(data_dir) - spans_before
    for name, seen in spans.most_common():  # what the spans were
        print(f"{seen / args.boots:7.2f}  span {name}", file=sys.stderr)
    main_cpu = threads_after.get(os.getpid(), 0.0) - threads_before.get(os.getpid(), 0.0)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        await spy.wait()
    listing = await client.get(f"{API}/servers/detail", headers=headers)
    statuses = [s["status"] for s in listing.json()["servers"] if s["id"] in set(ids)]
    metrics: dict[str, float] = {
        "cpu_ms_per_boot": 1000 * cpu / args.boots,
        "poll_cpu_ms": 1000 * poll_cpu,
        # The event loop's thread; the rest is SQLite's (aiosqlite runs each connection's
        # statements on a thread of its own) and the span store's writer.
        "main_thread_cpu_ms_per_boot": 1000 * main_cpu / args.boots,
        "wall_s": wall,
        "active": float(statuses.count("ACTIVE")),
        "error": float(statuses.count("ERROR")),
        "load_average": os.getloadavg()[0],
        # Load-independent: SQL statements and COMMITs per boot (every engine of the
        # process, the fake hosts' heartbeats and reports in the run included).
        "sql_statements_per_boot": counts.statements / args.boots,
        "commits_per_boot": counts.commits / args.boots,
        # Load-independent: the spans the span store got over the measured boots (the
        # listing and polling requests included).
        "spans_per_boot": spans.total() / args.boots,
        # The cyclic garbage collector's CPU (the loop's thread, where it runs) and its
        # passes, per boot.
        "gc_cpu_ms_per_boot": 1000 * collector.cpu / args.boots,
        "gc_passes_per_boot": collector.passes / args.boots,
    }
    # Load-dependent: units of work committed in batches of several (group commit), those
    # batches, and the units a failed batch ran again alone, per boot.
    metrics["grouped_units_per_boot"] = grouped["batched_units"] / args.boots
    metrics["group_batches_per_boot"] = grouped["batches"] / args.boots
    metrics["group_retried_alone_per_boot"] = grouped["retried_alone"] / args.boots
    if profiler:
        metrics["python_calls_per_boot"] = pstats.Stats(profiler).total_calls / args.boots
    return Result(metrics, goals=[Goal("cpu_ms_per_boot", 10.0, "<=",
                                       "issue 21: in-process, profiler off")])


def _grouped() -> collections.Counter[str]:
    """Every group commit's counts so far (``stratus.core.db.group.TOTALS``)."""
    from stratus.core.db.group import TOTALS

    return collections.Counter(TOTALS)


def _stored_spans(data_dir: Path) -> collections.Counter[str]:
    """The span store's spans so far, by name (the pending ones written first)."""
    from opentelemetry import trace

    from stratus.core.spanstore import FILE_NAME

    provider = trace.get_tracer_provider()
    provider.force_flush()  # type: ignore[attr-defined]
    with contextlib.closing(sqlite3.connect(data_dir / FILE_NAME)) as db:
        rows = db.execute("SELECT name, count(*) FROM spans GROUP BY name").fetchall()
    return collections.Counter({name: seen for name, seen in rows})


class _SqlCounter:
    """Counts the statements and COMMITs of every SQLAlchemy engine until ``stop``."""

    def __init__(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        self.statements = 0
        self.commits = 0
        self.kinds: collections.Counter[str] = collections.Counter()
        self._engine = Engine
        event.listen(Engine, "before_cursor_execute", self._statement)
        event.listen(Engine, "commit", self._commit)

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements += 1
        self.kinds[" ".join(statement.split())[:90]] += 1

    def _commit(self, *args: Any) -> None:
        self.commits += 1

    def stop(self) -> None:
        from sqlalchemy import event

        event.remove(self._engine, "before_cursor_execute", self._statement)
        event.remove(self._engine, "commit", self._commit)


class _CollectorClock:
    """The CPU time (``time.thread_time``) the cyclic garbage collector spends, and its
    passes, from now until ``stop()``."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.passes = 0
        self._began = 0.0
        gc.callbacks.append(self._phase)

    def _phase(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.thread_time()
        else:
            self.cpu += time.thread_time() - self._began
            self.passes += 1

    def stop(self) -> None:
        gc.callbacks.remove(self._phase)


async def _callgrind(state: str) -> None:
    """Switch callgrind's instrumentation of this process on or off."""
    process = await asyncio.create_subprocess_exec(
        "callgrind_control", "-i", state, str(os.getpid()),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    if await process.wait() != 0:
        raise RuntimeError("callgrind_control failed: is this process under callgrind?")


def _thread_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each live thread of this process, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        seconds[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


async def _start_py_spy(output: Path) -> asyncio.subprocess.Process:
    """``py-spy record`` of this process (from this interpreter's environment), started."""
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
               str(os.getpid()), "--format", "raw", "--threads", "--rate", "200",
               "--output", str(output)]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(1.0)  # attached before the first boot
    return process


async def _hosts_up(client: httpx.AsyncClient, headers: dict[str, str], hosts: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = await client.get(f"{API}/os-hypervisors/detail", headers=headers)
        body: dict[str, Any] = response.json()
        if sum(h["state"] == "up" for h in body["hypervisors"]) >= hosts:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the fake hosts are not up after 60 s")
