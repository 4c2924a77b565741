"""A real image service over HTTP beside a real identity, on SQLite and on PostgreSQL.

The app is built by ``stratus.units`` as ``stratus up`` builds it (identity, then the image
unit with the stack's cached in-process token validator), and driven through httpx's ASGI
transport. ``make_cloud(**image_settings)`` builds one with other image settings (quotas).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Mount
from starlette.types import ASGIApp

from stratus.core.config import Settings
from stratus.image.service import ImageRuntime
from stratus.stack import Stack
from stratus.units import root_app, run_bootstrap
from tests.conftest import backend_unavailable

ADMIN_PASSWORD = "Adm1n-Pa55-image-tests"
PUBLIC_URL = "http://test"
IMAGE = "/image/v2"
OCTET = {"Content-Type": "application/octet-stream"}
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


def password_auth(*, password: str, user_id: str | None = None, name: str | None = None,
                  project: dict[str, Any] | None = None) -> dict[str, Any]:
    user: dict[str, Any] = {"password": password}
    if user_id:
        user["id"] = user_id
    if name:
        user["name"] = name
        user["domain"] = {"name": "Default"}
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": user}},
                     "scope": {"project": project}}}


def assert_error(response: httpx.Response, status: int) -> str:
    """A Glance-style error body (``{"code", "title", "message"}``) with this status."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"code", "title", "message"}, body
    assert body["code"] == status and body["title"] and body["message"]
    return str(body["message"])


def require_qemu_img() -> None:
    """Skip without qemu-img (Debian: qemu-utils); under CI=true that is a failure."""
    if shutil.which("qemu-img") is None:
        backend_unavailable("qemu-img is not installed (apt-get install qemu-utils)")


def qcow2_bytes(tmp_path: Path, size: str = "64M", backing: Path | None = None) -> bytes:
    """A real qcow2 image made by qemu-img (CI installs qemu-utils)."""
    require_qemu_img()
    path = tmp_path / f"disk-{size}-{'b' if backing else 'n'}.qcow2"
    command = ["qemu-img", "create", "-f", "qcow2"]
    if backing is not None:
        command += ["-b", str(backing), "-F", "raw"]
    subprocess.run([*command, str(path), size], check=True, capture_output=True)
    return path.read_bytes()


@dataclass
class Project:
    """A project with a user holding ``role`` on it, and that user's token."""

    id: str
    user_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}


@dataclass
class ImageCloud:
    client: httpx.AsyncClient
    app: ASGIApp
    stack: Stack
    runtime: ImageRuntime
    admin: Project
    roles: dict[str, str] = field(default_factory=dict)
    _counter: int = 0

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def store_dir(self) -> Path:
        return self.settings.data_dir / "images"

    def stored_files(self) -> list[Path]:
        """Every file the store holds, staged or not."""
        return sorted(p for p in self.store_dir.rglob("*") if p.is_file())

    async def project(self, role: str = "member") -> Project:
        """A fresh project and user with ``role`` on it, with a project-scoped token."""
        self._counter += 1
        name = f"p{self._counter}"
        admin = self.admin.headers
        project = (await self.client.post("/identity/v3/projects", headers=admin,
                                          json={"project": {"name": name}})).json()["project"]
        password = f"pw-{name}-9x"
        user = (await self.client.post("/identity/v3/users", headers=admin, json={
            "user": {"name": f"u{self._counter}", "password": password}})).json()["user"]
        granted = await self.client.put(
            f"/identity/v3/projects/{project['id']}/users/{user['id']}/roles/"
            f"{self.roles[role]}", headers=admin)
        assert granted.status_code == 204, granted.text
        response = await self.client.post("/identity/v3/auth/tokens", json=password_auth(
            password=password, user_id=user["id"], project={"id": project["id"]}))
        assert response.status_code == 201, response.text
        return Project(project["id"], user["id"], response.headers["X-Subject-Token"])

    async def create(self, who: Project | None = None, **body: Any) -> dict[str, Any]:
        body.setdefault("disk_format", "raw")
        body.setdefault("container_format", "bare")
        response = await self.client.post(f"{IMAGE}/images", json=body,
                                          headers=(who or self.admin).headers)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def upload(self, image_id: str, data: Any, who: Project | None = None,
                     **headers: str) -> httpx.Response:
        return await self.client.put(f"{IMAGE}/images/{image_id}/file", content=data,
                                     headers={**(who or self.admin).headers, **OCTET,
                                              **headers})

    async def show(self, image_id: str, who: Project | None = None) -> dict[str, Any]:
        response = await self.client.get(f"{IMAGE}/images/{image_id}",
                                         headers=(who or self.admin).headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def active_image(self, data: bytes, who: Project | None = None,
                           **body: Any) -> dict[str, Any]:
        image = await self.create(who, **body)
        response = await self.upload(image["id"], data, who)
        assert response.status_code == 204, response.text
        return await self.show(image["id"], who)

    async def patch(self, image_id: str, ops: list[dict[str, Any]],
                    who: Project | None = None) -> httpx.Response:
        return await self.client.patch(f"{IMAGE}/images/{image_id}", json=ops,
                                       headers={**(who or self.admin).headers, **PATCH})


def digests(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "checksum": hashlib.md5(data).hexdigest(),
            "os_hash_algo": "sha512", "os_hash_value": hashlib.sha512(data).hexdigest()}


def image_runtime(app: ASGIApp) -> ImageRuntime:
    for route in getattr(app, "routes", []):
        if isinstance(route, Mount) and route.path == "/image":
            runtime: ImageRuntime = route.app.state.image  # type: ignore[attr-defined]
            return runtime
    raise AssertionError("no image unit mounted")


CloudFactory = Callable[..., Awaitable[ImageCloud]]


@pytest.fixture
async def make_cloud(db_url: str, tmp_path: Path) -> AsyncIterator[CloudFactory]:
    stacks: list[Stack] = []
    clients: list[httpx.AsyncClient] = []

    async def build(**image: Any) -> ImageCloud:
        assert not stacks, "one cloud per test"
        settings = Settings(data_dir=tmp_path / "data", database_url=db_url,
                            public_url=PUBLIC_URL, admin_password=ADMIN_PASSWORD,
                            identity={"bcrypt_rounds": 4}, image=image)
        stack = Stack(settings)
        stacks.append(stack)
        await run_bootstrap(stack)
        app = await root_app(stack, ["identity-api", "image-api"])
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url=PUBLIC_URL, timeout=60)
        clients.append(client)
        response = await client.post("/identity/v3/auth/tokens", json=password_auth(
            name="admin", password=ADMIN_PASSWORD,
            project={"name": "admin", "domain": {"name": "Default"}}))
        assert response.status_code == 201, response.text
        token = response.headers["X-Subject-Token"]
        body = response.json()["token"]
        admin = Project(body["project"]["id"], body["user"]["id"], token)
        roles = (await client.get("/identity/v3/roles", headers=admin.headers)).json()["roles"]
        return ImageCloud(client=client, app=app, stack=stack, runtime=image_runtime(app),
                          admin=admin, roles={r["name"]: r["id"] for r in roles})

    try:
        yield build
    finally:
        for client in clients:
            await client.aclose()
        for stack in stacks:
            await stack.aclose()


@pytest.fixture
async def cloud(make_cloud: CloudFactory) -> ImageCloud:
    return await make_cloud()
