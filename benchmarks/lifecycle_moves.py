"""Lifecycle, moves: resize, confirm, revert, cold and live migration latency on the fake driver.

One ``stratus up`` (SQLite, ``memory://`` bus, ``--hosts`` fake hosts, no networks); one
server of flavor ``bench.a`` (1 vCPU, 512 MB, 1 GB) is moved ``--rounds`` times, each round:
resize to the other flavor (``bench.b``, 1024 MB, and back the next round) and confirm;
resize again and revert; cold migrate and confirm; live migrate.

Each step's **server-side** latency runs from the ``start_time`` compute-api gave the
instance action (when the request arrived) to the ``finish_time`` of the step's last event,
written in the same transaction that settles the move (``compute_finish_resize`` for resize
and cold migration: the server is ``VERIFY_RESIZE``; ``compute_confirm_resize``;
``compute_finish_revert_resize``; ``compute_live_migration``): both on the server's clock.
The client waits for each step by polling that action
(``GET /servers/{id}/os-instance-actions/{request_id}``, the request id from the action's
answer) every ``--poll-interval`` until the event has finished, then checks the server once
(``GET /servers/{id}``: its status, no task, the host it moved to). The wait's own time is
not recorded (it is the polling's, not the cloud's), and the polls are kept cheap because
they run in the cloud's process beside the move they wait for: a ``GET /servers/{id}``
(compute-api asks the volume and network APIs for the server's attachments and ports)
costs about a third of a resize's CPU, so polling it every 50 ms made the figures partly
the client's.

``fake_moves`` (its own cloud, then ``measure_moves``) is what the ``lifecycle`` scenario
calls.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks import Goal, Result, percentile
from benchmarks._cloud import StratusUp, issue_token, sqlite_info

DESCRIPTION = ("resize, confirm, revert, cold and live migration latency (server-side) on the "
               "fake driver")

API = "/compute/v2.1"
MICROVERSION = "compute 2.96"
P50_GOAL_MS = 100.0
COMMON_ENV = {"STRATUS_COMPUTE__VIRT_DRIVER": "fake", "STRATUS_NETWORK__BACKEND": "noop",
              "STRATUS_CONFIG_FILE": "/nonexistent", "STRATUS_BUS_URL": "memory://"}
#: Step → (the action's name, its last event).
STEPS = {
    "resize": ("resize", "compute_finish_resize"),
    "confirm": ("confirmResize", "compute_confirm_resize"),
    "revert": ("revertResize", "compute_finish_revert_resize"),
    "cold_migrate": ("migrate", "compute_finish_resize"),
    "live_migrate": ("live-migration", "compute_live_migration"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=20,
                        help="rounds of resize+confirm, resize+revert, migrate+confirm, "
                             "live migration (default 20)")
    parser.add_argument("--hosts", type=int, default=2, help="fake hosts (default 2)")
    parser.add_argument("--poll-interval", type=float, default=0.05,
                        help="seconds between the client's polls of the action while "
                             "waiting (default 0.05)")


def _progress(message: str) -> None:
    print(f"[lifecycle_moves] {message}", file=sys.stderr, flush=True)


def _epoch(timestamp: str) -> float:
    return dt.datetime.fromisoformat(timestamp).replace(tzinfo=dt.UTC).timestamp()


@dataclass
class MoveSession:
    client: httpx.AsyncClient
    headers: dict[str, str]
    poll_interval: float

    async def _ok(self, response: httpx.Response, *expected: int) -> httpx.Response:
        if response.status_code not in expected:
            raise RuntimeError(f"{response.request.method} {response.request.url.path} "
                               f"answered {response.status_code}: {response.text[:300]}")
        return response

    async def action(self, server_id: str, body: dict[str, Any]) -> str:
        """Send one server action; its request id (the instance action's)."""
        response = await self._ok(await self.client.post(
            f"{API}/servers/{server_id}/action", headers=self.headers, json=body), 202, 204)
        return response.headers["x-openstack-request-id"]

    async def settled(self, server_id: str, request_id: str, event: str) -> float:
        """Wait until the action ``request_id`` has finished ``event`` (its last): the
        action's start to that event's finish (ms, server-side)."""
        deadline = time.monotonic() + 60
        while True:
            detail = (await self._ok(await self.client.get(
                f"{API}/servers/{server_id}/os-instance-actions/{request_id}",
                headers=self.headers), 200)).json()["instanceAction"]
            failed = [e for e in detail["events"] if e["result"] == "Error"]
            if failed:
                raise RuntimeError(f"{detail['action']} of {server_id} failed: "
                                   f"{failed[0]['event']} {failed[0].get('details')}")
            finished = [_epoch(e["finish_time"]) for e in detail["events"]
                        if e["event"] == event and e["finish_time"]]
            if finished:
                return (max(finished) - _epoch(detail["start_time"])) * 1e3
            if time.monotonic() > deadline:
                raise RuntimeError(f"{detail['action']} of {server_id} did not finish "
                                   f"{event}")
            await asyncio.sleep(self.poll_interval)

    async def check(self, server_id: str, status: str, host_not: str | None = None) -> Any:
        """The server, once a step has settled: ``status``, no task, and (``host_not``)
        moved off that host."""
        server = (await self._ok(await self.client.get(
            f"{API}/servers/{server_id}", headers=self.headers), 200)).json()["server"]
        if server["status"] != status or server["OS-EXT-STS:task_state"] is not None or (
                host_not is not None and server["OS-EXT-SRV-ATTR:host"] == host_not):
            raise RuntimeError(f"{server_id} is {server['status']}/"
                               f"{server['OS-EXT-STS:task_state']} on "
                               f"{server['OS-EXT-SRV-ATTR:host']} after its step")
        return server

    async def step(self, server_id: str, body: dict[str, Any], event: str, status: str,
                   host_not: str | None = None) -> tuple[float, Any]:
        """One move: sent, waited for, checked; its server-side ms and the server."""
        request_id = await self.action(server_id, body)
        taken = await self.settled(server_id, request_id, event)
        return taken, await self.check(server_id, status, host_not)

    async def wait(self, server_id: str, status: str, host_not: str | None = None) -> Any:
        deadline = time.monotonic() + 60
        while True:
            response = await self._ok(await self.client.get(f"{API}/servers/{server_id}",
                                                            headers=self.headers), 200)
            server = response.json()["server"]
            if server["status"] == "ERROR":
                raise RuntimeError(f"{server_id} went to ERROR: {server.get('fault')}")
            if server["status"] == status and server["OS-EXT-STS:task_state"] is None and (
                    host_not is None or server["OS-EXT-SRV-ATTR:host"] != host_not):
                return server
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server_id} stuck in {server['status']}")
            await asyncio.sleep(self.poll_interval)


async def _setup(client: httpx.AsyncClient, identity_url: str, password: str,
                 hosts: int, poll_interval: float) -> tuple[MoveSession, str]:
    token = await issue_token(client, identity_url, password)
    session = MoveSession(client, {"X-Auth-Token": token,
                                   "OpenStack-API-Version": MICROVERSION}, poll_interval)
    for name, ram in (("bench.a", 512), ("bench.b", 1024)):
        await session._ok(await client.post(f"{API}/flavors", headers=session.headers, json={
            "flavor": {"name": name, "id": name, "vcpus": 1, "ram": ram, "disk": 1}}), 200)
    image = (await client.post("/image/v2/images", headers=session.headers, json={
        "name": "bench", "disk_format": "raw", "container_format": "bare"})).json()
    await session._ok(await client.put(
        f"/image/v2/images/{image['id']}/file", content=b"\0" * 4096,
        headers={**session.headers, "Content-Type": "application/octet-stream"}), 204)
    deadline = time.monotonic() + 120
    while True:
        response = await client.get(f"{API}/os-hypervisors", headers=session.headers)
        if sum(h["state"] == "up" for h in response.json()["hypervisors"]) >= hosts:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the fake hosts did not come up")
        await asyncio.sleep(0.5)
    created = await session._ok(await client.post(f"{API}/servers", headers=session.headers,
                                                  json={"server": {
                                                      "name": "mover", "imageRef": image["id"],
                                                      "flavorRef": "bench.a",
                                                      "networks": "none"}}), 202)
    server_id = str(created.json()["server"]["id"])
    await session.wait(server_id, "ACTIVE")
    return session, server_id


async def measure_moves(session: MoveSession, server_id: str,
                        rounds: int) -> dict[str, float]:
    """``rounds`` rounds of every move of one ACTIVE server; p50/p95 per step (ms)."""
    taken: dict[str, list[float]] = {step: [] for step in STEPS}
    flavors = ["bench.b", "bench.a"]
    finish_resize = STEPS["resize"][1]
    confirm = STEPS["confirm"][1]

    async def timed(step: str, body: dict[str, Any], status: str,
                    host_not: str | None = None) -> Any:
        taken_ms, server = await session.step(server_id, body, STEPS[step][1], status,
                                              host_not)
        taken[step].append(taken_ms)
        return server

    for n in range(rounds):
        await timed("resize", {"resize": {"flavorRef": flavors[n % 2]}}, "VERIFY_RESIZE")
        await timed("confirm", {"confirmResize": None}, "ACTIVE")
        await session.step(server_id, {"resize": {"flavorRef": flavors[(n + 1) % 2]}},
                           finish_resize, "VERIFY_RESIZE")
        await timed("revert", {"revertResize": None}, "ACTIVE")
        await timed("cold_migrate", {"migrate": None}, "VERIFY_RESIZE")
        _, server = await session.step(server_id, {"confirmResize": None}, confirm, "ACTIVE")
        await timed("live_migrate", {"os-migrateLive": {"host": None,
                                                        "block_migration": "auto"}},
                    "ACTIVE", host_not=server["OS-EXT-SRV-ATTR:host"])
    metrics: dict[str, float] = {}
    for step, values in taken.items():
        metrics[f"{step}_p50_ms"] = percentile(values, 50)
        metrics[f"{step}_p95_ms"] = percentile(values, 95)
    _progress(", ".join(f"{s} p50 {metrics[f'{s}_p50_ms']:.1f} ms" for s in STEPS))
    return metrics


async def fake_moves(rounds: int, hosts: int,
                     poll_interval: float) -> tuple[dict[str, float], dict[str, Any]]:
    """Its own ``stratus up`` with ``hosts`` fake hosts; ``measure_moves``'s figures and the
    backends."""
    env = {**COMMON_ENV, "STRATUS_COMPUTE__FAKE_HOSTS": str(hosts),
           "STRATUS_COMPUTE__HOST": "bench"}
    with tempfile.TemporaryDirectory(prefix="stratus-bench-moves-") as tmp:
        _progress(f"stratus up with {hosts} fake hosts")
        async with StratusUp(Path(tmp) / "data", bcrypt_rounds=4, env=env) as cloud:
            password = cloud.admin_password()
            assert password is not None
            async with httpx.AsyncClient(base_url=cloud.base_url, timeout=60) as client:
                session, server_id = await _setup(client, cloud.identity_url, password,
                                                  hosts, poll_interval)
                metrics = await measure_moves(session, server_id, rounds)
            backends = {"virt_driver": "fake", "fake_hosts": hosts,
                        "network_backend": "noop", "bcrypt_rounds": 4, "bus": "memory://",
                        **sqlite_info(Path(tmp) / "data" / "compute.db")}
    return metrics, backends


def goals() -> list[Goal]:
    note = "server-side: the action's start to its last event's finish, fake driver"
    return [Goal("resize_p50_ms", P50_GOAL_MS, "<=", note),
            Goal("cold_migrate_p50_ms", P50_GOAL_MS, "<=", note),
            Goal("live_migrate_p50_ms", P50_GOAL_MS, "<=", note)]


async def run(args: argparse.Namespace) -> Result:
    if args.hosts < 2:
        raise SystemExit("--hosts must be at least 2: the server migrates between hosts")
    metrics, backends = await fake_moves(args.rounds, args.hosts, args.poll_interval)
    return Result(metrics=metrics, backends=backends, goals=goals())
