"""Boot: POST /servers → ACTIVE, all-in-one and split mode (fake virt driver, no networks).

Modes (``--mode``, default ``both``, all-in-one first):

* ``all-in-one``: one ``stratus up`` (SQLite, ``memory://`` bus) running ``--hosts`` fake
  compute hosts.
* ``split``: every unit its own ``stratus serve`` process (``benchmarks._split``):
  ``--api-processes`` API processes on one port (identity-api, image-api, compute-api;
  ``stratus serve --workers``), ``--schedulers`` schedulers,
  ``--conductors`` conductors and ``--agents`` compute-agent processes sharing the ``--hosts``
  fake hosts, on a fresh RabbitMQ virtual host and a fresh PostgreSQL database (both removed
  afterwards). Its metrics carry the prefix ``split_``.

In each mode, after the quota of the admin project is lifted, a 4 KiB raw image uploaded,
every host seen up in ``/os-hypervisors`` and ``--warmup`` boots made (not counted), the
cloud's CPU use is measured for ``--idle`` seconds (``idle_cpu_percent``: heartbeats and
periodic tasks of every fake host, paid during the runs as well), then:

* *sequential*: ``--sequential`` boots one at a time. The **recorded** latency runs from the
  client's wall clock (``time.time()``) just before the POST is sent to the ``finish_time`` the
  server wrote on the ``compute__do_build_and_run_instance`` event of the ``create`` action
  (``os-instance-actions``): the host finishes that event in the same transaction that makes
  the instance ACTIVE. Client and server share the machine and its clock. The **polled**
  latency is until ``GET /servers/{id}`` first shows ACTIVE, polled every ``--poll-interval``;
  it includes up to one interval of polling delay, and the GETs compete with the boot for the
  CPUs (at 2 ms on 2 cores they doubled the figure), so it is secondary.
* *concurrent*: ``--concurrent`` POSTs sent at once (``--connections`` keep-alive connections).
  Recorded throughput: boots that reached ACTIVE over the time from the first POST to the last
  recorded ACTIVE. Polled throughput: until ``GET /servers?status=BUILD`` (polled every
  ``--concurrent-poll-interval``) comes back empty. The action events are read after the clock
  stops. ``concurrent_cpu_ms_per_boot`` is the CPU time (user + system) the cloud's processes
  spent during that run, per boot (in split mode also by role: api, scheduler, conductor,
  agent); unlike the wall-clock figures it hardly moves with other load on the machine, and
  it bounds what one process can do: an all-in-one cloud runs on one core. In split mode
  ``concurrent_runqueue_wait_ms_per_boot`` (and by role) is the time the processes' threads
  were runnable but waited for a CPU (``/proc/PID/task/TID/schedstat``), per boot: on a
  machine shared with other work, what the boots waited on that no change to the cloud's
  locks, pools or round trips removes. ``concurrent_broker_cpu_ms_per_boot`` is the local
  RabbitMQ node's CPU (``beam.smp``) over the same run, per boot, and
  ``concurrent_broker_*_per_boot`` its message counters (published as ``received``,
  ``confirmed``, ``routed``; ``quorum_``/``classic_`` ``delivered`` and ``acknowledged``) per
  boot; ``idle_broker_cpu_percent`` the node's CPU during the idle phase. They are the node's
  own figures: other users of a shared broker count in them too.

``--tracing-overhead`` runs the all-in-one ``--overhead-rounds`` times with tracing off (its
metrics prefixed ``tracing_off_``) and as many times as usual (tracing on, spans into the span
store, metrics recorded), off and on alternated (off-on, on-off, ...) so that a change in the
machine's load falls on both; every figure is the median of its runs. It reports
``tracing_overhead_boot_p50_ms_percent`` and
``tracing_overhead_concurrent_cpu_ms_per_boot_percent``, the latter with a goal of 5%.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import Goal, Result, median_metrics, overhead_rounds, percentile
from benchmarks._cloud import StratusUp, database_info, issue_token, sqlite_info
from benchmarks._rawhttp import RawPoster
from benchmarks._split import BrokerProbe, DatabaseProbe, SplitCloud, Worker

DESCRIPTION = ("POST /servers to ACTIVE latency and concurrent boot throughput, all-in-one "
               "and split mode")

P50_GOAL_MS = 50.0
THROUGHPUT_GOAL = 200.0
SPLIT_THROUGHPUT_GOAL = 50.0
API = "/compute/v2.1"
BUILD_EVENT = "compute__do_build_and_run_instance"
MICROVERSION = "compute 2.96"
DEFAULT_RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
#: Every process of the run: fake guests, no kernel networking, no config file of the machine's.
COMMON_ENV = {"STRATUS_COMPUTE__VIRT_DRIVER": "fake", "STRATUS_NETWORK__BACKEND": "noop",
              "STRATUS_CONFIG_FILE": "/nonexistent"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("all-in-one", "split", "both"), default="both",
                        help="which deployment to measure (default both)")
    parser.add_argument("--sequential", type=int, default=50,
                        help="boots timed one at a time (default 50)")
    parser.add_argument("--concurrent", type=int, default=1000,
                        help="boots sent at once (default 1000)")
    parser.add_argument("--hosts", type=int, default=100, help="fake hosts (default 100)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="boots made first and not counted (default 3)")
    parser.add_argument("--idle", type=float, default=5.0,
                        help="seconds the cloud's idle CPU use is measured over (default 5)")
    parser.add_argument("--poll-interval", type=float, default=0.01,
                        help="seconds between GETs of a sequential boot (default 0.01)")
    parser.add_argument("--concurrent-poll-interval", type=float, default=0.5,
                        help="seconds between GET /servers?status=BUILD (default 0.5)")
    parser.add_argument("--connections", type=int, default=100,
                        help="HTTP connections of the concurrent POSTs (default 100)")
    parser.add_argument("--timeout", type=float, default=600,
                        help="give up waiting for the concurrent boots after this long")
    parser.add_argument("--api-processes", type=int, default=2,
                        help="split: API processes on the one port (stratus serve --workers; "
                             "default 2)")
    parser.add_argument("--schedulers", type=int, default=2, help="split: scheduler processes")
    parser.add_argument("--conductors", type=int, default=2, help="split: conductor processes")
    parser.add_argument("--agents", type=int, default=2,
                        help="split: compute-agent processes sharing --hosts (default 2)")
    parser.add_argument("--db-pool", default="4+4", metavar="SIZE+OVERFLOW",
                        help="split: each process's pool per database engine (default 4+4: "
                             "with 2 API processes of 3 engines, 2 schedulers and 2 "
                             "conductors at most 80 connections, under PostgreSQL's default "
                             "100, which the machine's other users share)")
    parser.add_argument("--rabbit-url", default=DEFAULT_RABBIT_URL,
                        help="split: the local RabbitMQ; a fresh virtual host is made on it")
    parser.add_argument("--rabbit-vhost", metavar="NAME",
                        help="split: run on this existing virtual host of --rabbit-url (kept "
                             "afterwards) instead of a fresh one: under load `rabbitmqctl "
                             "add_vhost` took minutes on this machine")
    parser.add_argument("--database-url", default=DEFAULT_POSTGRES_URL,
                        help="split: a PostgreSQL server; a fresh database is made on it")
    parser.add_argument("--log-dir", type=Path, metavar="DIR",
                        help="split: keep each process's log here (default: discarded)")
    parser.add_argument("--tracing-overhead", action="store_true",
                        help="all-in-one: also run with tracing off (metrics tracing_off_*) "
                             "and report what tracing, the span store and the metrics cost")
    parser.add_argument("--overhead-rounds", type=int, default=3,
                        help="--tracing-overhead: off/on pairs, alternated; figures are the "
                             "medians (default 3)")


def _progress(message: str) -> None:
    print(f"[boot] {message}", file=sys.stderr, flush=True)


def _body(image_id: str, name: str) -> dict[str, Any]:
    return {"server": {"name": name, "imageRef": image_id, "flavorRef": "1",
                       "networks": "none"}}


def cpu_seconds(pids: Iterable[int], *, waiting: bool = False) -> float:
    """CPU time so far of these processes and all their descendants (nanosecond
    accounting, ``benchmarks._cpu``; a process that is gone counts nothing); ``waiting``:
    their living threads' time runnable but waiting for a CPU instead."""
    import psutil

    from benchmarks._cpu import process_cpu_seconds, run_queue_wait_seconds

    measure = run_queue_wait_seconds if waiting else process_cpu_seconds
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in family:
            try:
                total += measure(process.pid)
            except ProcessLookupError:
                continue
    return total


#: CPU seconds used so far by the cloud's processes, by role (``api``, ``scheduler``, ...).
CpuProbe = Callable[[], dict[str, float]]


def _amqp_port(url: str) -> int:
    from stratus.core.bus.url import TransportURL

    return TransportURL.parse(url).hosts[0].port


#: The broker's counters reported per boot: messages published (``received``), confirmed,
#: routed, and delivered and acknowledged by queue type (quorum: the casts; classic: calls
#: and replies).
_COUNTED = re.compile(r"messages_(received|confirmed|routed|delivered|acknowledged)_total$")


def _counter_metric(name: str) -> str:
    """``amqp091.rabbit_quorum_queue.messages_delivered_total`` -> ``quorum_delivered``."""
    labels, _, counter = name.rpartition(".")
    kind = labels.rpartition(".")[2].removeprefix("rabbit_").removesuffix("_queue")
    counter = counter.removeprefix("messages_").removesuffix("_total")
    return counter if kind == "amqp091" else f"{kind}_{counter}"


def _epoch(timestamp: str) -> float:
    """An instance action time (UTC, no zone, microseconds) as seconds since the epoch."""
    return dt.datetime.fromisoformat(timestamp).replace(tzinfo=dt.UTC).timestamp()


@dataclass
class Session:
    """An admin client of one running cloud, with an image to boot.

    ``posters``: the clients the concurrent POSTs are spread over, one keep-alive
    connection each (``--connections`` of them). One httpx client with that many
    connections spent more CPU than the boots it sent (~13 ms per POST at load 17 against
    ~3 ms spread): httpcore's pool looks at every connection for every queued request each
    time a request starts or ends, so 300 requests queued on 100 connections cost it
    O(requests x connections) per step, on the cores the cloud runs on. They are bare
    HTTP/1.1 posters (``benchmarks._rawhttp``): a one-connection httpx client still spent
    ~3.8 ms of this process's CPU per POST, on the same cores."""

    client: httpx.AsyncClient
    headers: dict[str, str]
    image_id: str = ""
    posters: list[RawPoster] = field(default_factory=list)

    async def server(self, server_id: str) -> dict[str, Any]:
        response = await self.client.get(f"{API}/servers/{server_id}", headers=self.headers)
        response.raise_for_status()
        server: dict[str, Any] = response.json()["server"]
        return server

    async def post(self, name: str, n: int | None = None) -> str:
        """POST one server; ``n``: the ``n``-th of a concurrent run, sent on poster
        ``n`` modulo their number."""
        if n is not None and self.posters:
            status, content = await self.posters[n % len(self.posters)].post(
                f"{API}/servers", self.headers, _body(self.image_id, name))
            if status != 202:
                raise RuntimeError(f"POST /servers answered {status}: "
                                   f"{content[:300].decode(errors='replace')}")
            return str(json.loads(content)["server"]["id"])
        response = await self.client.post(f"{API}/servers", headers=self.headers,
                                          json=_body(self.image_id, name))
        if response.status_code != 202:
            raise RuntimeError(f"POST /servers answered {response.status_code}: "
                               f"{response.text[:300]}")
        return str(response.json()["server"]["id"])

    async def wait_done(self, server_id: str, interval: float) -> str:
        """Poll until ACTIVE or ERROR; that status."""
        while True:
            status = str((await self.server(server_id))["status"])
            if status in ("ACTIVE", "ERROR"):
                return status
            await asyncio.sleep(interval)

    async def recorded_active(self, server_id: str) -> float | None:
        """When the server recorded the instance ACTIVE (epoch seconds): the finish time of
        the successful build event of its ``create`` action; None if it has none."""
        response = await self.client.get(f"{API}/servers/{server_id}/os-instance-actions",
                                         headers=self.headers)
        response.raise_for_status()
        create = [a for a in response.json()["instanceActions"] if a["action"] == "create"]
        if not create:
            return None
        response = await self.client.get(
            f"{API}/servers/{server_id}/os-instance-actions/{create[0]['request_id']}",
            headers=self.headers)
        response.raise_for_status()
        finished = [_epoch(e["finish_time"]) for e in response.json()["instanceAction"]["events"]
                    if e["event"] == BUILD_EVENT and e["result"] == "Success"
                    and e["finish_time"]]
        return max(finished) if finished else None

    async def building(self) -> bool:
        """Whether any server is still in BUILD: a page of one is enough to tell (a full
        page listed up to all of the run's servers, on each poll, in the API's CPU that
        the run measures)."""
        response = await self.client.get(f"{API}/servers", headers=self.headers,
                                         params={"status": "BUILD", "limit": "1"})
        response.raise_for_status()
        return bool(response.json()["servers"])


async def _prepare(client: httpx.AsyncClient, identity_url: str, password: str,
                   hosts: int) -> Session:
    token = await issue_token(client, identity_url, password)
    session = Session(client, {"X-Auth-Token": token, "OpenStack-API-Version": MICROVERSION})
    projects = (await client.get("/identity/v3/auth/projects",
                                 headers=session.headers)).json()["projects"]
    project = next(p["id"] for p in projects if p["name"] == "admin")
    response = await client.put(f"{API}/os-quota-sets/{project}", headers=session.headers,
                                json={"quota_set": {"instances": -1, "cores": -1, "ram": -1}})
    response.raise_for_status()
    image = (await client.post("/image/v2/images", headers=session.headers, json={
        "name": "bench", "disk_format": "raw", "container_format": "bare"})).json()
    response = await client.put(f"/image/v2/images/{image['id']}/file", content=b"\0" * 4096,
                                headers={**session.headers,
                                         "Content-Type": "application/octet-stream"})
    response.raise_for_status()
    session.image_id = image["id"]
    deadline = time.monotonic() + 120
    while True:
        response = await client.get(f"{API}/os-hypervisors", headers=session.headers)
        up = sum(h["state"] == "up" for h in response.json()["hypervisors"])
        if up >= hosts:
            return session
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {up} of {hosts} hypervisors up after 120 s")
        await asyncio.sleep(0.5)


async def _idle(cpu: CpuProbe, seconds: float,
                broker: BrokerProbe | None = None) -> dict[str, float]:
    """CPU the cloud uses doing nothing (heartbeats, periodic tasks of every fake host), as a
    percentage of one CPU: it is paid during the runs too, whatever the boots cost. With
    ``broker``, the broker's too (``idle_broker_cpu_percent``: the cloud's idle traffic and
    whatever else uses the broker)."""
    if seconds <= 0:
        return {}
    before, started = sum(cpu().values()), time.perf_counter()
    broker_before = broker.cpu() if broker is not None else 0.0
    await asyncio.sleep(seconds)
    used = sum(cpu().values()) - before
    elapsed = time.perf_counter() - started
    metrics = {"idle_cpu_percent": used / elapsed * 100}
    if broker is not None:
        metrics["idle_broker_cpu_percent"] = (broker.cpu() - broker_before) / elapsed * 100
    return metrics


async def _sequential(session: Session, args: argparse.Namespace) -> dict[str, float]:
    recorded: list[float] = []
    polled: list[float] = []
    errors = 0
    for n in range(args.sequential):
        sent_at = time.time()
        started = time.perf_counter()
        server_id = await session.post(f"seq{n}")
        status = await session.wait_done(server_id, args.poll_interval)
        seen = time.perf_counter() - started
        if status != "ACTIVE":
            errors += 1
            continue
        polled.append(seen)
        active_at = await session.recorded_active(server_id)
        if active_at is not None:
            recorded.append(active_at - sent_at)
    _progress(f"sequential: {len(polled)} ACTIVE, {errors} ERROR, recorded p50 "
              f"{percentile(recorded, 50) * 1e3:.1f} ms, polled p50 "
              f"{percentile(polled, 50) * 1e3:.1f} ms")
    return {
        "boot_p50_ms": percentile(recorded, 50) * 1e3,
        "boot_p95_ms": percentile(recorded, 95) * 1e3,
        "boot_polled_p50_ms": percentile(polled, 50) * 1e3,
        "boot_polled_p95_ms": percentile(polled, 95) * 1e3,
        "boot_errors": errors,
    }


async def _concurrent(session: Session, args: argparse.Namespace,
                      cpu: CpuProbe, waits: CpuProbe | None = None,
                      broker: BrokerProbe | None = None,
                      database: DatabaseProbe | None = None) -> dict[str, float]:
    n = args.concurrent
    # Read before the clock starts: ``rabbitmqctl`` takes a second or so.
    counters_before = await broker.counters() if broker is not None else {}
    broker_before = broker.cpu() if broker is not None else 0.0
    database_before = await database.read() if database is not None else (0.0, 0)
    cpu_before = cpu()
    waits_before = waits() if waits is not None else {}
    client_before = time.process_time()
    sent_at = time.time()
    started = time.perf_counter()
    results = await asyncio.gather(*(session.post(f"c{i}", i) for i in range(n)),
                                   return_exceptions=True)
    posted = time.perf_counter() - started
    ids = [r for r in results if isinstance(r, str)]
    refused = n - len(ids)
    if refused:
        first = next(r for r in results if not isinstance(r, str))
        _progress(f"concurrent: a POST failed: {first!r}")
    _progress(f"concurrent: {len(ids)} POSTs accepted in {posted:.2f} s, {refused} refused")
    polled = math.nan
    polls = 0
    while time.perf_counter() - started < args.timeout:
        polls += 1
        if not await session.building():
            polled = time.perf_counter() - started
            break
        await asyncio.sleep(args.concurrent_poll_interval)
    cpu_used = {role: used - cpu_before.get(role, 0.0) for role, used in cpu().items()}
    client_used = time.process_time() - client_before
    broker_used = broker.cpu() - broker_before if broker is not None else math.nan
    database_after = await database.read() if database is not None else (0.0, 0)
    waited = ({role: w - waits_before.get(role, 0.0) for role, w in waits().items()}
              if waits is not None else {})
    # After the clock: each server's status, host and recorded ACTIVE time.
    limit = asyncio.Semaphore(16)

    async def collect(server_id: str) -> tuple[str, str, float | None]:
        async with limit:
            server = await session.server(server_id)
            active_at = (await session.recorded_active(server_id)
                         if server["status"] == "ACTIVE" else None)
            return server["status"], server.get("OS-EXT-SRV-ATTR:host") or "", active_at

    collected = await asyncio.gather(*(collect(i) for i in ids))
    active = [c for c in collected if c[0] == "ACTIVE"]
    finished = [c[2] for c in active if c[2] is not None]
    total = max(finished) - sent_at if finished else math.nan
    latencies = [f - sent_at for f in finished]
    metrics = {
        "concurrent_boots_per_s": len(finished) / total if finished else 0.0,
        "concurrent_boots_total_s": total,
        "concurrent_polled_boots_per_s": len(active) / polled if active else 0.0,
        "concurrent_polled_total_s": polled,
        "concurrent_posts_s": posted,
        "concurrent_polls": polls,
        "concurrent_boot_p50_ms": percentile(latencies, 50) * 1e3,
        "concurrent_boot_p95_ms": percentile(latencies, 95) * 1e3,
        "concurrent_active": len(active),
        "concurrent_error": sum(c[0] == "ERROR" for c in collected),
        "concurrent_other": sum(c[0] not in ("ACTIVE", "ERROR") for c in collected),
        "concurrent_refused": refused,
        "concurrent_hosts_used": len({c[1] for c in active if c[1]}),
        "concurrent_cpu_ms_per_boot": sum(cpu_used.values()) / n * 1e3 if n else math.nan,
        # This benchmark's own CPU over the same run (its POSTs and polls), on the cores
        # the cloud uses: not the cloud's cost, but it slows the wall clock.
        "concurrent_client_cpu_ms_per_boot": client_used / n * 1e3 if n else math.nan,
        # The machine's load when the run ended (other work on it slows the wall clock).
        "concurrent_load_average_1m": os.getloadavg()[0],
    }
    if len(cpu_used) > 1:
        metrics.update({f"concurrent_cpu_ms_per_boot_{role}": used / n * 1e3
                        for role, used in cpu_used.items()})
    if broker is not None and n:
        metrics["concurrent_broker_cpu_ms_per_boot"] = broker_used / n * 1e3
        counters_after = await broker.counters()
        for name, value in counters_after.items():
            if name in counters_before and _COUNTED.search(name):
                metrics[f"concurrent_broker_{_counter_metric(name)}_per_boot"] = (
                    value - counters_before[name]) / n
    if database is not None and n:
        metrics["concurrent_database_cpu_ms_per_boot"] = (
            database_after[0] - database_before[0]) / n * 1e3
        metrics["concurrent_database_commits_per_boot"] = (
            database_after[1] - database_before[1]) / n
    if waited and n:
        metrics["concurrent_runqueue_wait_ms_per_boot"] = sum(waited.values()) / n * 1e3
        metrics.update({f"concurrent_runqueue_wait_ms_per_boot_{role}": w / n * 1e3
                        for role, w in waited.items()})
    _progress(f"concurrent: {metrics['concurrent_active']} ACTIVE, "
              f"{metrics['concurrent_error']} ERROR, {metrics['concurrent_boots_per_s']:.1f} "
              f"boots/s recorded, {metrics['concurrent_polled_boots_per_s']:.1f} polled")
    return metrics


async def _measure(base_url: str, identity_url: str, password: str,
                   args: argparse.Namespace, cpu: CpuProbe,
                   waits: CpuProbe | None = None,
                   broker: BrokerProbe | None = None,
                   database: DatabaseProbe | None = None) -> dict[str, float]:
    limits = httpx.Limits(max_connections=args.connections,
                          max_keepalive_connections=args.connections)
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits))
        posters = [await stack.enter_async_context(RawPoster(base_url))
                   for _ in range(args.connections)]
        session = await _prepare(client, identity_url, password, args.hosts)
        session.posters = posters
        for n in range(args.warmup):
            await session.wait_done(await session.post(f"warm{n}"), args.poll_interval)
        metrics = await _idle(cpu, args.idle, broker)
        metrics.update(await _sequential(session, args))
        metrics.update(await _concurrent(session, args, cpu, waits, broker, database))
    # On stderr at once: a failure later (another mode, clean-up) must not lose them.
    _progress(json.dumps({k: round(v, 2) for k, v in metrics.items()}))
    return metrics


async def _all_in_one(args: argparse.Namespace, tmp: Path,
                      tracing: bool = True) -> tuple[dict[str, float], dict[str, Any]]:
    env = {**COMMON_ENV, "STRATUS_COMPUTE__FAKE_HOSTS": str(args.hosts),
           "STRATUS_COMPUTE__HOST": "bench", "STRATUS_BUS_URL": "memory://",
           **({} if tracing else {"STRATUS_TRACING__ENABLED": "false"})}
    _progress(f"all-in-one: stratus up with {args.hosts} fake hosts, tracing "
              f"{'on (span store)' if tracing else 'off'}")
    async with StratusUp(tmp / "data", bcrypt_rounds=4, env=env) as cloud:
        password = cloud.admin_password()
        assert password is not None
        metrics = await _measure(cloud.base_url, cloud.identity_url, password, args,
                                 lambda: {"all": cpu_seconds([cloud.pid])})
    return metrics, {"bus": "memory://", **sqlite_info(tmp / "data" / "compute.db")}


def _workers(args: argparse.Namespace) -> list[Worker]:
    workers = [Worker(f"scheduler-{n + 1}", ("scheduler",)) for n in range(args.schedulers)]
    workers += [Worker(f"conductor-{n + 1}", ("conductor",)) for n in range(args.conductors)]
    per_agent, extra = divmod(args.hosts, args.agents)
    for n in range(args.agents):
        hosts = per_agent + (1 if n < extra else 0)
        workers.append(Worker(f"agent-{n + 1}", ("compute-agent",), {
            "STRATUS_COMPUTE__FAKE_HOSTS": str(hosts),
            "STRATUS_COMPUTE__HOST": f"bench-{chr(ord('a') + n)}"}))
    return workers


async def _split(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, float],
                                                                dict[str, Any]]:
    _progress(f"split: {args.api_processes} API processes, {args.schedulers} schedulers, "
              f"{args.conductors} conductors, {args.agents} agent processes for {args.hosts} "
              "fake hosts")
    pool_size, overflow = (int(n) for n in args.db_pool.split("+"))
    async with SplitCloud(tmp, _workers(args), rabbit_url=args.rabbit_url,
                          vhost=args.rabbit_vhost,
                          database_url=args.database_url, api_processes=args.api_processes,
                          env={**COMMON_ENV, "STRATUS_IDENTITY__BCRYPT_ROUNDS": "4",
                               "STRATUS_DATABASE_POOL_SIZE": str(pool_size),
                               "STRATUS_DATABASE_MAX_OVERFLOW": str(overflow)}) as cloud:
        def by_role(waiting: bool) -> dict[str, float]:
            roles: dict[str, float] = {}
            for name, process in cloud.processes.items():
                role = name.split("-")[0]
                roles[role] = roles.get(role, 0.0) + cpu_seconds([process.pid],
                                                                 waiting=waiting)
            return roles

        async with DatabaseProbe(cloud.env["STRATUS_DATABASE_URL"]) as database:
            metrics = await _measure(cloud.base_url, cloud.identity_url,
                                     cloud.admin_password(), args, lambda: by_role(False),
                                     lambda: by_role(True),
                                     BrokerProbe.find(_amqp_port(args.rabbit_url)), database)
        dead = cloud.dead()
        if args.log_dir is not None:
            cloud.copy_logs(args.log_dir)
        if dead:
            raise RuntimeError(f"{dead[0]} died during the run:\n{cloud.log_tail(dead[0])}")
        backends = {"bus": "rabbit", **await database_info(cloud.env["STRATUS_DATABASE_URL"]),
                    "db_pool": args.db_pool,
                    "processes": {"api": args.api_processes, "scheduler": args.schedulers,
                                  "conductor": args.conductors, "compute_agent": args.agents}}
    return {f"split_{k}": v for k, v in metrics.items()}, backends


async def run(args: argparse.Namespace) -> Result:
    metrics: dict[str, float] = {}
    backends: dict[str, Any] = {"virt_driver": "fake", "fake_hosts": args.hosts,
                                "network_backend": "noop", "bcrypt_rounds": 4}
    goals: list[Goal] = []
    if args.mode in ("all-in-one", "both"):
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for order in overhead_rounds(args.overhead_rounds) if args.tracing_overhead else [(True,)]:
            for tracing in order:
                with tempfile.TemporaryDirectory(prefix="stratus-bench-boot-") as tmp:
                    found, backends["all_in_one"] = await _all_in_one(args, Path(tmp),
                                                                      tracing=tracing)
                runs[tracing].append(found)
        found = median_metrics(runs[True])
        metrics.update(found)
        if args.tracing_overhead:
            off = median_metrics(runs[False])
            metrics.update({f"tracing_off_{k}": v for k, v in off.items()})
            metrics["tracing_overhead_rounds"] = args.overhead_rounds
            for name in ("boot_p50_ms", "concurrent_cpu_ms_per_boot"):
                metrics[f"tracing_overhead_{name}_percent"] = (
                    (found[name] / off[name] - 1) * 100 if off[name] else math.nan)
            goals.append(Goal(
                "tracing_overhead_concurrent_cpu_ms_per_boot_percent", 5.0, "<=",
                "CPU per boot with tracing, the span store and metrics on, over the same run "
                "with tracing off (all-in-one; CPU time hardly moves with the machine's load)"))
        goals += [
            Goal("boot_p50_ms", P50_GOAL_MS, "<=",
                 "recorded POST to ACTIVE, one boot at a time, all-in-one, fake driver"),
            Goal("concurrent_boots_per_s", THROUGHPUT_GOAL, ">=",
                 f"{args.concurrent} boots at once onto {args.hosts} fake hosts, all-in-one, "
                 "first POST to last recorded ACTIVE"),
        ]
    if args.mode in ("split", "both"):
        with tempfile.TemporaryDirectory(prefix="stratus-bench-boot-split-") as tmp:
            found, backends["split"] = await _split(args, Path(tmp))
        metrics.update(found)
        goals.append(Goal(
            "split_concurrent_boots_per_s", SPLIT_THROUGHPUT_GOAL, ">=",
            f"{args.concurrent} boots at once onto {args.hosts} fake hosts, split mode on "
            f"RabbitMQ and PostgreSQL: {args.api_processes} API processes, {args.schedulers} "
            f"schedulers, {args.conductors} conductors (wall clock: read it with "
            "split_concurrent_load_average_1m and the CPU per boot)"))
    return Result(metrics=metrics, goals=goals, backends=backends)
