"""Identity: password token issue and token validation, over HTTP and in-process.

Over HTTP, against a real ``stratus up`` (fresh data dir, free port):

* ``issue``: ``POST /identity/v3/auth/tokens`` with a password, project scope, catalog in
  the body; each request runs bcrypt at ``--bcrypt-rounds`` (Keystone's default is 12).
* ``http_validate``: ``GET /identity/v3/auth/tokens`` with ``X-Subject-Token``: the caller's
  own token goes through the auth cache, the subject token through full, uncached validation
  (Fernet decrypt, revocation check, token body rebuilt from the database).

In-process, on one CPU (the runtime built as ``stratus.stack.Stack`` builds it, on a temp dir):

* ``cached_validate``: the hit path of ``CachingValidator.validate``, which every API's token
  middleware uses.
* ``uncached_validate``: ``IdentityRuntime.validate``, the full path the cache sits in front of.

``bcrypt.checkpw``/``hashpw`` are wrapped with a counter during the in-process part:
``bcrypt_calls_during_validation`` must be 0 (validation never re-runs bcrypt) and
``bcrypt_calls_per_password_issue`` shows the counter does see a password check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx

from benchmarks import Goal, Result, latency_metrics
from benchmarks._cloud import (
    StratusUp,
    database_info,
    issue_token,
    password_auth,
    scratch_database,
)

DESCRIPTION = ("password token issue and token validation over HTTP (real stratus up); "
               "cached vs uncached validation in-process")

CACHED_VALIDATE_GOAL = 5000.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bcrypt-rounds", type=int, default=12,
                        help="bcrypt cost for stored passwords (default 12, as Keystone)")
    parser.add_argument("--clients", type=int, default=4,
                        help="concurrent HTTP clients, one connection each (default 4)")
    parser.add_argument("--issue-requests", type=int, default=40,
                        help="password token issues measured over HTTP (default 40)")
    parser.add_argument("--validate-requests", type=int, default=1000,
                        help="GET /auth/tokens validations measured over HTTP (default 1000)")
    parser.add_argument("--cached-iterations", type=int, default=200_000,
                        help="in-process cached validations (default 200000)")
    parser.add_argument("--uncached-iterations", type=int, default=1000,
                        help="in-process uncached validations (default 1000)")
    parser.add_argument("--cpu", type=int, default=None,
                        help="CPU the in-process part is pinned to (default: the first usable)")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL server URL (postgresql+asyncpg://...): run on a fresh "
                             "database created there; default SQLite in the data dir")
    parser.add_argument("--skip-http", action="store_true",
                        help="only the in-process part (no stratus up)")


def _progress(message: str) -> None:
    print(f"[identity] {message}", file=sys.stderr, flush=True)


# HTTP ------------------------------------------------------------------------------------


async def http_load(base_url: str, clients: int, total: int,
                    request: Callable[[httpx.AsyncClient], Awaitable[None]]
                    ) -> tuple[list[float], float]:
    """``total`` requests shared by ``clients`` concurrent clients: latencies and wall time."""
    latencies: list[float] = []
    remaining = total

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            await request(client)
            latencies.append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        pool = [await stack.enter_async_context(
            httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits))
            for _ in range(max(1, clients))]
        for client in pool:  # open each connection before the clock starts
            await client.get("/")
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(c) for c in pool))
        elapsed = time.perf_counter() - start
    return latencies, elapsed


async def measure_http(args: argparse.Namespace, data_dir: Path,
                       database_url: str | None) -> dict[str, float]:
    metrics: dict[str, float] = {}
    async with StratusUp(data_dir, bcrypt_rounds=args.bcrypt_rounds,
                         database_url=database_url) as cloud:
        password = cloud.admin_password()
        if password is None:
            raise cloud.failure("wrote no admin-password")
        url = cloud.identity_url
        body = password_auth(password)
        async with httpx.AsyncClient(timeout=120) as client:
            for _ in range(2):  # warm-up: first requests import and compile lazily
                caller = await issue_token(client, url, password)
            subject = await issue_token(client, url, password)

        async def issue(client: httpx.AsyncClient) -> None:
            response = await client.post(f"{url}/auth/tokens", json=body)
            if response.status_code != 201:
                raise RuntimeError(f"token issue answered {response.status_code}")

        headers = {"X-Auth-Token": caller, "X-Subject-Token": subject}

        async def validate(client: httpx.AsyncClient) -> None:
            response = await client.get(f"{url}/auth/tokens", headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"token validation answered {response.status_code}")

        _progress(f"HTTP token issue: {args.issue_requests} requests, {args.clients} clients, "
                  f"bcrypt rounds {args.bcrypt_rounds}")
        latencies, elapsed = await http_load(cloud.base_url, args.clients,
                                             args.issue_requests, issue)
        metrics.update(latency_metrics("issue", latencies, elapsed, "ms"))
        _progress(f"HTTP token validation: {args.validate_requests} requests")
        await http_load(cloud.base_url, args.clients, min(50, args.validate_requests), validate)
        latencies, elapsed = await http_load(cloud.base_url, args.clients,
                                             args.validate_requests, validate)
        metrics.update(latency_metrics("http_validate", latencies, elapsed, "ms"))
    return metrics


# In-process ------------------------------------------------------------------------------


class BcryptCounter:
    """Counts ``bcrypt.checkpw`` and ``bcrypt.hashpw`` calls while installed."""

    NAMES = ("checkpw", "hashpw")

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls += 1
            return original(*args, **kwargs)
        return counted

    @contextlib.contextmanager
    def installed(self) -> Iterator[BcryptCounter]:
        originals = {name: getattr(bcrypt, name) for name in self.NAMES}
        try:
            for name, original in originals.items():
                setattr(bcrypt, name, self._wrap(original))
            yield self
        finally:
            for name, original in originals.items():
                setattr(bcrypt, name, original)


@contextlib.contextmanager
def pinned(cpu: int | None) -> Iterator[int | None]:
    """Pin this thread (and threads it starts) to one CPU; restore the mask afterwards."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    target = cpu if cpu is not None else min(before)
    os.sched_setaffinity(0, {target})
    try:
        yield target
    finally:
        os.sched_setaffinity(0, before)


async def measure_in_process(args: argparse.Namespace, data_dir: Path,
                             database_url: str | None) -> dict[str, float]:
    from pydantic import SecretStr

    from stratus.core.auth import CachingValidator
    from stratus.core.config import IdentitySettings, Settings, TracingSettings
    from stratus.identity.authentication import (
        AuthRequest,
        PasswordCredentials,
        Scope,
        UserRef,
    )
    from stratus.stack import Stack
    from stratus.units import run_bootstrap

    password = "bench-" + os.urandom(9).hex()
    settings = Settings(data_dir=data_dir, database_url=database_url,
                        admin_password=SecretStr(password),
                        identity=IdentitySettings(bcrypt_rounds=args.bcrypt_rounds),
                        tracing=TracingSettings(enabled=False))
    counter = BcryptCounter()
    clock = time.perf_counter
    metrics: dict[str, float] = {}
    stack = Stack(settings)
    try:
        await run_bootstrap(stack)
        validator = stack.token_validator()  # CachingValidator over the in-process runtime
        runtime = stack.identity
        assert isinstance(validator, CachingValidator) and runtime is not None
        request = AuthRequest(
            methods=["password"],
            password=PasswordCredentials(user=UserRef(name="admin", domain_name="Default"),
                                         password=password),
            scope=Scope(kind="project", name="admin", domain_name="Default"))
        with counter.installed():
            async with runtime.service() as svc:
                token = (await svc.auth.authenticate(request)).token
            metrics["bcrypt_calls_per_password_issue"] = counter.calls
            counter.calls = 0

            # Cached: one miss fills the cache, then only hits.
            await validator.validate(token)
            hits, misses = validator.hits, validator.misses
            n = args.cached_iterations
            validate = validator.validate
            _progress(f"in-process cached validation: {n} iterations (throughput), "
                      f"{n} more timed one by one")
            start = clock()
            for _ in range(n):
                await validate(token)
            throughput_elapsed = clock() - start
            latencies = [0.0] * n
            for i in range(n):
                t0 = clock()
                await validate(token)
                latencies[i] = clock() - t0
            if validator.misses != misses or validator.hits - hits != 2 * n:
                raise RuntimeError("cached validation loop missed the cache")
            cached = latency_metrics("cached_validate", latencies, throughput_elapsed, "us")
            metrics.update(cached)

            # Uncached: the full validation every cache miss pays.
            m = args.uncached_iterations
            _progress(f"in-process uncached validation: {m} iterations")
            for _ in range(min(20, m)):
                await runtime.validate(token)
            latencies = [0.0] * m
            start = clock()
            for i in range(m):
                t0 = clock()
                await runtime.validate(token)
                latencies[i] = clock() - t0
            uncached = latency_metrics("uncached_validate", latencies, clock() - start, "us")
            metrics.update(uncached)
            metrics["bcrypt_calls_during_validation"] = counter.calls

        metrics["cached_over_uncached_speedup"] = (
            cached["cached_validate_ops_per_s"] / uncached["uncached_validate_ops_per_s"])
        samples = []
        hashed = bcrypt.hashpw(b"x" * 24, bcrypt.gensalt(args.bcrypt_rounds))
        for _ in range(3):
            t0 = clock()
            bcrypt.checkpw(b"x" * 24, hashed)
            samples.append(clock() - t0)
        metrics["bcrypt_checkpw_ms"] = statistics.median(samples) * 1e3
    finally:
        await stack.aclose()
    return metrics


# Scenario --------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> Result:
    metrics: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="stratus-bench-identity-") as tmp:
        root = Path(tmp)
        async with scratch_database(args.database_url) as database_url:
            if not args.skip_http:
                metrics.update(await measure_http(args, root / "http", database_url))
            backends = await database_info(database_url, root / "http" / "identity.db")
        async with scratch_database(args.database_url) as database_url:
            with pinned(args.cpu) as cpu:
                metrics.update(await measure_in_process(args, root / "inproc", database_url))
            if not backends.get("journal_mode"):
                backends = await database_info(database_url, root / "inproc" / "identity.db")
    if "issue_p50_ms" in metrics:
        # How much of a token issue is the password hash itself.
        metrics["issue_p50_over_bcrypt"] = metrics["issue_p50_ms"] / metrics["bcrypt_checkpw_ms"]
    backends.update({
        "bcrypt_rounds": args.bcrypt_rounds,
        "token_format": "fernet",
        "http_server": "uvicorn, one process (stratus up)",
        "server_log_level": os.environ.get("STRATUS_LOG_LEVEL", "INFO"),
        "in_process_pinned_cpu": cpu,
    })
    return Result(
        metrics=metrics,
        goals=[
            Goal("cached_validate_ops_per_s", CACHED_VALIDATE_GOAL, ">=",
                 "CachingValidator hit path, in-process, one CPU"),
            Goal("bcrypt_calls_during_validation", 0, "==",
                 "validation never re-runs bcrypt"),
        ],
        backends=backends,
    )
