"""Split mode with a pool of API processes on one port (``stratus serve --workers 2``).

Two workers serve identity, image, compute and network on one port (SO_REUSEPORT), beside
a scheduler, a conductor and a compute agent (fake driver), on RabbitMQ and PostgreSQL.
Requests land on both (each response names its worker); a token revoked through one is
refused by the other long before the token cache's lifetime; the real ``openstack`` CLI
boots a server; a worker killed leaves the port answering, and the pool starts it again; an
image deactivated through one worker is refused by both, though each kept its record.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.cloud import BIN, Cloud, base_env, free_port
from tests.e2e.split import Fleet, login

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "split-workers-admin-pw"
API_UNITS = ["identity-api", "image-api", "compute-api", "network-api"]


@pytest.fixture
async def pool(tmp_path: Path, db_url: str, rabbit_url: str) -> AsyncIterator[Cloud]:
    data_dir = tmp_path / "data"
    port = free_port()
    # A token cache that would keep a revoked token for an hour without the bus.
    env = base_env(STRATUS_DATABASE_URL=db_url, STRATUS_BUS_URL=rabbit_url,
                   STRATUS_ADMIN_PASSWORD=ADMIN_PASSWORD, STRATUS_AUTH__CACHE_TTL="3600",
                   STRATUS_COMPUTE__REPORT_INTERVAL="1", STRATUS_NETWORK__BACKEND="noop")
    await asyncio.to_thread(
        subprocess.run, [str(BIN / "stratus"), "bootstrap", "--port", str(port),
                         "--data-dir", str(data_dir)],
        env=env, check=True, capture_output=True, timeout=120)
    api = Cloud(data_dir, port, env, args=["serve", *API_UNITS, "--workers", "2"])
    fleet = Fleet(data_dir, env)
    await asyncio.to_thread(api.start, 60)
    try:
        fleet.start("scheduler-1", "scheduler")
        fleet.start("conductor-1", "conductor")
        fleet.start("agent-1", "compute-agent", STRATUS_COMPUTE__HOST="pool-1",
                    STRATUS_COMPUTE__FAKE_HOSTS="1")
        yield api
    finally:
        await asyncio.to_thread(fleet.stop_all)
        # The parent stops its workers and exits 0.
        assert await asyncio.to_thread(api.stop, 40) == 0, api.console()[-3000:]


def worker_of(response: httpx.Response) -> tuple[int, int]:
    """(worker index, pid) from ``X-Stratus-Worker: <index>/<pid>``."""
    index, pid = response.headers["X-Stratus-Worker"].split("/")
    return int(index), int(pid)


async def admin_token(api: Cloud) -> str:
    """A token of the admin user scoped to the admin project (from whichever worker)."""
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        return await login(client, ADMIN_PASSWORD)


async def each_worker(api: Cloud, request: Callable[[httpx.AsyncClient], object],
                      want: set[int] = frozenset({1, 2}), within: float = 60,
                      ) -> dict[int, httpx.Response]:
    """One answer from each worker in ``want``: the request sent on fresh connections
    until every one of them answered (the kernel picks the worker per connection)."""
    seen: dict[int, httpx.Response] = {}
    deadline = time.monotonic() + within
    while not want <= seen.keys():
        assert time.monotonic() < deadline, f"only workers {sorted(seen)} answered"
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            response = await request(client)  # type: ignore[misc]
        seen.setdefault(worker_of(response)[0], response)
    return seen


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_api_workers_share_a_port(pool: Cloud) -> None:
    api = pool

    def version(client: httpx.AsyncClient) -> object:
        return client.get("/compute/v2.1/")

    first = await each_worker(api, version)
    pids = {index: worker_of(r)[1] for index, r in first.items()}
    assert len(set(pids.values())) == 2 and all(r.status_code == 200 for r in first.values())

    # A token cached by both workers, revoked through one: the other refuses it too.
    token = await admin_token(api)
    headers = {"X-Auth-Token": token}

    def flavors(client: httpx.AsyncClient) -> object:
        return client.get("/compute/v2.1/flavors", headers=headers)

    assert {r.status_code for r in (await each_worker(api, flavors)).values()} == {200}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        revoked = await client.delete("/identity/v3/auth/tokens",
                                      headers={**headers, "X-Subject-Token": token})
    assert revoked.status_code == 204
    refused: set[int] = set()
    deadline = time.monotonic() + 30  # the cache alone would keep it for 3600 s
    while refused != {1, 2}:
        assert time.monotonic() < deadline, f"still accepted by a worker; refused: {refused}"
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            response = await client.get("/compute/v2.1/flavors", headers=headers)
        if response.status_code == 401:
            refused.add(worker_of(response)[0])
        await asyncio.sleep(0.05)

    # The real CLI boots a server through the pool.
    image = tmp_image(api)
    await asyncio.to_thread(api.openstack, "image", "create", "tiny", "--disk-format", "raw",
                            "--container-format", "bare", "--file", str(image))
    server = await asyncio.to_thread(
        api.openstack_json, "server", "create", "--image", "tiny", "--flavor", "1",
        "--nic", "none", "--wait", "one")
    assert server["status"] == "ACTIVE"

    # Worker 1 killed: the port keeps answering (worker 2), and the pool starts it again.
    os.kill(pids[1], signal.SIGKILL)
    await asyncio.to_thread(wait_gone, pids[1])
    for _ in range(10):
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            response = await client.get("/compute/v2.1/")
        assert response.status_code == 200
    listed = await asyncio.to_thread(api.openstack_json, "server", "list")
    assert [s["Name"] for s in listed] == ["one"]
    again = await each_worker(api, version, within=90)
    assert worker_of(again[1])[1] != pids[1] and worker_of(again[2])[1] == pids[2]

    # The image checked by a boot on each worker (each keeps its record), deactivated
    # through one: the other refuses the next boot too, without an expiry to wait for.
    token = await admin_token(api)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        image_id = (await client.get("/image/v2/images?name=tiny",
                                     headers={"X-Auth-Token": token})).json()["images"][0]["id"]
    boot_headers = {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.96"}

    def boot(client: httpx.AsyncClient) -> object:
        return client.post("/compute/v2.1/servers", headers=boot_headers, json={"server": {
            "name": "warm", "imageRef": image_id, "flavorRef": "1", "networks": "none"}})

    assert {r.status_code for r in (await each_worker(api, boot)).values()} == {202}
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        deactivated = await client.post(f"/image/v2/images/{image_id}/actions/deactivate",
                                        headers={"X-Auth-Token": token})
    assert deactivated.status_code == 204
    # The other worker hears of it a few milliseconds after the deactivation answered (the
    # fanout's delivery), as of a token revoked elsewhere; its record never expires alone.
    refused: set[int] = set()
    deadline = time.monotonic() + 30
    while refused != {1, 2}:
        assert time.monotonic() < deadline, f"still booted by a worker; refused: {refused}"
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            response = await boot(client)  # type: ignore[misc]
        if response.status_code == 400:
            assert "is not active" in response.text
            refused.add(worker_of(response)[0])
        await asyncio.sleep(0.05)


def tmp_image(api: Cloud) -> Path:
    path = api.data_dir.parent / "tiny.raw"
    path.write_bytes(b"\0" * 4096)
    return path


def wait_gone(pid: int, within: float = 30) -> None:
    """Until ``pid`` is reaped by the pool's parent. A zombie is not enough: the leader of a
    threaded process shows ``Z`` while its other threads are still exiting with its file
    table, so its listening socket may still be open, and a SYN that meets it as it closes
    is answered with a reset (the kernel migrates none by default). The parent can reap it
    only once every thread has gone, sockets closed."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} not reaped")
