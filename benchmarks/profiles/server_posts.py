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
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bootcpu import API, PASSWORD, ROOT, _boot_all, _SqlCounter, _stored_spans

UNITS = ("identity-api", "image-api", "compute-api")
#: POSTs made first and not counted: past ``routing.TABLE_AFTER_REQUESTS``, after which an
#: API's routes are matched by its table rather than by FastAPI's dispatch.
WARMUP = 120


async def main(url: str | None, posts: int, profile: Path | None) -> dict[str, Any]:
    from stratus.cli.main import COLLECTOR_THRESHOLDS
    from stratus.core.config import Settings
    from stratus.core.logging import setup_logging
    from stratus.core.spanstore import enable_span_store, set_process_units
    from stratus.core.tracing import setup_tracing
    from stratus.stack import Stack
    from stratus.units import root_app, run_bootstrap
    from tests.integration.asgi import LateASGITransport

    with tempfile.TemporaryDirectory(prefix="bench-posts-") as tmp:
        data_dir = Path(tmp)
        os.environ["STRATUS_CONFIG_FILE"] = "/nonexistent"
        settings = Settings(data_dir=data_dir, public_url=ROOT, admin_password=PASSWORD,
                            identity={"bcrypt_rounds": 4}, network={"backend": "noop"},
                            **({"database_url": url} if url else {}))
        setup_logging(settings.log_level, log_file=data_dir / "stratus.log",
                      console_level=100, json_lines=False)
        setup_tracing("stratus", None)
        enable_span_store(data_dir, max_age=settings.tracing.store_max_age,
                          max_spans=settings.tracing.store_max_spans)
        set_process_units(list(UNITS))
        transport = LateASGITransport()
        stack = Stack(settings, http_transport=transport)
        try:
            await run_bootstrap(stack)
            app = await root_app(stack, list(UNITS))
            transport.app = app
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url=ROOT, timeout=120,
                                         limits=httpx.Limits(max_connections=50)) as client:
                headers, image_id = await _prepare(client)
                await _boot_all(client, headers, image_id, WARMUP, 50, "warm")
                gc.collect()
                gc.freeze()
                gc.set_threshold(*COLLECTOR_THRESHOLDS)
                profiler = cProfile.Profile(time.thread_time)
                spans_before = _stored_spans(data_dir)
                counts = _SqlCounter()
                cpu = time.process_time()
                profiler.enable()
                await _post_all(app, headers, image_id, posts, 50)
                profiler.disable()
                cpu = time.process_time() - cpu
                counts.stop()
                spans = _stored_spans(data_dir) - spans_before
        finally:
            await stack.aclose()
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
    """``count`` boots, ``in_flight`` at most at once, each a ``POST /servers`` sent to the
    ASGI app as an HTTP server would (no HTTP client in the process: its calls would be
    counted with the API's)."""
    gate = asyncio.Semaphore(in_flight)
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()] + [
        (b"host", b"bench"), (b"content-type", b"application/json")]
    path = f"{API}/servers"

    async def one(index: int) -> None:
        body = json.dumps({"server": {"name": f"bench-{index}", "imageRef": image_id,
                                      "flavorRef": "1", "networks": "none"}}).encode()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "root_path": "", "query_string": b"", "client": ("127.0.0.1", 40000),
                 "server": ("bench", 80),
                 "headers": [*raw_headers, (b"content-length", str(len(body)).encode())]}
        sent = False
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # a client that stays connected
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        async with gate:
            await app(scope, receive, send)
        if status != [202]:
            raise RuntimeError(f"POST /servers: {status}")

    await asyncio.gather(*(one(i) for i in range(count)))


async def _prepare(client: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    """The admin's headers (quota lifted) and an active image's id."""
    auth = await client.post("/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    auth.raise_for_status()
    headers = {"X-Auth-Token": auth.headers["X-Subject-Token"],
               "OpenStack-API-Version": "compute 2.96"}
    project_id = auth.json()["token"]["project"]["id"]
    quota = await client.put(f"{API}/os-quota-sets/{project_id}", headers=headers, json={
        "quota_set": {"instances": -1, "cores": -1, "ram": -1}})
    quota.raise_for_status()
    image = (await client.post("/image/v2/images", headers=headers, json={
        "name": "bench", "disk_format": "raw", "container_format": "bare"})).json()
    upload = await client.put(f"/image/v2/images/{image['id']}/file", content=b"\0" * 4096,
                              headers={**headers, "Content-Type": "application/octet-stream"})
    upload.raise_for_status()
    return headers, str(image["id"])


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(
        sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-" else None,
        int(sys.argv[2]) if len(sys.argv) > 2 else 300,
        Path(sys.argv[3]) if len(sys.argv) > 3 else None))))
