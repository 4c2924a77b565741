"""Boot: POST /servers → ACTIVE against a real all-in-one ``stratus up`` (fake driver).

* ``boot``: one boot at a time (``--sequential`` of them): the time from sending
  ``POST /compute/v2.1/servers`` until ``GET`` first shows ACTIVE (polled every 2 ms).
* ``concurrent``: ``--concurrent`` boots sent at once onto ``--hosts`` fake hosts; the time
  from the first POST until every one is ACTIVE, as boots per second.

The quota of the admin project is lifted first; the image is a 4 KiB raw one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import Goal, Result, percentile
from benchmarks._cloud import StratusUp, issue_token

DESCRIPTION = "POST /servers to ACTIVE latency, and throughput of many concurrent boots"

P50_GOAL_MS = 50.0
THROUGHPUT_GOAL = 200.0
API = "/compute/v2.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sequential", type=int, default=50,
                        help="boots timed one at a time (default 50)")
    parser.add_argument("--concurrent", type=int, default=1000,
                        help="boots sent at once (default 1000)")
    parser.add_argument("--hosts", type=int, default=100, help="fake hosts (default 100)")


async def _wait_active(client: httpx.AsyncClient, headers: dict[str, str],
                       server_id: str) -> None:
    while True:
        server = (await client.get(f"{API}/servers/{server_id}", headers=headers)).json()[
            "server"]
        if server["status"] == "ACTIVE":
            return
        if server["status"] == "ERROR":
            raise RuntimeError(f"boot failed: {server.get('fault')}")
        await asyncio.sleep(0.002)


def _body(image_id: str, name: str) -> dict[str, Any]:
    return {"server": {"name": name, "imageRef": image_id, "flavorRef": "1",
                       "networks": "none"}}


async def run(args: argparse.Namespace) -> Result:
    os.environ["STRATUS_COMPUTE__FAKE_HOSTS"] = str(args.hosts)
    os.environ["STRATUS_COMPUTE__HOST"] = "bench"
    with tempfile.TemporaryDirectory(prefix="stratus-bench-boot-") as tmp:
        async with StratusUp(Path(tmp) / "data", bcrypt_rounds=4) as cloud:
            await cloud.wait_ready()
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
            async with httpx.AsyncClient(base_url=cloud.base_url, timeout=300,
                                         limits=limits) as client:
                password = cloud.admin_password()
                assert password is not None
                token = await issue_token(client, cloud.identity_url, password)
                headers = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.96"}
                projects = (await client.get("/identity/v3/auth/projects",
                                             headers=headers)).json()["projects"]
                project = next(p["id"] for p in projects if p["name"] == "admin")
                await client.put(f"{API}/os-quota-sets/{project}", headers=headers, json={
                    "quota_set": {"instances": -1, "cores": -1, "ram": -1}})
                image = (await client.post("/image/v2/images", headers=headers, json={
                    "name": "bench", "disk_format": "raw", "container_format": "bare"})).json()
                await client.put(f"/image/v2/images/{image['id']}/file", content=b"\0" * 4096,
                                 headers={**headers,
                                          "Content-Type": "application/octet-stream"})
                latencies = []
                for n in range(args.sequential):
                    started = time.perf_counter()
                    response = await client.post(f"{API}/servers", headers=headers,
                                                 json=_body(image["id"], f"seq{n}"))
                    await _wait_active(client, headers, response.json()["server"]["id"])
                    latencies.append(time.perf_counter() - started)
                started = time.perf_counter()
                responses = await asyncio.gather(*(
                    client.post(f"{API}/servers", headers=headers,
                                json=_body(image["id"], f"c{n}"))
                    for n in range(args.concurrent)))
                ids = [r.json()["server"]["id"] for r in responses]
                for server_id in ids:
                    await _wait_active(client, headers, server_id)
                elapsed = time.perf_counter() - started
    metrics = {
        "boot_p50_ms": percentile(latencies, 50) * 1e3,
        "boot_p95_ms": percentile(latencies, 95) * 1e3,
        "concurrent_boots_per_s": args.concurrent / elapsed,
        "concurrent_boots_total_s": elapsed,
    }
    return Result(metrics=metrics, goals=[
        Goal("boot_p50_ms", P50_GOAL_MS, "<=", "one boot at a time, all-in-one, fake driver"),
        Goal("concurrent_boots_per_s", THROUGHPUT_GOAL, ">=",
             f"{args.concurrent} boots at once onto {args.hosts} fake hosts, all-in-one"),
    ], backends={"virt_driver": "fake", "fake_hosts": args.hosts, "bus": "memory://",
                 "database": "sqlite"})
