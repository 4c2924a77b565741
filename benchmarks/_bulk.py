"""Bulk-load servers into a running all-in-one cloud's databases: copies of servers it
booted itself, row for row, as the services wrote them.

Booting 10,000 servers through the API costs ~50-80 ms of CPU each (an hour of a loaded
2-core machine); the ``scale`` scenario needs them only to exist. So it boots a few
*templates* for real and then copies, for each new server, every row a boot wrote about
its template (found by comparing the databases before and after a boot):

* compute: the ``instance`` row (new uuid, name, hostname, reservation; its
  ``network_info`` naming the copy's port, MAC and address), its ``instance_action`` and
  ``instance_action_event`` rows (new request id), its ``allocation`` rows (the same
  provider as the template's, so hosts fill as the scheduler spread them);
* network: the ``network_ports`` row (new id, MAC, ``device_id``), its
  ``network_ip_allocations`` (a free address of the same subnet's pools) and
  ``network_port_security_groups`` rows.

The databases are the cloud's SQLite files in its data dir, or the one PostgreSQL database
every service shares (``database_url``). The cloud keeps running (SQLite in WAL mode lets
this process write between its transactions; PostgreSQL is made for it); nothing it holds
in memory depends on these rows. A copy's values keep the template's Python types (SQLite
gives timestamps as text, asyncpg as ``datetime``), so one path serves both.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import random
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class _Database:
    """The few statements the copy needs, over SQLite (``sqlite3``) or PostgreSQL
    (``asyncpg``); SQL is written with ``?`` marks. Rows without an id to return are
    queued and written by ``executemany`` per table when the transaction commits."""

    def __init__(self) -> None:
        self.queued: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = \
            defaultdict(list)

    async def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def insert_returning_id(self, table: str, row: dict[str, Any]) -> int:
        raise NotImplementedError

    def queue(self, table: str, row: dict[str, Any]) -> None:
        self.queued[table, tuple(row)].append(tuple(row.values()))

    @staticmethod
    def _insert_sql(table: str, names: tuple[str, ...], marks: list[str]) -> str:
        return (f'INSERT INTO "{table}" ({", ".join(f"{n}" for n in map(_quoted, names))}) '
                f'VALUES ({", ".join(marks)})')

    async def begin(self) -> None:
        raise NotImplementedError

    async def commit(self) -> None:
        raise NotImplementedError

    async def rollback(self) -> None:
        raise NotImplementedError

    async def vacuum(self) -> None:
        """After every copy's commit: the tables' statistics and visibility made current
        (PostgreSQL; SQLite needs neither)."""

    async def close(self) -> None:
        raise NotImplementedError


def _quoted(name: str) -> str:
    return f'"{name}"'


class _SQLite(_Database):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.conn.row_factory = sqlite3.Row

    async def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql, args)]

    async def insert_returning_id(self, table: str, row: dict[str, Any]) -> int:
        names = tuple(row)
        cursor = self.conn.execute(self._insert_sql(table, names, ["?"] * len(names)),
                                   tuple(row.values()))
        return int(cursor.lastrowid or 0)

    async def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    async def commit(self) -> None:
        for (table, names), values in self.queued.items():
            self.conn.executemany(self._insert_sql(table, names, ["?"] * len(names)), values)
        self.queued.clear()
        self.conn.execute("COMMIT")
        # Into the database file: a write-ahead log left holding megabytes of copies would
        # make every later read of the cloud's look there first.
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def rollback(self) -> None:
        self.queued.clear()
        self.conn.execute("ROLLBACK")

    async def close(self) -> None:
        self.conn.close()


class _Postgres(_Database):
    def __init__(self, conn: Any, tables: tuple[str, ...]) -> None:
        super().__init__()
        self.conn = conn
        #: The tables the copy writes, vacuumed and analysed after it.
        self.tables = tables
        self.transaction: Any = None

    @staticmethod
    def _numbered(sql: str) -> str:
        parts = sql.split("?")
        return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]

    async def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.conn.fetch(self._numbered(sql), *args)]

    async def insert_returning_id(self, table: str, row: dict[str, Any]) -> int:
        names = tuple(row)
        marks = [f"${n}" for n in range(1, len(names) + 1)]
        return int(await self.conn.fetchval(
            self._insert_sql(table, names, marks) + " RETURNING id", *row.values()))

    async def begin(self) -> None:
        self.transaction = self.conn.transaction()
        await self.transaction.start()

    async def commit(self) -> None:
        for (table, names), values in self.queued.items():
            marks = [f"${n}" for n in range(1, len(names) + 1)]
            await self.conn.executemany(self._insert_sql(table, names, marks), values)
        self.queued.clear()
        await self.transaction.commit()

    async def vacuum(self) -> None:
        # What autovacuum does soon after such a load (its analyse, and since PostgreSQL 13
        # its vacuum after inserts), done now, as a server may run with autovacuum off (this
        # machine's does): the planner's statistics of the tables as they now are, not as
        # they were with 20 servers, and the visibility map that lets it read a covering
        # index alone (without it, a select-in of 50 ports' groups by the primary key was
        # priced above a sequential scan of all 10,000: 1.1 ms against 0.2). Only once
        # both copies' transactions have committed: a page is marked all-visible only if
        # no transaction still running could miss its rows, and the network's rows were
        # vacuumed while compute's copy (the same database, an older transaction) was
        # still open: none of network_ports' pages were (``relallvisible`` 2 of 323 at
        # 10,000 ports), so its covering indexes were read through the table.
        for table in self.tables:
            await self.conn.execute(f'VACUUM (ANALYZE) "{table}"')

    async def rollback(self) -> None:
        self.queued.clear()
        await self.transaction.rollback()

    async def close(self) -> None:
        await self.conn.close()


@contextlib.asynccontextmanager
async def _databases(data_dir: Path,
                     database_url: str | None) -> AsyncIterator[tuple[_Database, _Database]]:
    """Compute's database and network's."""
    if not database_url:
        compute: _Database = _SQLite(data_dir / "compute.db")
        network: _Database = _SQLite(data_dir / "network.db")
    else:
        import asyncpg

        from benchmarks._cloud import asyncpg_dsn

        compute = _Postgres(await asyncpg.connect(asyncpg_dsn(database_url)),
                            ("instance", "instance_action", "instance_action_event",
                             "allocation"))
        network = _Postgres(await asyncpg.connect(asyncpg_dsn(database_url)),
                            ("network_ports", "network_ip_allocations",
                             "network_port_security_groups"))
    try:
        yield compute, network
    finally:
        await compute.close()
        await network.close()


@dataclass
class _Template:
    instance: dict[str, Any]
    actions: list[tuple[dict[str, Any], list[dict[str, Any]]]]
    allocations: list[dict[str, Any]]
    port: dict[str, Any]
    addresses: list[dict[str, Any]]
    groups: list[dict[str, Any]]


@dataclass
class _Fresh:
    """Where new values come from: free addresses per subnet, unused MACs, timestamps."""

    free: dict[str, Iterator[str]]
    macs: Iterator[str]
    start: dt.datetime
    used_macs: set[str] = field(default_factory=set)

    def stamp(self, n: int, like: Any) -> Any:
        """The ``n``-th copy's creation time, of the template's type (text on SQLite)."""
        moment = self.start + dt.timedelta(microseconds=n)
        if isinstance(like, dt.datetime):
            return moment if like.tzinfo is None else moment.replace(tzinfo=dt.UTC)
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


async def _free_addresses(db: _Database, subnet_id: str) -> Iterator[str]:
    """The subnet's free addresses in its pools, lowest first."""
    (subnet,) = await db.rows("SELECT allocation_pools FROM network_subnets WHERE id = ?",
                              subnet_id)
    pools = subnet["allocation_pools"]
    used = {r["ip_address"] for r in await db.rows(
        "SELECT ip_address FROM network_ip_allocations WHERE subnet_id = ?", subnet_id)}

    def free() -> Iterator[str]:
        for pool in json.loads(pools) if isinstance(pools, str) else pools:
            first = int(ipaddress.ip_address(pool["start"]))
            last = int(ipaddress.ip_address(pool["end"]))
            for number in range(first, last + 1):
                address = str(ipaddress.ip_address(number))
                if address not in used:
                    yield address
    return free()


async def _macs(db: _Database, rng: random.Random) -> Iterator[str]:
    used = {r["mac_address"] for r in await db.rows("SELECT mac_address FROM network_ports")}

    def fresh() -> Iterator[str]:
        while True:
            mac = "fa:16:3e:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))
            if mac not in used:
                used.add(mac)
                yield mac
    return fresh()


async def _template(compute: _Database, network: _Database, server: str) -> _Template:
    (instance,) = await compute.rows("SELECT * FROM instance WHERE uuid = ?", server)
    actions = [(a, await compute.rows("SELECT * FROM instance_action_event WHERE "
                                      "action_id = ? ORDER BY id", a["id"]))
               for a in await compute.rows("SELECT * FROM instance_action WHERE "
                                           "instance_uuid = ? ORDER BY id", server)]
    (port,) = await network.rows("SELECT * FROM network_ports WHERE device_id = ?", server)
    return _Template(
        instance, actions,
        await compute.rows("SELECT * FROM allocation WHERE consumer_uuid = ?", server),
        port,
        await network.rows("SELECT * FROM network_ip_allocations WHERE port_id = ?",
                           port["id"]),
        await network.rows("SELECT * FROM network_port_security_groups WHERE port_id = ?",
                           port["id"]))


async def clone_servers(data_dir: Path, templates: list[str], count: int, *,
                        database_url: str | None = None, seed: int = 7) -> None:
    """``count`` new servers in the cloud at ``data_dir`` (its databases: SQLite files
    there, or ``database_url``), each a copy of one of ``templates`` (server ids with one
    port each), in turn."""
    if count <= 0:
        return
    rng = random.Random(seed)
    async with _databases(data_dir, database_url) as (compute, network):
        loaded = [await _template(compute, network, server) for server in templates]
        subnets = {a["subnet_id"] for t in loaded for a in t.addresses}
        fresh = _Fresh({s: await _free_addresses(network, s) for s in subnets},
                       await _macs(network, rng), dt.datetime.now(dt.UTC).replace(tzinfo=None))
        await compute.begin()
        await network.begin()
        try:
            for n in range(count):
                await _clone(compute, network, loaded[n % len(loaded)], n, fresh)
        except BaseException:
            await compute.rollback()
            await network.rollback()
            raise
        await network.commit()
        await compute.commit()
        await network.vacuum()
        await compute.vacuum()


async def _clone(compute: _Database, network: _Database, t: _Template, n: int,
                 fresh: _Fresh) -> None:
    server, port_id, mac = str(uuid.uuid4()), str(uuid.uuid4()), next(fresh.macs)
    old_port = t.port
    info = t.instance["network_info"].replace(old_port["id"], port_id).replace(
        old_port["mac_address"], mac)
    addresses = []
    for allocation in t.addresses:
        address = next(fresh.free[allocation["subnet_id"]])
        info = info.replace(f'"{allocation["ip_address"]}"', f'"{address}"')
        addresses.append({**allocation, "ip_address": address, "port_id": port_id})
    name = f"bulk-{n}"
    now = fresh.stamp(n, t.instance["created_at"])
    compute.queue("instance", {
        **t.instance, "uuid": server, "display_name": name, "hostname": name,
        "reservation_id": f"r-{uuid.uuid4().hex[:8]}", "network_info": info,
        "created_at": now, "updated_at": now, "launched_at": now})
    for action, events in t.actions:
        action_id = await compute.insert_returning_id("instance_action", {
            **_without_id(action), "instance_uuid": server,
            "request_id": f"req-{uuid.uuid4()}"})
        for event in events:
            compute.queue("instance_action_event", {**_without_id(event),
                                                    "action_id": action_id})
    for allocation in t.allocations:
        compute.queue("allocation", {**allocation, "consumer_uuid": server})
    network.queue("network_ports", {**old_port, "id": port_id, "mac_address": mac,
                                    "device_id": server, "created_at": now,
                                    "updated_at": now})
    for row in addresses:
        network.queue("network_ip_allocations", row)
    for group in t.groups:
        network.queue("network_port_security_groups", {**group, "port_id": port_id})


def _without_id(row: dict[str, Any]) -> dict[str, Any]:
    """The row without its serial key: the database counts one (PostgreSQL refuses NULL)."""
    return {k: v for k, v in row.items() if k != "id"}


async def live_servers(data_dir: Path, project_id: str, *,
                       database_url: str | None = None) -> int:
    async with _databases(data_dir, database_url) as (compute, _):
        (row,) = await compute.rows("SELECT count(*) AS n FROM instance WHERE project_id = ? "
                                    "AND deleted_at IS NULL", project_id)
    return int(row["n"])
