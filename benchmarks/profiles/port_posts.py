"""``python -m benchmarks.profiles.port_posts [DATABASE_URL] [N] [IN_FLIGHT] [PROFILE]``: what
the Network API's ``POST /v2.0/ports`` costs, counted where the machine's load does not
reach: Python calls per create (cProfile of the measured creates, the loop's thread), SQL
statements and COMMITs per create (every engine of the process), spans per create, how
often a create found SQLite's write lock taken (``txn._sqlite_writer``), group commit's
batches, and the process's CPU per create (load-dependent).

The identity and network APIs built in this process as ``stratus up`` builds them (SQLite in
a temporary directory unless ``DATABASE_URL`` names another database, e.g. a fresh
PostgreSQL one; the memory bus; the noop network backend; tracing and the span store on).
A network with a /16 subnet; 120 creates first (``WARMUP``), then ``N`` (default 400) with
``IN_FLIGHT`` (default 50) at once, each handed to the ASGI app as an HTTP server would (no
HTTP client's calls in the profile). ``PROFILE``: also write the cProfile there. Prints
one JSON line; the statements by kind and the spans by name go to stderr. Another tree's
code is measured with ``PYTHONPATH=<tree>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import json
import os
import pstats
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks._inprocess import PASSWORD, in_process_cloud
from benchmarks.bootcpu import _SqlCounter, _stored_spans
from benchmarks.profiles.asgi_posts import post_many

UNITS = ("identity-api", "network-api")
API = "/network/v2.0"
#: Creates made first and not counted: past ``routing.TABLE_AFTER_REQUESTS``.
WARMUP = 120


class _WriterWaits:
    """Counts the SQLite write transactions opened, and those that found the file's write
    lock held by another (they queued), until ``stop``."""

    def __init__(self) -> None:
        from stratus.core.db import txn

        self.opened = 0
        self.queued = 0
        self._txn = txn
        self._original = original = txn._sqlite_writer

        @contextlib.asynccontextmanager
        async def counted(key: str | None) -> AsyncIterator[None]:
            if key is not None:
                self.opened += 1
                writer = txn._writers.get(asyncio.get_running_loop(), {}).get(key)
                self.queued += writer is not None and writer.lock.locked()
            async with original(key):
                yield

        txn._sqlite_writer = counted

    def stop(self) -> None:
        self._txn._sqlite_writer = self._original


async def main(url: str | None, creates: int, in_flight: int,
               profile: Path | None) -> dict[str, Any]:
    from stratus.cli.main import COLLECTOR_THRESHOLDS
    from stratus.core.db.group import TOTALS

    async with in_process_cloud(UNITS, prefix="bench-ports-", connections=in_flight,
                                **({"database_url": url} if url else {})) as cloud:
        client = cloud.client
        auth = await client.post("/identity/v3/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
        auth.raise_for_status()
        headers = {"X-Auth-Token": auth.headers["X-Subject-Token"]}
        net = (await client.post(f"{API}/networks", headers=headers, json={
            "network": {"name": "counted"}})).json()["network"]
        subnet = await client.post(f"{API}/subnets", headers=headers, json={"subnet": {
            "network_id": net["id"], "cidr": "10.100.0.0/16", "ip_version": 4}})
        assert subnet.status_code == 201, subnet.text
        body = json.dumps({"port": {"network_id": net["id"]}}).encode()
        await _post_all(cloud.app, headers, body, WARMUP, in_flight)
        gc.collect()
        gc.freeze()
        gc.set_threshold(*COLLECTOR_THRESHOLDS)
        profiler = cProfile.Profile(time.thread_time)
        spans_before = _stored_spans(cloud.data_dir)
        grouped_before = dict(TOTALS)
        counts, waits = _SqlCounter(), _WriterWaits()
        cpu = time.process_time()
        profiler.enable()
        await _post_all(cloud.app, headers, body, creates, in_flight)
        profiler.disable()
        cpu = time.process_time() - cpu
        counts.stop()
        waits.stop()
        spans = _stored_spans(cloud.data_dir) - spans_before
        grouped = {k: v - grouped_before.get(k, 0) for k, v in TOTALS.items()}
    for statement, seen in counts.kinds.most_common():
        print(f"{seen / creates:7.2f}  {statement}", file=sys.stderr)
    for name, seen in spans.most_common():
        print(f"{seen / creates:7.2f}  span {name}", file=sys.stderr)
    if profile is not None:
        profiler.dump_stats(profile)
    return {"creates": creates, "in_flight": in_flight,
            "python_calls_per_create": round(pstats.Stats(profiler).total_calls / creates, 1),
            "sql_statements_per_create": round(counts.statements / creates, 3),
            "commits_per_create": round(counts.commits / creates, 3),
            "write_transactions_per_create": round(waits.opened / creates, 3),
            "write_lock_queued_per_create": round(waits.queued / creates, 3),
            "group_batches_per_create": round(grouped.get("batches", 0) / creates, 3),
            "group_units_batched_per_create": round(grouped.get("batched_units", 0) / creates,
                                                    3),
            "group_units_retried_alone": grouped.get("retried_alone", 0),
            "spans_per_create": round(spans.total() / creates, 2),
            # cProfile's own cost included: compare runs made the same way.
            "profiled_cpu_ms_per_create": round(cpu / creates * 1000, 3),
            "load_average": os.getloadavg()[0]}


async def _post_all(app: Any, headers: dict[str, str], body: bytes, count: int,
                    in_flight: int) -> None:
    """``count`` port creates, ``in_flight`` at most at once, each a ``POST /v2.0/ports``."""
    await post_many(app, f"{API}/ports", headers, lambda _: body, count, in_flight, 201)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(
        sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-" else None,
        int(sys.argv[2]) if len(sys.argv) > 2 else 400,
        int(sys.argv[3]) if len(sys.argv) > 3 else 50,
        Path(sys.argv[4]) if len(sys.argv) > 4 else None))))
