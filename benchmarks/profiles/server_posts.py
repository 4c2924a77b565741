"""``python benchmarks/profiles/server_posts.py [DATABASE_URL] [N] [PROFILE]``: what the Compute
API's ``POST /servers`` (the boot's first hop) costs alone, counted where the machine's load
does not reach: Python calls per POST (cProfile of the measured POSTs), SQL statements and
COMMITs per POST (every engine of the process), spans per POST, and the process's CPU per
POST (load-dependent).

The identity, image and compute APIs built in this process as ``bootcpu`` builds them
(SQLite in a temporary directory unless ``DATABASE_URL`` names another database, e.g. a fresh
PostgreSQL one; the memory bus; tracing and the span store on), the admin project's quota
lifted, a 4 KiB raw image; no scheduler: each boot's cast to it stays in the memory bus's
queue. 120 POSTs first (``WARMUP``), then ``N`` (default 300) with 50 in flight, each
handed to the ASGI app as an HTTP server would (no HTTP client's calls in the profile).
``PROFILE``: also write the cProfile there (``pstats`` format). Prints one JSON line; the
statements by kind and the spans by name go to stderr. Another tree's code is measured
with ``PYTHONPATH=<tree>``.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import json
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._inprocess import API, admin_with_image, in_process_cloud
from benchmarks.bootcpu import _boot_all, _SqlCounter, _stored_spans
from benchmarks.profiles.asgi_posts import post_many

UNITS = ("identity-api", "image-api", "compute-api")
#: POSTs made first and not counted: past ``routing.TABLE_AFTER_REQUESTS``, after which an
#: API's routes are matched by its table rather than by FastAPI's dispatch.
WARMUP = 120


async def main(url: str | None, posts: int, profile: Path | None) -> dict[str, Any]:
    from stratus.cli.main import COLLECTOR_THRESHOLDS

    async with in_process_cloud(UNITS, prefix="bench-posts-", connections=50,
                                **({"database_url": url} if url else {})) as cloud:
        headers, image_id = await admin_with_image(cloud.client)
        await _boot_all(cloud.client, headers, image_id, WARMUP, 50, "warm")
        gc.collect()
        gc.freeze()
        gc.set_threshold(*COLLECTOR_THRESHOLDS)
        profiler = cProfile.Profile(time.thread_time)
        spans_before = _stored_spans(cloud.data_dir)
        counts = _SqlCounter()
        cpu = time.process_time()
        profiler.enable()
        await _post_all(cloud.app, headers, image_id, posts, 50)
        profiler.disable()
        cpu = time.process_time() - cpu
        counts.stop()
        spans = _stored_spans(cloud.data_dir) - spans_before
    for statement, seen in counts.kinds.most_common():
        print(f"{seen / posts:7.2f}  {statement}", file=sys.stderr)
    for name, seen in spans.most_common():
        print(f"{seen / posts:7.2f}  span {name}", file=sys.stderr)
    if profile is not None:
        profiler.dump_stats(profile)
    return {"python_calls_per_post": round(pstats.Stats(profiler).total_calls / posts, 1),
            "sql_statements_per_post": round(counts.statements / posts, 2),
            "commits_per_post": round(counts.commits / posts, 2),
            "spans_per_post": round(spans.total() / posts, 2),
            # cProfile's own cost included: compare runs made the same way.
            "profiled_cpu_ms_per_post": round(cpu / posts * 1000, 3),
            "load_average": os.getloadavg()[0]}


async def _post_all(app: Any, headers: dict[str, str], image_id: str, count: int,
                    in_flight: int) -> None:
    """``count`` boots, ``in_flight`` at most at once, each a ``POST /servers``."""

    def body_of(index: int) -> bytes:
        return json.dumps({"server": {"name": f"bench-{index}", "imageRef": image_id,
                                      "flavorRef": "1", "networks": "none"}}).encode()

    await post_many(app, f"{API}/servers", headers, body_of, count, in_flight, 202)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(
        sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-" else None,
        int(sys.argv[2]) if len(sys.argv) > 2 else 300,
        Path(sys.argv[3]) if len(sys.argv) > 3 else None))))
