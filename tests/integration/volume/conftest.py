"""identity-api, image-api, volume-api and a volume-manager, built by ``stratus.units`` as
``stratus up`` builds them, on SQLite and PostgreSQL; the bus is in-process unless a test
asks for another (``make_cloud(bus=...)``). The file backend writes real files with
``qemu-img`` under the test's directory.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.volume.service import VolumeRuntime
from tests.integration.asgi import LateASGITransport
from tests.integration.clouds import CloudStarter, TestCloud, Who

__all__ = ["LateASGITransport", "VolCloud", "assert_cinder_error"]

ADMIN_PASSWORD = "volume-tests-admin-pw"
UNITS = ("identity-api", "image-api", "volume-api", "volume-manager")


class VolCloud(TestCloud):
    version = "3.60"

    @property
    def runtime(self) -> VolumeRuntime:
        assert self.stack.volume is not None
        return self.stack.volume

    @property
    def volumes_dir(self) -> Path:
        return self.settings.volumes_dir

    async def call(self, method: str, path: str, who: Who | None = None,
                   version: str | None = None, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> httpx.Response:
        who = who or self.admin
        headers = {**who.headers,
                   "OpenStack-API-Version": f"volume {version or self.version}",
                   **(headers or {})}
        return await self.client.request(method, f"/volume/v3/{who.project_id}{path}",
                                         headers=headers, **kwargs)

    async def create_volume(self, who: Who | None = None, **attrs: Any) -> dict[str, Any]:
        attrs.setdefault("size", 1)
        response = await self.call("POST", "/volumes", who, json={"volume": attrs})
        assert response.status_code == 202, response.text
        volume: dict[str, Any] = response.json()["volume"]
        return volume

    async def wait_volume(self, volume_id: str, *statuses: str, who: Who | None = None,
                          wait_for: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + wait_for
        while True:
            response = await self.call("GET", f"/volumes/{volume_id}", who)
            if response.status_code == 404 and "deleted" in statuses:
                return {"status": "deleted"}
            assert response.status_code == 200, response.text
            volume: dict[str, Any] = response.json()["volume"]
            if volume["status"] in statuses:
                return volume
            assert time.monotonic() < deadline, f"volume stuck in {volume['status']}"
            await asyncio.sleep(0.05)

    async def wait_snapshot(self, snapshot_id: str, *statuses: str,
                            wait_for: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + wait_for
        while True:
            response = await self.call("GET", f"/snapshots/{snapshot_id}")
            if response.status_code == 404 and "deleted" in statuses:
                return {"status": "deleted"}
            assert response.status_code == 200, response.text
            snapshot: dict[str, Any] = response.json()["snapshot"]
            if snapshot["status"] in statuses:
                return snapshot
            assert time.monotonic() < deadline, f"snapshot stuck in {snapshot['status']}"
            await asyncio.sleep(0.05)

    def files(self) -> list[str]:
        return sorted(p.name for p in self.volumes_dir.iterdir())


CloudFactory = Callable[..., Awaitable[VolCloud]]


@pytest.fixture
async def make_cloud(db_url: str, tmp_path: Path) -> AsyncIterator[CloudFactory]:
    starter = CloudStarter(db_url, tmp_path, ADMIN_PASSWORD)

    async def build(bus: str | None = None, units: tuple[str, ...] = UNITS,
                    image: dict[str, Any] | None = None, **volume: Any) -> VolCloud:
        return await starter.start(VolCloud, units,
                                   bus or f"memory://vol-{uuid.uuid4().hex[:8]}",
                                   image=image or {},
                                   volume={"host": "storage-1", **volume})

    try:
        yield build
    finally:
        await starter.aclose()


@pytest.fixture
async def cloud(make_cloud: CloudFactory) -> VolCloud:
    return await make_cloud()


def assert_cinder_error(response: httpx.Response, status: int, key: str) -> str:
    """A Cinder error body (``{key: {"message", "code"}}``); returns its message."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert list(body) == [key], body
    assert body[key]["code"] == status, body
    assert body[key]["message"], body
    return str(body[key]["message"])
