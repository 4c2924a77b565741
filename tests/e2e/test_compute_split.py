"""Split mode: the compute units as separate processes on RabbitMQ and PostgreSQL.

The APIs (identity, image, compute-api) run in one process; two schedulers, two conductors
and three compute agents (fake driver) each run in their own, talking over a fresh
RabbitMQ virtual host, all on one fresh PostgreSQL database. A scheduler and a conductor
are killed half way: the others carry on. Every process serves its own ``/metrics``, and
``stratus trace`` shows a boot's spans from every process in one trace.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cloud import BIN, Cloud, base_env, free_port
from tests.e2e.split import Fleet, exposition_value, login

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "split-compute-admin-pw"


@pytest.fixture
async def split(tmp_path: Path, db_url: str, rabbit_url: str) -> AsyncIterator[
        tuple[Cloud, Fleet]]:
    data_dir = tmp_path / "data"
    port = free_port()
    env = base_env(STRATUS_DATABASE_URL=db_url, STRATUS_BUS_URL=rabbit_url,
                   STRATUS_ADMIN_PASSWORD=ADMIN_PASSWORD,
                   STRATUS_COMPUTE__REPORT_INTERVAL="1", STRATUS_NETWORK__BACKEND="noop")
    for command in (["db", "upgrade"], ["bootstrap", "--port", str(port)]):
        await asyncio.to_thread(
            subprocess.run, [str(BIN / "stratus"), *command, "--data-dir", str(data_dir)],
            env=env, check=True, capture_output=True, timeout=120)
    api = Cloud(data_dir, port, env, args=["serve", "identity-api", "image-api",
                                           "compute-api", "network-api"])
    fleet = Fleet(data_dir, env)
    await asyncio.to_thread(api.start)
    try:
        for n in (1, 2):
            fleet.start(f"scheduler-{n}", "scheduler")
            fleet.start(f"conductor-{n}", "conductor")
        for n in (1, 2, 3):
            fleet.start(f"agent-{n}", "compute-agent", STRATUS_COMPUTE__HOST=f"split-{n}",
                        STRATUS_COMPUTE__FAKE_HOSTS="1")
        yield api, fleet
    finally:
        await asyncio.to_thread(fleet.stop_all)
        await asyncio.to_thread(api.stop)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_split_mode_boots_across_processes(split: tuple[Cloud, Fleet]) -> None:
    api, fleet = split
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        token = await login(client, ADMIN_PASSWORD)
        headers = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.96"}
        await wait_until(lambda: hypervisors_up(client, headers), 3)
        image_id = await upload(client, token)

        started = time.monotonic()
        first = await boot(client, headers, image_id, "one", 4)
        hosts = {s["OS-EXT-SRV-ATTR:host"] for s in await wait_all(client, headers, first)}
        # The client's POST → ACTIVE (of all four: at least that of each).
        client_ms = (time.monotonic() - started) * 1000
        assert hosts <= {"split-1", "split-2", "split-3"} and len(hosts) >= 2
        assert await fleet.metric("agent", "stratus_compute_boots_total", outcome="active") == 4
        assert await fleet.metric("scheduler", "stratus_scheduler_decision_seconds_count",
                                  outcome="placed") == 4
        # The scheduler's claim took each build up (its cast carries the instance): the
        # hosts ask the conductor nothing before they spawn but the move to spawning.
        assert await fleet.metric("conductor", "stratus_bus_messages_handled_total",
                                  method="begin_build", outcome="ok") == 0
        assert await fleet.metric("conductor", "stratus_bus_messages_handled_total",
                                  method="instance_update", outcome="ok") == 8
        api_metrics = (await client.get("/metrics")).text
        assert exposition_value(api_metrics, "stratus_api_request_duration_seconds_count",
                                method="POST", route="/v2.1/servers", status="202") == 1
        create = await traced_boot(api, first[0])
        units = {step["unit"] for step in create}
        assert units >= {"compute-api", "scheduler", "conductor", "compute-agent"}, units
        # The flow in the seed's order across the processes (each step's first row follows
        # the first row of the step causing it), the ACTIVE writes within the client's time.
        steps = [step["step"] for step in create]
        wanted = ["4,7", "5", "6", "8", "9-11", "12", "13", "43-44", "45",
                  "46-47"]
        positions = [steps.index(step) for step in wanted]
        assert positions == sorted(positions), "\n".join(
            f"{s['step']:>6} {s['start_ms']:>10} {s['unit']:<14} {s['what']}" for s in create)
        activations = [s for s in create if s["step"] == "46-47"]
        assert len(activations) >= 4
        assert all(s["start_ms"] + s["duration_ms"] <= client_ms for s in activations)

        fleet.kill("scheduler-1")
        fleet.kill("conductor-1")
        second = await boot(client, headers, image_id, "two", 4)
        await wait_all(client, headers, second)

        for server_id in first + second:
            response = await client.delete(f"/compute/v2.1/servers/{server_id}", headers=headers)
            assert response.status_code == 204
        await wait_until(lambda: servers_left(client, headers), 0)
        assert sorted(fleet.alive()) == ["agent-1", "agent-2", "agent-3", "conductor-2",
                                         "scheduler-2"]


async def traced_boot(api: Cloud, server_id: str) -> list[dict[str, Any]]:
    """The rows of the boot's trace of ``server_id`` (``stratus trace --json``), once the
    processes' span stores have the spans up to ACTIVE (of all the boot's servers)."""
    deadline = time.monotonic() + 30
    settled = False
    while True:
        done = await asyncio.to_thread(subprocess.run, [
            str(BIN / "stratus"), "trace", server_id, "--json", "--data-dir",
            str(api.data_dir)], capture_output=True, text=True, env=api.env, timeout=60)
        if done.returncode == 0:
            steps = json.loads(done.stdout)["steps"]
            create = [s for s in steps if s["trace_id"] == steps[0]["trace_id"]]
            if sum(step["step"] == "43-44" for step in create) == 4 \
                    and sum(step["step"] == "46-47" for step in create) >= 4:
                if settled:
                    assert create[0]["what"] == "POST /v2.1/servers", create[0]
                    return create
                settled = True  # once more, when what ended with the last spawns is in
                await asyncio.sleep(1.5)
                continue
        assert time.monotonic() < deadline, done.stdout + done.stderr
        await asyncio.sleep(0.5)


async def upload(client: httpx.AsyncClient, token: str) -> str:
    headers = {"X-Auth-Token": token}
    image = (await client.post("/image/v2/images", headers=headers, json={
        "name": "tiny", "disk_format": "raw", "container_format": "bare"})).json()
    response = await client.put(f"/image/v2/images/{image['id']}/file", content=b"\0" * 4096,
                                headers={**headers, "Content-Type": "application/octet-stream"})
    assert response.status_code == 204
    return str(image["id"])


async def boot(client: httpx.AsyncClient, headers: dict[str, str], image_id: str,
               name: str, count: int) -> list[str]:
    response = await client.post("/compute/v2.1/servers", headers=headers, json={"server": {
        "name": name, "imageRef": image_id, "flavorRef": "1", "networks": "none",
        "min_count": count, "max_count": count, "return_reservation_id": True}})
    assert response.status_code == 202, response.text
    reservation = response.json()["reservation_id"]
    listed = await client.get(f"/compute/v2.1/servers?reservation_id={reservation}",
                              headers=headers)
    ids = [s["id"] for s in listed.json()["servers"]]
    assert len(ids) == count
    return ids


async def wait_all(client: httpx.AsyncClient, headers: dict[str, str],
                   ids: list[str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while True:
        servers = [(await client.get(f"/compute/v2.1/servers/{i}", headers=headers)).json()[
            "server"] for i in ids]
        statuses = {s["status"] for s in servers}
        assert "ERROR" not in statuses, [s.get("fault") for s in servers]
        if statuses == {"ACTIVE"}:
            return servers
        assert time.monotonic() < deadline, statuses
        await asyncio.sleep(0.2)


async def hypervisors_up(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get("/compute/v2.1/os-hypervisors", headers=headers)
    return sum(h["state"] == "up" for h in response.json()["hypervisors"])


async def servers_left(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get("/compute/v2.1/servers", headers=headers)
    return len(response.json()["servers"])


async def wait_until(probe: Any, expected: int) -> None:
    deadline = time.monotonic() + 60
    while (value := await probe()) != expected:
        assert time.monotonic() < deadline, f"still {value}, waiting for {expected}"
        await asyncio.sleep(0.2)
