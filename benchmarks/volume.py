"""Block storage: volume create/delete rate and attach/detach latency, against a real
all-in-one ``stratus up`` (file backend with real qemu-img files; fake virt driver, noop
network backend).

* ``create``: ``--volumes`` 1 GiB volumes asked for with ``--concurrency`` in flight; the
  rate is volumes made ``available`` per second (API accept to the manager's file), with
  each volume's create-to-available latency; then their deletes, to gone (file removed).
* ``attach``: one server, one volume; ``--attaches`` rounds of ``server add volume``
  (compute-api → volume-api reserve → compute host connect, driver attach, complete) timed
  to the volume being ``in-use``, and ``remove volume`` timed to ``available``.

Goals: >= 20 volumes/s created and deleted all-in-one; attach and detach p50 <= 250 ms.
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

DESCRIPTION = "volume create/delete rate and attach/detach latency (file backend, fake driver)"

CREATE_GOAL = 20.0
ATTACH_GOAL_MS = 250.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--volumes", type=int, default=100,
                        help="volumes created then deleted (default 100)")
    parser.add_argument("--concurrency", type=int, default=10,
                        help="creates in flight (default 10)")
    parser.add_argument("--attaches", type=int, default=20,
                        help="attach/detach rounds (default 20)")


class _Api:
    def __init__(self, client: httpx.AsyncClient, token: str, project_id: str) -> None:
        self.client = client
        self.headers = {"X-Auth-Token": token}
        self.volume_base = f"/volume/v3/{project_id}"

    async def volume(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, f"{self.volume_base}{path}", headers={
            **self.headers, "OpenStack-API-Version": "volume 3.60"}, **kwargs)

    async def compute(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, f"/compute/v2.1{path}", headers={
            **self.headers, "OpenStack-API-Version": "compute 2.89"}, **kwargs)

    async def wait_volume(self, volume_id: str, status: str) -> float:
        """Poll until the volume has ``status`` (404 counts as ``deleted``); the time then."""
        while True:
            response = await self.volume("GET", f"/volumes/{volume_id}")
            if response.status_code == 404 and status == "deleted":
                return time.perf_counter()
            current = response.json()["volume"]["status"]
            if current == status:
                return time.perf_counter()
            if current == "error":
                raise RuntimeError(f"volume {volume_id} went to error")
            await asyncio.sleep(0.01)


async def run(args: argparse.Namespace) -> Result:
    env = {"STRATUS_NETWORK__BACKEND": "noop", "STRATUS_COMPUTE__VIRT_DRIVER": "fake"}
    with tempfile.TemporaryDirectory(prefix="stratus-bench-volume-") as tmp:
        async with StratusUp(Path(tmp) / "data", bcrypt_rounds=4, env=env) as cloud:
            await cloud.wait_ready()
            async with httpx.AsyncClient(base_url=cloud.base_url, timeout=300) as client:
                password = cloud.admin_password()
                assert password is not None
                token = await issue_token(client, cloud.identity_url, password)
                body = (await client.get(f"{cloud.identity_url}/auth/tokens", headers={
                    "X-Auth-Token": token, "X-Subject-Token": token})).json()["token"]
                api = _Api(client, token, body["project"]["id"])
                metrics = await _creates(api, args)
                metrics.update(await _attaches(api, args))
                metrics["volume_files_left"] = float(len(os.listdir(
                    Path(tmp) / "data" / "volumes")))
    return Result(metrics=metrics, goals=[
        Goal("volume_creates_per_s", CREATE_GOAL, ">=",
             f"{args.volumes} volumes to available, {args.concurrency} in flight"),
        Goal("volume_deletes_per_s", CREATE_GOAL, ">=", "to gone, file removed"),
        Goal("attach_p50_ms", ATTACH_GOAL_MS, "<=", "server add volume to in-use"),
        Goal("detach_p50_ms", ATTACH_GOAL_MS, "<=", "server remove volume to available"),
        Goal("volume_files_left", 0, "==", "every file removed with its volume"),
    ], backends={"volume_backend": "file", "virt_driver": "fake", "bus": "memory://",
                 "database": "sqlite"})


async def _creates(api: _Api, args: argparse.Namespace) -> dict[str, float]:
    quota = await api.volume("PUT", f"/os-quota-sets/{api.volume_base.rsplit('/', 1)[1]}",
                             json={"quota_set": {"volumes": -1, "gigabytes": -1}})
    assert quota.status_code == 200, quota.text
    gate = asyncio.Semaphore(args.concurrency)
    latencies: list[float] = []
    ids: list[str] = []

    async def create_one() -> None:
        async with gate:
            started = time.perf_counter()
            response = await api.volume("POST", "/volumes", json={"volume": {"size": 1}})
            assert response.status_code == 202, response.text
            volume_id = response.json()["volume"]["id"]
            ids.append(volume_id)
            latencies.append(await api.wait_volume(volume_id, "available") - started)

    started = time.perf_counter()
    await asyncio.gather(*(create_one() for _ in range(args.volumes)))
    create_s = time.perf_counter() - started

    async def delete_one(volume_id: str) -> None:
        async with gate:
            response = await api.volume("DELETE", f"/volumes/{volume_id}")
            assert response.status_code == 202, response.text
            await api.wait_volume(volume_id, "deleted")

    started = time.perf_counter()
    await asyncio.gather(*(delete_one(v) for v in ids))
    delete_s = time.perf_counter() - started
    return {"volume_creates_per_s": args.volumes / create_s,
            "volume_create_p50_ms": percentile(latencies, 50) * 1e3,
            "volume_create_p95_ms": percentile(latencies, 95) * 1e3,
            "volume_deletes_per_s": args.volumes / delete_s}


async def _attaches(api: _Api, args: argparse.Namespace) -> dict[str, float]:
    image = (await api.client.post("/image/v2/images", headers=api.headers, json={
        "name": "bench", "disk_format": "raw", "container_format": "bare"})).json()
    upload = await api.client.put(f"/image/v2/images/{image['id']}/file", headers={
        **api.headers, "Content-Type": "application/octet-stream"}, content=b"\0" * 65536)
    assert upload.status_code == 204, upload.text
    created = await api.compute("POST", "/servers", json={"server": {
        "name": "bench", "imageRef": image["id"], "flavorRef": "1", "networks": "none"}})
    assert created.status_code == 202, created.text
    server_id = created.json()["server"]["id"]
    for _ in range(1200):
        server = (await api.compute("GET", f"/servers/{server_id}")).json()["server"]
        if server["status"] == "ACTIVE":
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError(f"server {server_id} did not become ACTIVE")
    volume = (await api.volume("POST", "/volumes", json={"volume": {"size": 1}})).json()
    volume_id = volume["volume"]["id"]
    await api.wait_volume(volume_id, "available")
    attach: list[float] = []
    detach: list[float] = []
    for _ in range(args.attaches):
        started = time.perf_counter()
        response = await api.compute("POST", f"/servers/{server_id}/os-volume_attachments",
                                     json={"volumeAttachment": {"volumeId": volume_id}})
        assert response.status_code == 200, response.text
        attach.append(await api.wait_volume(volume_id, "in-use") - started)
        started = time.perf_counter()
        response = await api.compute(
            "DELETE", f"/servers/{server_id}/os-volume_attachments/{volume_id}")
        assert response.status_code == 202, response.text
        detach.append(await api.wait_volume(volume_id, "available") - started)
    await api.volume("DELETE", f"/volumes/{volume_id}")
    await api.wait_volume(volume_id, "deleted")
    await api.compute("DELETE", f"/servers/{server_id}")
    return {"attach_p50_ms": percentile(attach, 50) * 1e3,
            "attach_p95_ms": percentile(attach, 95) * 1e3,
            "detach_p50_ms": percentile(detach, 50) * 1e3,
            "detach_p95_ms": percentile(detach, 95) * 1e3}
