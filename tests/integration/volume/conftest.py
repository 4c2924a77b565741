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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.core.config import Settings
from stratus.units import Stack, root_app, run_bootstrap
from stratus.volume.service import VolumeRuntime
from tests.integration.asgi import LateASGITransport

ADMIN_PASSWORD = "volume-tests-admin-pw"
ROOT = "http://test"
UNITS = ("identity-api", "image-api", "volume-api", "volume-manager")


@dataclass
class Who:
    token: str
    project_id: str
    user_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}


@dataclass
class VolCloud:
    client: httpx.AsyncClient
    stack: Stack
    settings: Settings
    admin: Who
    roles: dict[str, str] = field(default_factory=dict)
    version: str = "3.60"

    @property
    def runtime(self) -> VolumeRuntime:
        assert self.stack.volume is not None
        return self.stack.volume

    @property
    def volumes_dir(self) -> Path:
        return self.settings.volumes_dir

    async def token(self, name: str, password: str, project: str) -> Who:
        response = await self.client.post("/identity/v3/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": name, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}})
        assert response.status_code == 201, response.text
        body = response.json()["token"]
        return Who(response.headers["X-Subject-Token"], body["project"]["id"],
                   body["user"]["id"])

    async def project(self, role: str = "member") -> Who:
        name = f"p-{uuid.uuid4().hex[:8]}"
        admin = self.admin.headers
        project = (await self.client.post("/identity/v3/projects", headers=admin, json={
            "project": {"name": name}})).json()["project"]
        user = (await self.client.post("/identity/v3/users", headers=admin, json={
            "user": {"name": name, "password": f"{name}-pw"}})).json()["user"]
        grant = await self.client.put(f"/identity/v3/projects/{project['id']}/users/"
                                      f"{user['id']}/roles/{self.roles[role]}", headers=admin)
        assert grant.status_code == 204, grant.text
        return await self.token(name, f"{name}-pw", name)

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
    stacks: list[Stack] = []
    clients: list[httpx.AsyncClient] = []

    async def build(bus: str | None = None, units: tuple[str, ...] = UNITS,
                    image: dict[str, Any] | None = None, **volume: Any) -> VolCloud:
        settings = Settings(data_dir=tmp_path / f"data{len(stacks)}", database_url=db_url,
                            public_url=ROOT, admin_password=ADMIN_PASSWORD,
                            bus_url=bus or f"memory://vol-{uuid.uuid4().hex[:8]}",
                            identity={"bcrypt_rounds": 4}, image=image or {},
                            volume={"host": "storage-1", **volume})
        transport = LateASGITransport()
        stack = Stack(settings, http_transport=transport)
        stacks.append(stack)
        await run_bootstrap(stack)
        app = await root_app(stack, list(units))
        transport.app = app
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ROOT,
                                   timeout=60)
        clients.append(client)
        cloud = VolCloud(client, stack, settings, Who("", "", ""))
        cloud.admin = await cloud.token("admin", ADMIN_PASSWORD, "admin")
        roles = (await client.get("/identity/v3/roles",
                                  headers=cloud.admin.headers)).json()["roles"]
        cloud.roles = {r["name"]: r["id"] for r in roles}
        return cloud

    try:
        yield build
    finally:
        for client in clients:
            await client.aclose()
        for stack in stacks:
            await stack.aclose()


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
