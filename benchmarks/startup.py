"""Start-up: from launching ``stratus up`` to the first password token, and idle memory.

Each repeat launches ``stratus up`` twice on the same data dir: *cold* (fresh, empty data
dir: schema migrations, key repository, bootstrap with a bcrypt hash of the admin password)
and then *warm* (the existing dir: migrations already at head, bootstrap only checks).
The clock starts just before the process is launched and stops at the first ``201`` from
``POST /identity/v3/auth/tokens`` (polled every ``--poll-interval`` seconds, with the
password ``stratus up`` generates into ``DIR/admin-password``). After a few more requests
and ``--settle`` seconds idle, the resident memory of the process and its children is read.
Each figure is the median over the repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import Goal, Result
from benchmarks._cloud import (
    StratusUp,
    database_info,
    issue_token,
    password_auth,
    process_cpu_seconds,
    process_rss_bytes,
    scratch_database,
)

DESCRIPTION = ("seconds from launching stratus up (cold and warm data dir) to the first "
               "password token; idle RSS")

FIRST_TOKEN_GOAL_S = 2.0
IDLE_RSS_GOAL_MB = 150.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bcrypt-rounds", type=int, default=12,
                        help="bcrypt cost for stored passwords (default 12, as Keystone)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="cold+warm start pairs; figures are medians (default 3)")
    parser.add_argument("--requests", type=int, default=20,
                        help="token validations made after the first token, before the "
                             "memory reading (default 20)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="idle seconds before reading memory (default 1)")
    parser.add_argument("--poll-interval", type=float, default=0.01,
                        help="seconds between token attempts while starting (default 0.01)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="give up on a start after this many seconds (default 120)")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL server URL: each cold start gets a fresh database "
                             "there; default SQLite in the data dir")


def _progress(message: str) -> None:
    print(f"[startup] {message}", file=sys.stderr, flush=True)


async def first_token(cloud: StratusUp, client: httpx.AsyncClient, *, interval: float,
                      within: float) -> tuple[float, str, str]:
    """Poll until a password token is issued: (seconds since launch, token, password)."""
    deadline = cloud.started_at + within
    url = f"{cloud.identity_url}/auth/tokens"
    while time.perf_counter() < deadline:
        assert cloud.process is not None
        if cloud.process.returncode is not None:
            raise cloud.failure(f"exited with status {cloud.process.returncode}")
        password = cloud.admin_password()
        if password is not None:
            try:
                response = await client.post(url, json=password_auth(password))
            except httpx.TransportError:
                pass
            else:
                if response.status_code == 201:
                    return (time.perf_counter() - cloud.started_at,
                            response.headers["X-Subject-Token"], password)
        await asyncio.sleep(interval)
    raise cloud.failure(f"issued no token within {within} s")


async def one_start(args: argparse.Namespace, data_dir: Path,
                    database_url: str | None) -> dict[str, float]:
    cloud = StratusUp(data_dir, bcrypt_rounds=args.bcrypt_rounds, database_url=database_url)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            await cloud.start()
            seconds, token, password = await first_token(
                cloud, client, interval=args.poll_interval, within=args.timeout)
            cpu = process_cpu_seconds(cloud.pid)
            # Identity serves the first token before the other units have started: the
            # whole start ("Stratus is up") may come after it.
            ready = await cloud.wait_ready(within=args.timeout)
            other = await issue_token(client, cloud.identity_url, password)
            headers = {"X-Auth-Token": token, "X-Subject-Token": other}
            for _ in range(args.requests):
                response = await client.get(f"{cloud.identity_url}/auth/tokens",
                                            headers=headers)
                response.raise_for_status()
        await asyncio.sleep(args.settle)
        rss = process_rss_bytes(cloud.pid)
    finally:
        await cloud.stop()
    return {"first_token_s": seconds, "ready_s": ready, "idle_rss_mb": rss / 2**20,
            "cpu_to_first_token_s": cpu}


async def run(args: argparse.Namespace) -> Result:
    runs: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    backends: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="stratus-bench-startup-") as tmp:
        for i in range(args.repeats):
            data_dir = Path(tmp) / f"run{i}"
            async with scratch_database(args.database_url) as database_url:
                for kind in ("cold", "warm"):
                    figures = await one_start(args, data_dir, database_url)
                    _progress(f"{kind} start {i + 1}/{args.repeats}: first token "
                              f"{figures['first_token_s']:.3f} s, up "
                              f"{figures['ready_s']:.3f} s, RSS {figures['idle_rss_mb']:.1f} MB")
                    runs[kind].append(figures)
                if not backends:
                    backends = await database_info(database_url, data_dir / "identity.db")
    metrics: dict[str, float] = {}
    for kind, starts in runs.items():
        for name in ("first_token_s", "ready_s", "idle_rss_mb", "cpu_to_first_token_s"):
            metrics[f"{kind}_{name}"] = statistics.median(f[name] for f in starts)
    metrics["cold_over_warm_first_token"] = (metrics["cold_first_token_s"]
                                             / metrics["warm_first_token_s"])
    backends.update({"bcrypt_rounds": args.bcrypt_rounds,
                     "http_server": "uvicorn, one process (stratus up)"})
    return Result(
        metrics=metrics,
        goals=[
            Goal("cold_first_token_s", FIRST_TOKEN_GOAL_S, "<=",
                 "fresh data dir: migrations, keys, bootstrap, then one password token"),
            Goal("warm_first_token_s", FIRST_TOKEN_GOAL_S, "<=",
                 "existing data dir, then one password token"),
            Goal("cold_idle_rss_mb", IDLE_RSS_GOAL_MB, "<=",
                 "process and children, idle after start-up and a few requests"),
            Goal("warm_idle_rss_mb", IDLE_RSS_GOAL_MB, "<=",
                 "process and children, idle after start-up and a few requests"),
        ],
        backends=backends,
    )
