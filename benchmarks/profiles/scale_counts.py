"""``python benchmarks/profiles/scale_counts.py [DATABASE_URL|-] [SIZES]``: what ``scale``'s
requests cost at each size, counted where the machine's load does not reach.

The all-in-one's units built in this process (``benchmarks._inprocess``; SQLite in a
temporary directory unless ``DATABASE_URL`` names an empty PostgreSQL database), the fake
driver on 4 hosts, the admin project's quotas set high (not unlimited, as ``scale``), a
network with a /16 subnet, 10 template servers booted, then at each size of ``SIZES``
(default ``100,10000``) the project filled by ``benchmarks._bulk`` and, for each of
``detail`` (``GET /servers/detail?limit=50``), ``detail_next`` (its next page),
``ports`` (``GET /v2.0/ports?limit=50``), ``servers_all`` (``GET /servers``) and ``boot``
(one POST /servers and its polls to ACTIVE), ``REPEATS`` (5) requests counted:

* Python calls per request (cProfile of the requests);
* SQL statements per request, each kept with its parameters;
* the work of those statements, run again after the requests inside a transaction that is
  rolled back: on SQLite the virtual machine's steps (``set_progress_handler`` every 100
  instructions: grows with the rows a statement reads), on PostgreSQL ``EXPLAIN (ANALYZE,
  BUFFERS)``'s rows out of each scan node and the buffers they touched; and each
  statement's plan (``EXPLAIN QUERY PLAN`` / the plan's scan nodes) and time (SQLite: this
  thread's CPU running it; PostgreSQL: ``Execution Time``; both load-dependent).

``PROFILE_DIR``: also write each cProfile there (``<size>-<kind>.prof``). Prints one JSON
document: per size and kind the counts per request, and per statement
(its first 140 characters) the count and work per request; the statements whose work grew
with the size are listed last (``grew``).
"""

from __future__ import annotations

import asyncio
import cProfile
import functools
import json
import os
import pstats
import sqlite3
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks._bulk import clone_servers, live_servers
from benchmarks._inprocess import API, admin_with_image, in_process_cloud

UNITS = ("identity-api", "image-api", "compute-api", "placement-api", "network-api",
         "volume-api", "volume-manager", "scheduler", "conductor", "compute-agent")
NETWORK = "/network/v2.0"
REPEATS = 5
HOSTS = 4


class _Statements:
    """Every statement sent by any engine of the process, with its parameters, while on."""

    def __init__(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        self.on = False
        self.seen: list[tuple[str, Any]] = []
        event.listen(Engine, "before_cursor_execute", self._statement)

    def _statement(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any,
                   executemany: bool) -> None:
        if self.on:
            self.seen.append((statement, params))


def _short(statement: str) -> str:
    return " ".join(statement.split())[:140]


def _sqlite_work(data_dir: Path,
                 seen: list[tuple[str, Any]]) -> list[tuple[str, int, str, float]]:
    """(statement, VM steps / 100, plan, CPU ms of its run) of each statement, run again
    on the file the statement names a table of, inside a transaction rolled back."""
    connections = {name: sqlite3.connect(data_dir / f"{name}.db")
                   for name in ("compute", "network", "identity", "image", "volume")
                   if (data_dir / f"{name}.db").exists()}
    tables = {name: {row[0] for row in c.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
        for name, c in connections.items()}
    out = []
    for statement, params in seen:
        words = set(statement.replace('"', " ").replace(",", " ").split())
        owner = next((name for name, names in tables.items() if words & names), None)
        if owner is None or statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "SAVEPOINT",
                                                                   "RELEASE", "ROLLBACK")):
            continue
        conn = connections[owner]
        steps = [0]

        def tick(steps: list[int] = steps) -> int:
            steps[0] += 1
            return 0

        conn.execute("BEGIN")
        try:
            plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}",
                                                             params or ()))
            conn.set_progress_handler(tick, 100)
            started = time.thread_time()
            conn.execute(statement, params or ()).fetchall()
            ms = (time.thread_time() - started) * 1e3
        except sqlite3.Error as exc:
            plan, ms = f"error: {exc}", 0.0
        finally:
            conn.set_progress_handler(None, 0)
            conn.rollback()
        out.append((statement, steps[0], plan, ms))
    for c in connections.values():
        c.close()
    return out


def _scan_nodes(node: dict[str, Any]) -> tuple[int, int, list[str]]:
    """Rows out of the plan's scan nodes (times their loops), the buffers they touched, and
    each as text."""
    rows, buffers, scans = 0, 0, []
    if "Scan" in node["Node Type"]:
        rows = int(node["Actual Rows"] * node["Actual Loops"])
        buffers = node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0)
        scans.append(f"{node['Node Type']} {node.get('Index Name') or ''} "
                     f"on {node.get('Relation Name')} rows={rows} buffers={buffers}")
    for child in node.get("Plans", []):
        more = _scan_nodes(child)
        rows, buffers = rows + more[0], buffers + more[1]
        scans.extend(more[2])
    return rows, buffers, scans


async def _until(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(3000):  # 10 minutes
        if await check():
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("not ready after 10 minutes")


async def _postgres_work(database_url: str,
                         seen: list[tuple[str, Any]]) -> list[tuple[str, int, str, float]]:
    """(statement, rows out of its scan nodes + buffers touched, scan nodes, its execution
    time in ms) of each."""
    import asyncpg

    from benchmarks._cloud import asyncpg_dsn

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    out = []
    try:
        for statement, params in seen:
            if statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "SAVEPOINT",
                                                      "RELEASE", "ROLLBACK", "SELECT PG_",
                                                      "SET ")):
                continue
            tr = conn.transaction()
            await tr.start()
            try:
                (raw,) = await conn.fetchrow(
                    f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", *(params or ()))
                explained = json.loads(raw)[0]
                rows, buffers, scans = _scan_nodes(explained["Plan"])
                out.append((statement, rows + buffers, " | ".join(scans),
                            explained["Execution Time"]))
            except (asyncpg.PostgresError, ValueError, TypeError) as exc:
                out.append((statement, 0, f"error: {exc}", 0.0))
            finally:
                await tr.rollback()
    finally:
        await conn.close()
    return out


async def _main(database_url: str | None, sizes: list[int]) -> dict[str, Any]:
    settings: dict[str, Any] = {"compute": {
        "virt_driver": "fake", "fake_hosts": HOSTS, "fake_vcpus": 100000,
        "fake_memory_mb": 100000000, "fake_local_gb": 1000000,
        "sync_power_state_interval": 86400}}
    if database_url:
        settings["database_url"] = database_url
    statements = _Statements()
    result: dict[str, Any] = {"sizes": sizes, "database": "postgresql" if database_url
                              else "sqlite", "by_size": {}}
    async with in_process_cloud(UNITS, prefix="bench-scale-counts-", connections=8,
                                **settings) as cloud:
        client = cloud.client
        headers, image = await admin_with_image(client)
        project = (await client.get("/identity/v3/auth/projects",
                                    headers=headers)).json()["projects"][0]["id"]
        big = 10_000_000
        (await client.put(f"{API}/os-quota-sets/{project}", headers=headers, json={
            "quota_set": {"instances": big, "cores": big, "ram": big}})).raise_for_status()
        (await client.put(f"{NETWORK}/quotas/{project}", headers=headers,
                          json={"quota": {"port": big}})).raise_for_status()
        net = (await client.post(f"{NETWORK}/networks", headers=headers, json={
            "network": {"name": "scale"}})).json()["network"]["id"]
        (await client.post(f"{NETWORK}/subnets", headers=headers, json={"subnet": {
            "network_id": net, "ip_version": 4, "cidr": "10.128.0.0/16"}})).raise_for_status()

        async def hosts_up() -> bool:
            return sum(h["state"] == "up" for h in (await client.get(
                f"{API}/os-hypervisors", headers=headers)).json()["hypervisors"]) >= HOSTS

        await _until(hosts_up)

        async def boot(name: str, count: int = 1) -> str:
            response = await client.post(f"{API}/servers", headers=headers, json={"server": {
                "name": name, "imageRef": image, "flavorRef": "1",
                "networks": [{"uuid": net}], "min_count": count, "max_count": count}})
            response.raise_for_status()
            server = str(response.json()["server"]["id"])
            while True:
                status = (await client.get(f"{API}/servers/{server}",
                                           headers=headers)).json()["server"]["status"]
                if status in ("ACTIVE", "ERROR"):
                    return server
                await asyncio.sleep(0.02)

        await boot("template", 10)

        async def built() -> bool:
            return not (await client.get(f"{API}/servers", headers=headers,
                                         params={"status": "BUILD"})).json()["servers"]

        await _until(built)
        templates = [s["id"] for s in (await client.get(
            f"{API}/servers", headers=headers, params={"name": "^template"})).json()["servers"]]

        async def get(path: str, params: dict[str, Any] | None = None) -> Any:
            response = await client.get(path, headers=headers, params=params)
            response.raise_for_status()
            return response.json()

        # Past ``routing.TABLE_AFTER_REQUESTS`` on every API the requests reach, so that
        # no window holds the building of an app's route table.
        for _ in range(110):
            await get(f"{API}/servers", {"limit": 1})
            await get(f"{NETWORK}/ports", {"limit": 1})
            await get("/placement/resource_providers")
            await get("/image/v2/images", {"limit": 1})
            await get("/identity/v3/auth/projects")
        for size in sizes:
            missing = size - await live_servers(cloud.data_dir, project,
                                                database_url=database_url)
            await clone_servers(cloud.data_dir, templates, missing, database_url=database_url,
                                seed=size)
            first = await get(f"{API}/servers/detail", {"limit": 50})
            marker = first["servers"][-1]["id"]
            next_page = {"limit": 50, "marker": marker}
            kinds: dict[str, Callable[[], Awaitable[Any]]] = {
                "detail": lambda: get(f"{API}/servers/detail", {"limit": 50}),
                "detail_next": functools.partial(get, f"{API}/servers/detail", next_page),
                "ports": lambda: get(f"{NETWORK}/ports", {"limit": 50}),
                "servers_all": lambda: get(f"{API}/servers"),
                "boot": lambda: boot(f"timed-{time.monotonic_ns()}"),
            }
            here: dict[str, Any] = {}
            for what, request in kinds.items():
                await request()
                await request()
                profile = cProfile.Profile()
                statements.seen.clear()
                statements.on = True
                profile.enable()
                for _ in range(REPEATS):
                    await request()
                profile.disable()
                statements.on = False
                if os.environ.get("PROFILE_DIR"):
                    profile.dump_stats(Path(os.environ["PROFILE_DIR"]) / f"{size}-{what}.prof")
                seen = list(statements.seen)
                calls = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
                work = (await _postgres_work(database_url, seen) if database_url
                        else _sqlite_work(cloud.data_dir, seen))
                per: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
                plans: dict[str, Counter[str]] = defaultdict(Counter)
                for statement, steps, plan, ms in work:
                    per[_short(statement)][0] += 1 / REPEATS
                    per[_short(statement)][1] += steps / REPEATS
                    per[_short(statement)][2] += ms / REPEATS
                    plans[_short(statement)][plan] += 1
                here[what] = {
                    "python_calls": calls / REPEATS,
                    "statements": len(seen) / REPEATS,
                    "work": sum(w for _, w, _, _ in work) / REPEATS,
                    "statement_ms": sum(ms for _, _, _, ms in work) / REPEATS,
                    "by_statement": {k: {"count": round(v[0], 2), "work": round(v[1], 1),
                                         "ms": round(v[2], 3),
                                         "plans": dict(plans[k])}
                                     for k, v in sorted(per.items(), key=lambda kv: -kv[1][1])},
                }
                print(f"[counts] {size} {what}: {calls / REPEATS:.0f} calls, "
                      f"{len(seen) / REPEATS:.1f} statements, work {here[what]['work']:.0f}",
                      file=sys.stderr, flush=True)
            result["by_size"][size] = here
    grew = []
    low, high = result["by_size"][sizes[0]], result["by_size"][sizes[-1]]
    for what, counts in high.items():
        for statement, found in counts["by_statement"].items():
            before = low[what]["by_statement"].get(statement, {"work": 0.0, "count": 0})
            if found["work"] > 1.5 * before["work"] + 5:
                grew.append({"kind": what, "statement": statement, "work": [before["work"],
                                                                               found["work"]],
                             "ms": [before.get("ms", 0.0), found["ms"]],
                             "count": [before["count"], found["count"]],
                             "plans": found["plans"]})
    result["grew"] = grew
    return result


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-" else None
    sizes = [int(s) for s in (sys.argv[2] if len(sys.argv) > 2 else "100,10000").split(",")]
    print(json.dumps(asyncio.run(_main(url, sizes)), indent=1))


if __name__ == "__main__":
    main()
