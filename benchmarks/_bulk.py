"""Bulk-load servers into a running all-in-one cloud's SQLite files: copies of servers it
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

The cloud keeps running (SQLite in WAL mode lets this process write between its
transactions); nothing it holds in memory depends on these rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import random
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def _rows(conn: sqlite3.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sql, args)]


def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> int:
    names = ", ".join(f'"{k}"' for k in row)
    marks = ", ".join("?" for _ in row)
    cursor = conn.execute(f'INSERT INTO "{table}" ({names}) VALUES ({marks})',
                          tuple(row.values()))
    return int(cursor.lastrowid or 0)


@dataclass
class _Template:
    instance: dict[str, Any]
    actions: list[tuple[dict[str, Any], list[dict[str, Any]]]]
    allocations: list[dict[str, Any]]
    port: dict[str, Any]
    addresses: list[dict[str, Any]]
    groups: list[dict[str, Any]]


def _free_addresses(conn: sqlite3.Connection, subnet_id: str) -> Iterator[str]:
    """The subnet's free addresses in its pools, lowest first."""
    (pools,) = conn.execute("SELECT allocation_pools FROM network_subnets WHERE id = ?",
                            (subnet_id,)).fetchone()
    used = {r[0] for r in conn.execute(
        "SELECT ip_address FROM network_ip_allocations WHERE subnet_id = ?", (subnet_id,))}
    for pool in json.loads(pools):
        first = int(ipaddress.ip_address(pool["start"]))
        last = int(ipaddress.ip_address(pool["end"]))
        for number in range(first, last + 1):
            address = str(ipaddress.ip_address(number))
            if address not in used:
                yield address


def _macs(conn: sqlite3.Connection, rng: random.Random) -> Iterator[str]:
    used = {r[0] for r in conn.execute("SELECT mac_address FROM network_ports")}
    while True:
        mac = "fa:16:3e:" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))
        if mac not in used:
            used.add(mac)
            yield mac


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def clone_servers(data_dir: Path, templates: list[str], count: int, *,
                  seed: int = 7) -> None:
    """``count`` new servers in the cloud at ``data_dir``, each a copy of one of
    ``templates`` (server ids with one port each), in turn."""
    if count <= 0:
        return
    rng = random.Random(seed)
    compute = _connect(data_dir / "compute.db")
    network = _connect(data_dir / "network.db")
    with contextlib.closing(compute), contextlib.closing(network):
        loaded = []
        for server in templates:
            instance = _rows(compute, "SELECT * FROM instance WHERE uuid = ?", server)[0]
            actions = [(a, _rows(compute, "SELECT * FROM instance_action_event WHERE "
                                          "action_id = ? ORDER BY id", a["id"]))
                       for a in _rows(compute, "SELECT * FROM instance_action WHERE "
                                               "instance_uuid = ? ORDER BY id", server)]
            (port,) = _rows(network, "SELECT * FROM network_ports WHERE device_id = ?", server)
            loaded.append(_Template(
                instance, actions,
                _rows(compute, "SELECT * FROM allocation WHERE consumer_uuid = ?", server),
                port,
                _rows(network, "SELECT * FROM network_ip_allocations WHERE port_id = ?",
                      port["id"]),
                _rows(network, "SELECT * FROM network_port_security_groups WHERE port_id = ?",
                      port["id"])))
        subnets = {a["subnet_id"] for t in loaded for a in t.addresses}
        free = {s: _free_addresses(network, s) for s in subnets}
        macs = _macs(network, rng)
        start = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        compute.execute("BEGIN IMMEDIATE")
        network.execute("BEGIN IMMEDIATE")
        try:
            for n in range(count):
                _clone(compute, network, loaded[n % len(loaded)], n,
                       _stamp(start + dt.timedelta(microseconds=n)), free, macs)
        except BaseException:
            compute.execute("ROLLBACK")
            network.execute("ROLLBACK")
            raise
        network.execute("COMMIT")
        compute.execute("COMMIT")
        # Into the database files: a write-ahead log left holding megabytes of copies
        # would make every later read of the cloud's look there first.
        for conn in (compute, network):
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _clone(compute: sqlite3.Connection, network: sqlite3.Connection, t: _Template, n: int,
           now: str, free: dict[str, Iterator[str]], macs: Iterator[str]) -> None:
    server, port_id, mac = str(uuid.uuid4()), str(uuid.uuid4()), next(macs)
    old_port = t.port
    info = t.instance["network_info"].replace(old_port["id"], port_id).replace(
        old_port["mac_address"], mac)
    addresses = []
    for allocation in t.addresses:
        address = next(free[allocation["subnet_id"]])
        info = info.replace(f'"{allocation["ip_address"]}"', f'"{address}"')
        addresses.append({**allocation, "ip_address": address, "port_id": port_id})
    name = f"bulk-{n}"
    _insert(compute, "instance", {
        **t.instance, "uuid": server, "display_name": name, "hostname": name,
        "reservation_id": f"r-{uuid.uuid4().hex[:8]}", "network_info": info,
        "created_at": now, "updated_at": now, "launched_at": now})
    for action, events in t.actions:
        action_id = _insert(compute, "instance_action", {
            **action, "id": None, "instance_uuid": server,
            "request_id": f"req-{uuid.uuid4()}"})
        for event in events:
            _insert(compute, "instance_action_event", {**event, "id": None,
                                                       "action_id": action_id})
    for allocation in t.allocations:
        _insert(compute, "allocation", {**allocation, "consumer_uuid": server})
    _insert(network, "network_ports", {**old_port, "id": port_id, "mac_address": mac,
                                       "device_id": server, "created_at": now,
                                       "updated_at": now})
    for row in addresses:
        _insert(network, "network_ip_allocations", row)
    for group in t.groups:
        _insert(network, "network_port_security_groups", {**group, "port_id": port_id})


def live_servers(data_dir: Path, project_id: str) -> int:
    with contextlib.closing(_connect(data_dir / "compute.db")) as conn:
        (count,) = conn.execute("SELECT count(*) FROM instance WHERE project_id = ? AND "
                                "deleted_at IS NULL", (project_id,)).fetchone()
    return int(count)
