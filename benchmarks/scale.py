"""Scale: what a list and a boot cost as a project's servers grow from 100 to 10,000.

One all-in-one ``stratus up`` (SQLite, or a fresh database on the PostgreSQL server of
``--database-url``; ``memory://`` bus, fake driver on ``--hosts`` fake hosts, noop network
backend). After the admin project's quota is lifted, a 4 KiB image
uploaded and a network with a /16 subnet made, ``--templates`` servers are booted for
real onto it (one multi-create); then, for each size of ``--sizes`` in turn, the project
is filled up to that many servers by the bulk-load path (``benchmarks._bulk``: copies of
the templates' rows as the services wrote them: instance, actions and events,
allocations, port, address, port groups) and, each ``--rounds`` times:

* ``detail``: ``GET /servers/detail?limit=--limit`` (the first page);
* ``detail_next``: the next page, by the first page's last id as ``marker``;
* ``ports``: ``GET /v2.0/ports?limit=--limit``;
* ``servers_all``: ``GET /servers`` without a limit (Nova's ``max_limit`` of 1,000 pages
  it: 100 rows at 100 servers, 1,000 from 1,000 on, so it is compared with 1,000);
* ``boot``: ``--boots`` servers booted one at a time on the same network; the recorded
  latency (client clock before the POST → the build event's ``finish_time``, as
  ``boot``).

Each figure has its wall-clock p50 (``<what>_p50_ms_<size>``) and the ``stratus up``
process's CPU time per request (``<what>_cpu_ms_<size>``, its CPU clock in nanoseconds over
the rounds, ``benchmarks._cpu``), which the machine's other load stretches far less; the
server's CPU per second with no request (``idle_cpu_ms_per_s_<size>``: its periodic work,
which grows with the servers) and each request's CPU net of it (``<what>_cpu_net_ms_<size>``);
on PostgreSQL also the CPU of the database's server processes (its backends serving the
cloud's connections) per request (``<what>_db_cpu_ms_<size>``), where a query's sort or scan
is spent and the ``stratus up`` process only waits, their CPU per second with no request
(``idle_db_cpu_ms_per_s_<size>``: the periodic work's queries) and each request's net of it
(``<what>_db_cpu_net_ms_<size>``);
and the ratio of each to the first size (``<what>_<kind>_<size>_over_<first>``). Goal:
flat, every CPU ratio and the boot p50 ratio at the largest size <= 1.2. The scheduler's
decision over 10,000 in-memory hosts (``benchmarks.scheduler``'s hosts, its CPU time) is
reported beside them with its goal (<= 5 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
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
                        help="servers in the project at each measurement (default "
                             "100,1000,10000)")
    parser.add_argument("--rounds", type=int, default=100,
                        help="requests of each kind per size (default 100: the CPU per request is "
                             "read to the nanosecond, but the server's own periodic work lands "
                             "in whichever window it falls)")
    parser.add_argument("--limit", type=int, default=50,
                        help="page size of the paged lists (default 50: at 100 servers the next "
                             "page is full too)")
    parser.add_argument("--boots", type=int, default=10,
                        help="boots timed one at a time per size (default 10)")
    parser.add_argument("--templates", type=int, default=20,
                        help="servers booted for real, which the bulk load copies "
                             "(default 20)")
    parser.add_argument("--hosts", type=int, default=10, help="fake hosts (default 10)")
    parser.add_argument("--poll-interval", type=float, default=0.02,
                        help="seconds between GETs of a timed boot (default 0.02)")
    parser.add_argument("--idle-seconds", type=float, default=10.0,
                        help="seconds of no requests over which the server's own CPU per "
                             "second is measured at each size (default 10)")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server URL (postgresql+asyncpg://user@host:5432/"
                             "postgres): the run's databases are a new one there, dropped "
                             "afterwards (default: SQLite files in the data dir)")
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


async def _timed(clocks: _Clocks, rounds: int,
                 request: Request) -> tuple[float, float, float, float]:
    """p50 wall time, server CPU per request, mean wall time and database CPU per request,
    in ms (after one request not counted)."""
    await request()
    times: list[float] = []
    before = await clocks.read()
    for _ in range(rounds):
        started = time.perf_counter()
        await request()
        times.append(time.perf_counter() - started)
    used, database = _Clocks.used(before, await clocks.read())
    return (percentile(times, 50) * 1e3, used / rounds * 1e3, sum(times) / rounds * 1e3,
            database / rounds * 1e3)


async def _idle_cpu(clocks: _Clocks, seconds: float) -> tuple[float, float]:
    """The server's CPU per second with no request in flight (its periodic work: heartbeats,
    host reports, the scheduler's host states) and the database's for it, in ms: both are in
    every request's CPU too."""
    before = await clocks.read()
    await asyncio.sleep(seconds)
    used, database = _Clocks.used(before, await clocks.read())
    return used / seconds * 1e3, database / seconds * 1e3


async def _measure(session: Session, clocks: _Clocks, network: str, size: int,
                   args: argparse.Namespace) -> dict[str, float]:
    client, headers = session.client, session.headers
    idle, idle_database = await _idle_cpu(clocks, args.idle_seconds)

    async def get(path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await client.get(path, headers=headers, params=params)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    first = await get(f"{API}/servers/detail", {"limit": args.limit})
    marker = first["servers"][-1]["id"]
    found: dict[str, tuple[float, float, float, float]] = {
        "detail": await _timed(clocks, args.rounds, lambda: get(
            f"{API}/servers/detail", {"limit": args.limit})),
        "detail_next": await _timed(clocks, args.rounds, lambda: get(
            f"{API}/servers/detail", {"limit": args.limit, "marker": marker})),
        "ports": await _timed(clocks, args.rounds, lambda: get(
            f"{NETWORK_API}/ports", {"limit": args.limit})),
        "servers_all": await _timed(clocks, args.rounds, lambda: get(f"{API}/servers")),
    }
    recorded: list[float] = []
    before = await clocks.read()
    for n in range(args.boots):
        sent_at = time.time()
        server = await _boot(session, network, f"timed-{size}-{n}")
        if await session.wait_done(server, args.poll_interval) != "ACTIVE":
            raise RuntimeError(f"boot {n} at {size} servers did not go ACTIVE")
        active_at = await session.recorded_active(server)
        if active_at is not None:
            recorded.append(active_at - sent_at)
    boot_used, boot_database = _Clocks.used(before, await clocks.read())
    metrics = {f"idle_cpu_ms_per_s_{size}": idle}
    if clocks.database_url:
        metrics[f"idle_db_cpu_ms_per_s_{size}"] = idle_database
    for what, (p50, cpu_ms, wall_ms, database_ms) in found.items():
        metrics[f"{what}_p50_ms_{size}"] = p50
        metrics[f"{what}_cpu_ms_{size}"] = cpu_ms
        # Less what the server spends meanwhile on its own (``idle``, which grows with the
        # servers: heartbeats list them): the request's own CPU.
        metrics[f"{what}_cpu_net_ms_{size}"] = cpu_ms - idle * wall_ms / 1e3
        if clocks.database_url:
            metrics[f"{what}_db_cpu_ms_{size}"] = database_ms
            metrics[f"{what}_db_cpu_net_ms_{size}"] = database_ms - idle_database * wall_ms / 1e3
    metrics[f"boot_p50_ms_{size}"] = percentile(recorded, 50) * 1e3
    metrics[f"boot_cpu_ms_{size}"] = boot_used / max(args.boots, 1) * 1e3
    if clocks.database_url:
        metrics[f"boot_db_cpu_ms_{size}"] = boot_database / max(args.boots, 1) * 1e3
    _progress(f"{size} servers: " + ", ".join(f"{k.rsplit('_', 1)[0]} {v:.1f}"
                                              for k, v in metrics.items()))
    return metrics


def _ratios(metrics: dict[str, float], sizes: list[int]) -> dict[str, float]:
    kinds = ("detail_p50_ms", "detail_cpu_ms", "detail_cpu_net_ms", "detail_next_p50_ms",
             "detail_next_cpu_ms", "detail_next_cpu_net_ms", "ports_p50_ms", "ports_cpu_ms",
             "ports_cpu_net_ms", "servers_all_p50_ms", "servers_all_cpu_ms",
             "servers_all_cpu_net_ms", "boot_p50_ms", "boot_cpu_ms", "idle_cpu_ms_per_s",
             "detail_db_cpu_ms", "detail_next_db_cpu_ms", "ports_db_cpu_ms",
             "servers_all_db_cpu_ms", "boot_db_cpu_ms", "idle_db_cpu_ms_per_s",
             "detail_db_cpu_net_ms", "detail_next_db_cpu_net_ms", "ports_db_cpu_net_ms",
             "servers_all_db_cpu_net_ms")
    ratios = {}
    for kind in kinds:
        # GET /servers shows every server up to 1,000: compared from the first size of
        # at least 1,000, where it shows a full page.
        base = next((s for s in sizes if s >= 1000), sizes[0]) \
            if kind.startswith("servers_all") else sizes[0]
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
        data = Path(tmp) / "data"
        async with scratch_database(args.database_url) as database_url, \
                StratusUp(data, bcrypt_rounds=args.bcrypt_rounds, database_url=database_url,
                          env=env) as cloud, contextlib.AsyncExitStack() as stack:
            password = cloud.admin_password()
            assert password is not None
            limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
            async with httpx.AsyncClient(base_url=cloud.base_url, timeout=300,
                                         limits=limits) as client:
                session = await _prepare(client, cloud.identity_url, password, args.hosts)
                project = await _project_id(session)
                await _quotas(session, project)
                network = await _network(session)
                _progress(f"booting {args.templates} template servers")
                templates = await _templates(session, network, args.templates)
                clocks = await stack.enter_async_context(_Clocks(cloud.pid, database_url))
                for size in sizes:
                    missing = size - await live_servers(data, project,
                                                        database_url=database_url)
                    started = time.perf_counter()
                    await clone_servers(data, templates, missing, database_url=database_url,
                                        seed=size)
                    _progress(f"bulk-loaded {missing} servers in "
                              f"{time.perf_counter() - started:.1f} s")
                    metrics.update(await _measure(session, clocks, network, size, args))
            backends = {**await database_info(database_url, data / "compute.db"),
                        "bus": "memory://", "virt_driver": "fake", "network_backend": "noop",
                        "fake_hosts": args.hosts, "bcrypt_rounds": args.bcrypt_rounds,
                        "populated_by": "bulk load of copied rows (benchmarks._bulk)"}
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
