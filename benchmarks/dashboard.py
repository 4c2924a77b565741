"""The dashboard's instances page with 200 servers, and one status poll, against a real
``stratus up`` (fake hypervisor) over loopback HTTP.

After the admin project's quota is lifted, a 4 KiB image uploaded and ``--servers`` servers
built (one multi-create, on the ``private`` network, waited ACTIVE), a logged-in dashboard
session asks, ``--rounds`` times each:

* ``instances``: ``GET /dashboard/instances`` (``page_size`` = ``--servers``): time to the
  first byte (the response's headers: the dashboard's round of API calls and the render are
  done, as it answers in one piece) and to the whole page;
* ``servers_detail_api``: the compute API's ``servers/detail`` alone, the page's one call
  that grows with the rows (what the page costs beyond it is the dashboard's);
* ``poll``: ``POST /dashboard/instances/poll`` watching every row (one
  ``servers/detail?changes-since``; nothing changed: no cells, a new poller).

Goals (issue 16): the page ≤ 150 ms, a poll ≤ 20 ms, p50, server side (loopback only).

Each also reports the ``stratus up`` process's CPU time (user + system) per request over its
rounds (``*_server_cpu_ms``): what the server spends, which a busy machine's load stretches
in wall time but barely changes, so before/after figures compare on a loaded machine.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import Goal, Result, percentile
from benchmarks._cloud import StratusUp, issue_token, sqlite_info


def _cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user + system)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)

DESCRIPTION = "the dashboard's instances page with 200 servers and one status poll"
API = "/compute/v2.1"
PAGE_GOAL_MS = 150.0
POLL_GOAL_MS = 20.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--servers", type=int, default=200,
                        help="servers on the page (default 200)")
    parser.add_argument("--rounds", type=int, default=30,
                        help="pages and polls measured, each (default 30)")
    parser.add_argument("--bcrypt-rounds", type=int, default=4,
                        help="bcrypt cost (logins are not measured; default 4)")


def _progress(text: str) -> None:
    import sys

    print(f"dashboard: {text}", file=sys.stderr, flush=True)


async def _servers(client: httpx.AsyncClient, token: str, count: int) -> None:
    headers = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.47"}
    projects = (await client.get("/identity/v3/auth/projects", headers=headers)).json()
    project = next(p["id"] for p in projects["projects"] if p["name"] == "admin")
    response = await client.put(f"{API}/os-quota-sets/{project}", headers=headers, json={
        "quota_set": {"instances": -1, "cores": -1, "ram": -1}})
    response.raise_for_status()
    image = (await client.post("/image/v2/images", headers=headers, json={
        "name": "bench", "disk_format": "raw", "container_format": "bare"})).json()
    response = await client.put(f"/image/v2/images/{image['id']}/file", content=b"\0" * 4096,
                                headers={**headers, "Content-Type": "application/octet-stream"})
    response.raise_for_status()
    networks = (await client.get("/network/v2.0/networks", headers=headers,
                                 params={"name": "private"})).json()["networks"]
    response = await client.post(f"{API}/servers", headers=headers, json={"server": {
        "name": "bench", "imageRef": image["id"], "flavorRef": "1", "min_count": count,
        "max_count": count, "networks": [{"uuid": networks[0]["id"]}] if networks else "none"}})
    response.raise_for_status()
    deadline = time.monotonic() + 600
    while True:
        listed = (await client.get(f"{API}/servers", headers=headers,
                                   params={"status": "BUILD"})).json()["servers"]
        if not listed:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(listed)} servers still in BUILD after 600 s")
        await asyncio.sleep(1)


async def _login(browser: httpx.AsyncClient, password: str) -> str:
    page = await browser.get("/dashboard/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    done = await browser.post("/dashboard/login", data={
        "csrf_token": token.group(1), "domain": "Default", "user": "admin",
        "password": password})
    if done.status_code != 303:
        raise RuntimeError(f"dashboard login answered {done.status_code}")
    page = await browser.get("/dashboard/instances")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    return csrf.group(1)


async def _timed_get(browser: httpx.AsyncClient, path: str) -> tuple[float, float, str]:
    started = time.perf_counter()
    async with browser.stream("GET", path) as response:
        first = time.perf_counter() - started
        body = (await response.aread()).decode()
    return first, time.perf_counter() - started, body


async def run(args: argparse.Namespace) -> Result:
    work = Path(tempfile.mkdtemp(prefix="stratus-bench-dashboard-"))
    env = {"STRATUS_COMPUTE__VIRT_DRIVER": "fake", "STRATUS_NETWORK__BACKEND": "noop",
           "STRATUS_DASHBOARD__PAGE_SIZE": str(args.servers)}
    async with StratusUp(work / "data", bcrypt_rounds=args.bcrypt_rounds, env=env) as cloud:
        password = cloud.admin_password()
        assert password is not None
        apis: list[float] = []
        async with httpx.AsyncClient(base_url=cloud.base_url, timeout=120) as client:
            token = await issue_token(client, cloud.identity_url, password)
            _progress(f"building {args.servers} servers")
            await _servers(client, token, args.servers)
            # The compute API's own share: the one call of the page that grows with rows.
            cpu = _cpu_seconds(cloud.pid)
            for _ in range(args.rounds):
                started = time.perf_counter()
                response = await client.get(f"{API}/servers/detail", params={
                    "limit": args.servers}, headers={"X-Auth-Token": token,
                                                     "OpenStack-API-Version": "compute 2.47"})
                apis.append(time.perf_counter() - started)
                response.raise_for_status()
            api_cpu = (_cpu_seconds(cloud.pid) - cpu) / args.rounds
        async with httpx.AsyncClient(base_url=cloud.base_url, timeout=120) as browser:
            csrf = await _login(browser, password)
            first_bytes: list[float] = []
            pages: list[float] = []
            polls: list[float] = []
            rows = 0
            body = ""
            cpu = _cpu_seconds(cloud.pid)
            for _ in range(args.rounds):
                first, whole, body = await _timed_get(browser, "/dashboard/instances")
                first_bytes.append(first)
                pages.append(whole)
            page_cpu = (_cpu_seconds(cloud.pid) - cpu) / args.rounds
            rows = body.count('<tr id="server-')
            ids = re.findall(r'<tr id="server-([^"]+)"', body)
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            cpu = _cpu_seconds(cloud.pid)
            for _ in range(args.rounds):
                started = time.perf_counter()
                response = await browser.post(
                    f"/dashboard/instances/poll?since={since}&delay=2", data={"id": ids},
                    headers={"X-CSRF-Token": csrf, "HX-Request": "true"})
                polls.append(time.perf_counter() - started)
                response.raise_for_status()
            poll_cpu = (_cpu_seconds(cloud.pid) - cpu) / args.rounds
    _progress(f"{rows} rows; page p50 {percentile(pages, 50) * 1e3:.1f} ms (server CPU "
              f"{page_cpu * 1e3:.1f} ms), poll p50 {percentile(polls, 50) * 1e3:.1f} ms")
    return Result(
        metrics={"rows": rows,
                 "instances_first_byte_p50_ms": percentile(first_bytes, 50) * 1e3,
                 "instances_first_byte_p95_ms": percentile(first_bytes, 95) * 1e3,
                 "instances_page_p50_ms": percentile(pages, 50) * 1e3,
                 "instances_page_p95_ms": percentile(pages, 95) * 1e3,
                 "instances_page_bytes": len(body.encode()),
                 "instances_page_server_cpu_ms": page_cpu * 1e3,
                 "servers_detail_api_p50_ms": percentile(apis, 50) * 1e3,
                 "servers_detail_api_server_cpu_ms": api_cpu * 1e3,
                 "poll_p50_ms": percentile(polls, 50) * 1e3,
                 "poll_p95_ms": percentile(polls, 95) * 1e3,
                 "poll_server_cpu_ms": poll_cpu * 1e3},
        goals=[Goal("instances_page_p50_ms", PAGE_GOAL_MS, "<=",
                    f"the instances page with {args.servers} servers, whole, server side"),
               Goal("poll_p50_ms", POLL_GOAL_MS, "<=",
                    f"one status poll watching {args.servers} rows")],
        backends={**sqlite_info(work / "data" / "compute.db"),
                  "bcrypt_rounds": args.bcrypt_rounds, "virt_driver": "fake"})
