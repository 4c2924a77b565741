"""Scale: what a list and a boot cost as a project's servers grow from 100 to 10,000.

One all-in-one ``stratus up`` per size of ``--sizes`` (SQLite, or a fresh database each on
the PostgreSQL server of ``--database-url``; ``memory://`` bus, fake driver on ``--hosts``
fake hosts, noop network backend), set up side by side: the admin project's quotas set far
above the size, a 4 KiB image uploaded and a network with a /16 subnet made,
``--templates`` servers booted for real onto it (one multi-create), then the project
filled up to the cloud's size by the bulk-load path (``benchmarks._bulk``: copies of the
templates' rows as the services wrote them: instance, actions and events, allocations,
port, address, port groups). The sizes
are then measured interleaved, so that the machine's other load, which moves a request's
CPU by ±15 % from one minute to the next, falls on every size alike: ``--passes`` passes,
each one block of ``--rounds``/``--passes`` requests of each kind on every size's cloud in
turn (the sizes' order rotated from pass to pass), then ``--boots`` boots, one per size in
turn:

* ``detail``: ``GET /servers/detail?limit=--limit`` (the first page);
* ``detail_next``: the next page, by the first page's last id as ``marker``;
* ``ports``: ``GET /v2.0/ports?limit=--limit``;
* ``servers_all``: ``GET /servers`` without a limit (Nova's ``max_limit`` of 1,000 pages
  it: 100 rows at 100 servers, 1,000 from 1,000 on, so it is compared with 1,000);
* ``boot``: ``--boots`` servers booted one at a time on the same network; the recorded
  latency (client clock before the POST → the build event's ``finish_time``, as
  ``boot``).

Each figure has its wall-clock p50 over every request (``<what>_p50_ms_<size>``) and the
``stratus up`` process's CPU time per request (``<what>_cpu_ms_<size>``, its CPU clock in
nanoseconds, ``benchmarks._cpu``: the median over the blocks of each block's CPU per request,
or over the boots of each boot's CPU), which the machine's other load stretches far less;
the server's CPU per second with no request (``idle_cpu_ms_per_s_<size>``, every cloud idle at
once: its periodic work, which grows with the servers) and each request's CPU net of it
(``<what>_cpu_net_ms_<size>``); on PostgreSQL also the CPU of the database's server processes
(its backends serving the cloud's connections) per request (``<what>_db_cpu_ms_<size>``),
where a query's sort or scan is spent and the ``stratus up`` process only waits, their CPU
per second with no request (``idle_db_cpu_ms_per_s_<size>``: the periodic work's queries)
and each request's net of it (``<what>_db_cpu_net_ms_<size>``);
and the ratio of each to the first size (``<what>_<kind>_<size>_over_<first>``): for the CPU
figures the median of the per-pass ratios (block n at this size over block n at the first,
seconds apart; boot n over boot n), with their interquartile range beside it
(``..._over_<first>_iqr``), for the p50s the ratio of the p50s. Goal:
flat, every CPU ratio and the boot p50 ratio at the largest size <= 1.2. The scheduler's
decision over 10,000 in-memory hosts (``benchmarks.scheduler``'s hosts, its CPU time) is
reported beside them with its goal (<= 5 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks import Goal, Result, percentile
from benchmarks._bulk import clone_servers, live_servers
from benchmarks._cloud import StratusUp, database_info, scratch_database
from benchmarks.boot import API, Session, _prepare, cpu_seconds

DESCRIPTION = ("list latency (servers/detail, ports, GET /servers) and boot p50 at 100, "
               "1,000 and 10,000 servers in one project")

FLAT_GOAL = 1.2
DECISION_GOAL_MS = 5.0
NETWORK_API = "/network/v2.0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="100,1000,10000",
                        help="servers in the project, one cloud per size (default "
                             "100,1000,10000)")
    parser.add_argument("--rounds", type=int, default=100,
                        help="requests of each kind per size (default 100), in --passes "
                             "blocks")
    parser.add_argument("--passes", type=int, default=10,
                        help="blocks each kind's requests are split into, interleaved with "
                             "the other sizes' (default 10): a figure is the median of its "
                             "blocks' CPU per request, a ratio the median of the per-pass "
                             "ratios")
    parser.add_argument("--limit", type=int, default=50,
                        help="page size of the paged lists (default 50: at 100 servers the next "
                             "page is full too)")
    parser.add_argument("--boots", type=int, default=20,
                        help="boots timed one at a time per size, the sizes in turn "
                             "(default 20)")
    parser.add_argument("--templates", type=int, default=20,
                        help="servers booted for real, which the bulk load copies "
                             "(default 20)")
    parser.add_argument("--hosts", type=int, default=10, help="fake hosts (default 10)")
    parser.add_argument("--poll-interval", type=float, default=0.02,
                        help="seconds between GETs of a timed boot (default 0.02)")
    parser.add_argument("--idle-seconds", type=float, default=10.0,
                        help="seconds of no requests over which the server's own CPU per "
                             "second is measured, every size's cloud at once (default 10)")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server URL (postgresql+asyncpg://user@host:5432/"
                             "postgres): the run's databases are a new one there, dropped "
                             "afterwards (default: SQLite files in the data dir)")
    parser.add_argument("--samples-out", type=Path, default=None,
                        help="write every block's and boot's samples there (JSON), to see "
                             "their spread")
    parser.add_argument("--bcrypt-rounds", type=int, default=4,
                        help="bcrypt cost (token issues are not measured; default 4)")


def _progress(message: str) -> None:
    print(f"[scale] {message}", file=sys.stderr, flush=True)


async def _network(session: Session) -> str:
    """A network with a /16 subnet: room for every size's ports."""
    client, headers = session.client, session.headers
    response = await client.post(f"{NETWORK_API}/networks", headers=headers,
                                 json={"network": {"name": "scale"}})
    response.raise_for_status()
    network: str = response.json()["network"]["id"]
    response = await client.post(f"{NETWORK_API}/subnets", headers=headers, json={"subnet": {
        "network_id": network, "ip_version": 4, "cidr": "10.128.0.0/16", "name": "scale"}})
    response.raise_for_status()
    return network


async def _boot(session: Session, network: str, name: str, count: int = 1) -> str:
    response = await session.client.post(f"{API}/servers", headers=session.headers, json={
        "server": {"name": name, "imageRef": session.image_id, "flavorRef": "1",
                   "networks": [{"uuid": network}], "min_count": count,
                   "max_count": count}})
    if response.status_code != 202:
        raise RuntimeError(f"POST /servers answered {response.status_code}: "
                           f"{response.text[:300]}")
    return str(response.json()["server"]["id"])


async def _templates(session: Session, network: str, count: int) -> list[str]:
    await _boot(session, network, "template", count)
    deadline = time.monotonic() + 600
    while await session.building():
        if time.monotonic() > deadline:
            raise RuntimeError("templates still building after 600 s")
        await asyncio.sleep(0.5)
    response = await session.client.get(f"{API}/servers/detail", headers=session.headers,
                                         params={"name": "^template"})
    response.raise_for_status()
    servers = response.json()["servers"]
    active = [s["id"] for s in servers if s["status"] == "ACTIVE"]
    if len(active) != count:
        raise RuntimeError(f"{len(active)} of {count} templates ACTIVE")
    return active


Request = Callable[[], Awaitable[Any]]


class _Clocks:
    """CPU seconds so far of the ``stratus up`` process (with its children) and, on
    PostgreSQL, of the backends serving the run's database (each request's SQL runs there:
    the API process only waits for it). A backend that exits within a window loses its
    CPU from it; the cloud's pooled connections outlive the windows."""

    def __init__(self, pid: int, database_url: str | None) -> None:
        self.pid = pid
        self.database_url = database_url
        self.conn: Any = None

    async def __aenter__(self) -> _Clocks:
        if self.database_url:
            import asyncpg

            from benchmarks._cloud import asyncpg_dsn

            self.conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def read(self) -> tuple[float, dict[int, float]]:
        """The server's CPU seconds and each database backend's."""
        backends: dict[int, float] = {}
        if self.conn is not None:
            from benchmarks._cpu import process_cpu_seconds

            for row in await self.conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"):
                with contextlib.suppress(ProcessLookupError):
                    backends[row["pid"]] = process_cpu_seconds(row["pid"])
        return cpu_seconds([self.pid]), backends

    @staticmethod
    def used(before: tuple[float, dict[int, float]],
             after: tuple[float, dict[int, float]]) -> tuple[float, float]:
        """Seconds of the server's CPU and of the database's between two reads."""
        database = sum(cpu - before[1].get(pid, 0.0) for pid, cpu in after[1].items())
        return after[0] - before[0], database


@dataclass
class _Cloud:
    """One size's cloud, ready to measure: its servers bulk-loaded."""

    size: int
    session: Session
    clocks: _Clocks
    network: str


@dataclass
class _Samples:
    """One figure's samples at one size: each block's wall times, and the server's and the
    database's CPU per request of each block (ms), in pass order."""

    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    database: list[float] = field(default_factory=list)
    recorded: list[float] = field(default_factory=list)


async def _block(cloud: _Cloud, count: int, request: Request,
                 samples: _Samples) -> None:
    """``count`` requests in one CPU window: their wall times, and the window's CPU per
    request as one sample."""
    times: list[float] = []
    before = await cloud.clocks.read()
    for _ in range(count):
        started = time.perf_counter()
        await request()
        times.append(time.perf_counter() - started)
    used, database = _Clocks.used(before, await cloud.clocks.read())
    samples.times.extend(times)
    samples.cpu.append(used / count * 1e3)
    samples.database.append(database / count * 1e3)


async def _boot_once(cloud: _Cloud, name: str, args: argparse.Namespace,
                     samples: _Samples) -> None:
    """One boot, its polls to ACTIVE included, in its own CPU window."""
    before = await cloud.clocks.read()
    sent_at = time.time()
    server = await _boot(cloud.session, cloud.network, name)
    if await cloud.session.wait_done(server, args.poll_interval) != "ACTIVE":
        raise RuntimeError(f"{name} did not go ACTIVE")
    used, database = _Clocks.used(before, await cloud.clocks.read())
    samples.cpu.append(used * 1e3)
    samples.database.append(database * 1e3)
    active_at = await cloud.session.recorded_active(server)
    if active_at is not None:
        samples.recorded.append(active_at - sent_at)


def _requests(cloud: _Cloud, args: argparse.Namespace,
              marker: str) -> dict[str, Request]:
    client, headers = cloud.session.client, cloud.session.headers

    async def get(path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await client.get(path, headers=headers, params=params)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    return {
        "detail": lambda: get(f"{API}/servers/detail", {"limit": args.limit}),
        "detail_next": lambda: get(f"{API}/servers/detail",
                                   {"limit": args.limit, "marker": marker}),
        "ports": lambda: get(f"{NETWORK_API}/ports", {"limit": args.limit}),
        "servers_all": lambda: get(f"{API}/servers"),
    }


def _blocks(total: int, passes: int) -> list[int]:
    """``total`` requests over ``passes`` blocks, as evenly as they go (none empty)."""
    passes = max(1, min(passes, total))
    return [total // passes + (n < total % passes) for n in range(passes)]


def _rotated(clouds: list[_Cloud], n: int) -> list[_Cloud]:
    """The sizes' order in pass ``n``: rotated by ``n``, so that none always goes first."""
    return clouds[n % len(clouds):] + clouds[:n % len(clouds)]


async def _measure(clouds: list[_Cloud], args: argparse.Namespace) -> dict[str, float]:
    """Every size's figures, the sizes interleaved: each pass runs one block of each kind
    on every size's cloud in turn (the order of the sizes rotated from pass to pass), so a
    minute of the machine's other load falls on every size alike, and a figure is the
    median of its blocks; the boots go one per size in turn, likewise."""
    idle_before = [await cloud.clocks.read() for cloud in clouds]
    started = time.perf_counter()
    await asyncio.sleep(args.idle_seconds)
    elapsed = time.perf_counter() - started
    idle = {}
    for cloud, before in zip(clouds, idle_before, strict=True):
        used, database = _Clocks.used(before, await cloud.clocks.read())
        idle[cloud.size] = (used / elapsed * 1e3, database / elapsed * 1e3)
    requests = {}
    for cloud in clouds:
        first = await _requests(cloud, args, "")["detail"]()
        requests[cloud.size] = _requests(cloud, args, first["servers"][-1]["id"])
        for request in requests[cloud.size].values():  # one of each, not counted
            await request()
    samples: dict[tuple[str, int], _Samples] = defaultdict(_Samples)
    blocks = _blocks(args.rounds, args.passes)
    for n, count in enumerate(blocks):
        for what in KINDS:
            for cloud in _rotated(clouds, n):
                await _block(cloud, count, requests[cloud.size][what],
                             samples[what, cloud.size])
        _progress(f"pass {n + 1} of {len(blocks)}")
    for n in range(args.boots):
        for cloud in _rotated(clouds, n):
            await _boot_once(cloud, f"timed-{cloud.size}-{n}", args,
                             samples["boot", cloud.size])
    metrics: dict[str, float] = {}
    postgres = clouds[0].clocks.database_url is not None
    for cloud in clouds:
        size = cloud.size
        idle_cpu, idle_database = idle[size]
        metrics[f"idle_cpu_ms_per_s_{size}"] = idle_cpu
        if postgres:
            metrics[f"idle_db_cpu_ms_per_s_{size}"] = idle_database
        for what in KINDS:
            found = samples[what, size]
            cpu_ms = statistics.median(found.cpu)
            wall_s = statistics.mean(found.times)
            metrics[f"{what}_p50_ms_{size}"] = percentile(found.times, 50) * 1e3
            metrics[f"{what}_cpu_ms_{size}"] = cpu_ms
            # Less what the server spends meanwhile on its own (``idle``: heartbeats,
            # host reports), pro rata of the request's wall time: the request's own CPU.
            metrics[f"{what}_cpu_net_ms_{size}"] = cpu_ms - idle_cpu * wall_s
            if postgres:
                database_ms = statistics.median(found.database)
                metrics[f"{what}_db_cpu_ms_{size}"] = database_ms
                metrics[f"{what}_db_cpu_net_ms_{size}"] = database_ms - idle_database * wall_s
        boots = samples["boot", size]
        metrics[f"boot_p50_ms_{size}"] = percentile(boots.recorded, 50) * 1e3
        metrics[f"boot_cpu_ms_{size}"] = statistics.median(boots.cpu)
        if postgres:
            metrics[f"boot_db_cpu_ms_{size}"] = statistics.median(boots.database)
        _progress(f"{size} servers: " + ", ".join(
            f"{k.rsplit('_', 1)[0]} {v:.1f}" for k, v in metrics.items()
            if k.endswith(f"_{size}")))
    metrics.update(_paired_ratios(samples, [cloud.size for cloud in clouds], postgres))
    if args.samples_out is not None:
        args.samples_out.write_text(json.dumps(
            {f"{what}_{size}": {"cpu_ms": found.cpu, "db_cpu_ms": found.database,
                                "wall_ms": [t * 1e3 for t in found.times + found.recorded]}
             for (what, size), found in samples.items()}, indent=1))
    return metrics


#: The paged and unpaged lists, measured in blocks.
KINDS = ("detail", "detail_next", "ports", "servers_all")


def _base(kind: str, sizes: list[int]) -> int:
    """The size a figure is compared with: the first, but ``GET /servers`` shows every
    server up to 1,000, so it is compared from the first size of at least 1,000, where it
    shows a full page."""
    return next((s for s in sizes if s >= 1000), sizes[0]) \
        if kind.startswith("servers_all") else sizes[0]


def _paired_ratios(samples: dict[tuple[str, int], _Samples], sizes: list[int],
                   postgres: bool) -> dict[str, float]:
    """Each CPU figure's ratio at each size to its base as the median of the per-pass
    ratios (block n at this size over block n at the base, taken seconds apart: a drift of
    the machine's load between them is small), and their interquartile range
    (``..._iqr``), which says how far one pass's noise moves a ratio."""
    ratios: dict[str, float] = {}
    for what in (*KINDS, "boot"):
        base = _base(what, sizes)
        series = [("cpu_ms", "cpu")] + ([("db_cpu_ms", "database")] if postgres else [])
        for kind, attribute in series:
            low: list[float] = getattr(samples[what, base], attribute)
            for size in sizes:
                if size <= base:
                    continue
                high: list[float] = getattr(samples[what, size], attribute)
                paired = [h / b for h, b in zip(high, low, strict=False) if b > 0]
                if not paired:
                    continue
                name = f"{what}_{kind}_{size}_over_{base}"
                ratios[name] = statistics.median(paired)
                ratios[f"{name}_iqr"] = percentile(paired, 75) - percentile(paired, 25)
    return ratios


def _ratios(metrics: dict[str, float], sizes: list[int]) -> dict[str, float]:
    """The ratio of each figure to its base size's, for those the paired ratios do not
    give (p50s, net CPU, idle)."""
    kinds = ("detail_p50_ms", "detail_cpu_net_ms", "detail_next_p50_ms",
             "detail_next_cpu_net_ms", "ports_p50_ms", "ports_cpu_net_ms",
             "servers_all_p50_ms", "servers_all_cpu_net_ms", "boot_p50_ms",
             "idle_cpu_ms_per_s", "idle_db_cpu_ms_per_s", "detail_db_cpu_net_ms",
             "detail_next_db_cpu_net_ms", "ports_db_cpu_net_ms", "servers_all_db_cpu_net_ms")
    ratios = {}
    for kind in kinds:
        base = _base(kind, sizes)
        for size in sizes:
            if size > base and metrics.get(f"{kind}_{base}"):
                ratios[f"{kind}_{size}_over_{base}"] = (metrics[f"{kind}_{size}"]
                                                        / metrics[f"{kind}_{base}"])
    return ratios


def _scheduler_decision() -> dict[str, float]:
    from benchmarks.scheduler import make_hosts
    from stratus.compute.scheduler.host_view import HostView
    from stratus.compute.scheduler.request_spec import FlavorSpec, RequestSpec
    from stratus.compute.scheduler.selector import SchedulerOptions, select_hosts

    rng = random.Random(42)
    spec = RequestSpec(instance_uuid="bench", project_id="p",
                       flavor=FlavorSpec(vcpus=2, memory_mb=4096, root_gb=20),
                       availability_zone="az1", image_properties={"hw_architecture": "x86_64"})
    hosts = HostView(make_hosts(10000, rng))
    options = SchedulerOptions(host_subset_size=3)
    select_hosts(hosts, spec, options, rng)
    # CPU time of this thread: the decision is pure Python in this process, and on a
    # machine loaded by other work its wall time is mostly waiting for a core.
    timings = []
    for _ in range(100):
        started = time.thread_time()
        select_hosts(hosts, spec, options, rng)
        timings.append(time.thread_time() - started)
    return {"scheduler_decision_10000_hosts_cpu_p50_ms": percentile(timings, 50) * 1e3}


async def run(args: argparse.Namespace) -> Result:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if sizes[0] < args.templates + 1:
        raise SystemExit(f"the first size must exceed --templates ({args.templates})")
    env = {"STRATUS_COMPUTE__VIRT_DRIVER": "fake", "STRATUS_NETWORK__BACKEND": "noop",
           "STRATUS_CONFIG_FILE": "/nonexistent", "STRATUS_BUS_URL": "memory://",
           "STRATUS_COMPUTE__FAKE_HOSTS": str(args.hosts), "STRATUS_COMPUTE__HOST": "scale",
           # Room for every size's servers on the hosts (allocations are copied too).
           "STRATUS_COMPUTE__FAKE_VCPUS": "100000", "STRATUS_COMPUTE__FAKE_MEMORY_MB": "100000000",
           "STRATUS_COMPUTE__FAKE_LOCAL_GB": "1000000",
           # The copies have no guests in the fake driver: the power-state sync would record
           # each as NOSTATE, which is not what this measures.
           "STRATUS_COMPUTE__SYNC_POWER_STATE_INTERVAL": "86400"}
    metrics: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="stratus-bench-scale-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            # One cloud per size, set up side by side (not measured), then measured
            # interleaved.
            clouds: list[_Cloud | None] = [None] * len(sizes)
            infos: list[dict[str, Any]] = [{}] * len(sizes)

            async def setup(n: int) -> None:
                clouds[n], infos[n] = await _setup(stack, Path(tmp) / f"data-{sizes[n]}",
                                                   sizes[n], env, args)

            async with asyncio.TaskGroup() as group:
                for n in range(len(sizes)):
                    group.create_task(setup(n))
            ready = [cloud for cloud in clouds if cloud is not None]
            metrics.update(await _measure(ready, args))
            backends = {**infos[0], "bus": "memory://", "virt_driver": "fake",
                        "network_backend": "noop", "fake_hosts": args.hosts,
                        "bcrypt_rounds": args.bcrypt_rounds,
                        "populated_by": "bulk load of copied rows (benchmarks._bulk)",
                        "clouds": "one per size, measured interleaved"}
    metrics.update(_ratios(metrics, sizes))
    metrics.update(_scheduler_decision())
    last, first = sizes[-1], sizes[0]
    goals = [Goal(f"{kind}_{last}_over_{first}", FLAT_GOAL, "<=",
                  f"flat: {what} at {last:,} servers over {first:,}")
             for kind, what in (("detail_cpu_ms", "server CPU of servers/detail's first page"),
                                ("detail_next_cpu_ms", "server CPU of its next page"),
                                ("ports_cpu_ms", "server CPU of a ports page"),
                                ("boot_p50_ms", "recorded boot latency"),
                                ("boot_cpu_ms", "server CPU per boot"))]
    base = next((s for s in sizes if s >= 1000), None)
    if base is not None and last > base:
        goals.append(Goal(f"servers_all_cpu_ms_{last}_over_{base}", FLAT_GOAL, "<=",
                          f"flat: GET /servers without a limit (1,000 rows) at {last:,} "
                          f"servers over {base:,}"))
    goals.append(Goal("scheduler_decision_10000_hosts_cpu_p50_ms", DECISION_GOAL_MS, "<=",
                      "one decision over 10,000 in-memory hosts, all default filters (CPU "
                      "time)"))
    return Result(metrics=metrics, goals=goals, backends=backends)


async def _setup(stack: contextlib.AsyncExitStack, data: Path, size: int, env: dict[str, str],
                 args: argparse.Namespace) -> tuple[_Cloud, dict[str, Any]]:
    """A cloud of its own for ``size``: templates booted, the rest bulk-loaded."""
    database_url = await stack.enter_async_context(scratch_database(args.database_url))
    cloud = await stack.enter_async_context(StratusUp(
        data, bcrypt_rounds=args.bcrypt_rounds, database_url=database_url, env=env))
    password = cloud.admin_password()
    assert password is not None
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    client = await stack.enter_async_context(httpx.AsyncClient(
        base_url=cloud.base_url, timeout=300, limits=limits))
    session = await _prepare(client, cloud.identity_url, password, args.hosts)
    project = await _project_id(session)
    await _quotas(session, project)
    network = await _network(session)
    _progress(f"{size}: booting {args.templates} template servers")
    templates = await _templates(session, network, args.templates)
    clocks = await stack.enter_async_context(_Clocks(cloud.pid, database_url))
    missing = size - await live_servers(data, project, database_url=database_url)
    started = time.perf_counter()
    await clone_servers(data, templates, missing, database_url=database_url, seed=size)
    _progress(f"{size}: bulk-loaded {missing} servers in "
              f"{time.perf_counter() - started:.1f} s")
    info = await database_info(database_url, data / "compute.db")
    return _Cloud(size, session, clocks, network), info


async def _quotas(session: Session, project: str) -> None:
    """Limits far above the largest size, not unlimited: a project that holds 10,000
    servers has a quota, and every boot counts its servers and ports against it."""
    big = 10_000_000
    response = await session.client.put(f"{API}/os-quota-sets/{project}",
                                        headers=session.headers, json={"quota_set": {
                                            "instances": big, "cores": big, "ram": big}})
    response.raise_for_status()
    response = await session.client.put(f"{NETWORK_API}/quotas/{project}",
                                        headers=session.headers,
                                        json={"quota": {"port": big}})
    response.raise_for_status()


async def _project_id(session: Session) -> str:
    response = await session.client.get("/identity/v3/auth/projects",
                                        headers=session.headers)
    response.raise_for_status()
    return str(next(p["id"] for p in response.json()["projects"] if p["name"] == "admin"))
