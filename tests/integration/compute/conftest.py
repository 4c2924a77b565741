"""Identity and compute-api over HTTP, built by ``stratus.units`` as ``stratus up`` builds them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from stratus.core.config import Settings
from stratus.stack import Stack
from stratus.units import root_app, run_bootstrap
from tests.integration.clouds import auth_body

if TYPE_CHECKING:
    from tests.integration.compute.test_boot_flow import Cloud

ADMIN_PASSWORD = "compute-tests-admin-pw"
ROOT = "http://test"


@dataclass
class ComputeCloud:
    client: httpx.AsyncClient
    admin_token: str
    #: The stack serving the cloud (for tests that write rows straight to a database).
    stack: Stack | None = None

    def headers(self, token: str | None = None, version: str | None = None) -> dict[str, str]:
        headers = {"X-Auth-Token": token or self.admin_token}
        if version is not None:
            headers["OpenStack-API-Version"] = f"compute {version}"
        return headers

    async def compute(self, method: str, path: str, *, token: str | None = None,
                      version: str | None = None, headers: dict[str, str] | None = None,
                      **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, f"/compute/v2.1{path}",
                                         headers={**self.headers(token, version),
                                                  **(headers or {})}, **kwargs)

    async def token(self, name: str, password: str, project: str) -> str:
        response = await self.client.post("/identity/v3/auth/tokens",
                                          json=auth_body(name, password, project))
        assert response.status_code == 201, response.text
        return response.headers["X-Subject-Token"]

    async def member(self, name: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """A user with ``member`` on a project of its own: (token, user, project)."""
        admin = {"X-Auth-Token": self.admin_token}
        project = (await self.client.post("/identity/v3/projects", headers=admin, json={
            "project": {"name": f"{name}-project"}})).json()["project"]
        user = (await self.client.post("/identity/v3/users", headers=admin, json={
            "user": {"name": name, "password": f"{name}-pw-1234"}})).json()["user"]
        roles = (await self.client.get("/identity/v3/roles?name=member",
                                       headers=admin)).json()["roles"]
        grant = await self.client.put(f"/identity/v3/projects/{project['id']}/users/"
                                      f"{user['id']}/roles/{roles[0]['id']}", headers=admin)
        assert grant.status_code == 204
        return await self.token(name, f"{name}-pw-1234", project["name"]), user, project


@pytest.fixture
async def cloud(db_url: str, tmp_path: Path) -> AsyncIterator[ComputeCloud]:
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url=ROOT,
                        admin_password=ADMIN_PASSWORD, identity={"bcrypt_rounds": 4})
    stack = Stack(settings)
    try:
        await run_bootstrap(stack)
        app = await root_app(stack, ["identity-api", "compute-api"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=ROOT) as client:
            instance = ComputeCloud(client, "", stack)
            instance.admin_token = await instance.token("admin", ADMIN_PASSWORD, "admin")
            yield instance
    finally:
        await stack.aclose()


#: Starts a whole in-process cloud: ``(compute settings, units=..., **other sections)``.
CloudStarter = Callable[..., Awaitable["Cloud"]]


@pytest.fixture
async def start_cloud(db_url: str, tmp_path: Path) -> AsyncIterator[CloudStarter]:
    """Starts the test's whole cloud in this process (``test_boot_flow.started_cloud``, every
    unit unless ``units`` says): its database and data directory, the fake driver's hosts as
    ``compute`` says, no network backend, quick password hashing; other sections of the
    settings as keywords (``image={...}``). Stopped after the test."""
    from tests.integration.compute.test_boot_flow import UNITS, started_cloud

    async with contextlib.AsyncExitStack() as clouds:
        async def start(compute: dict[str, Any], units: list[str] = UNITS,
                        **sections: Any) -> Cloud:
            settings = Settings(**{
                "data_dir": tmp_path, "database_url": db_url, "public_url": ROOT,
                "admin_password": ADMIN_PASSWORD, "identity": {"bcrypt_rounds": 4},
                "network": {"backend": "noop"}, "compute": compute, **sections})
            return await clouds.enter_async_context(started_cloud(settings, units))

        yield start


@pytest.fixture
async def conductor_stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """A stack running the conductor alone (one fake host in its settings), on the test's
    database: for tests that call the conductor and read what it wrote."""
    settings = Settings(data_dir=tmp_path, database_url=db_url,
                        compute={"fake_hosts": 1, "host": "node", "virt_driver": "fake"})
    stack = Stack(settings)
    try:
        await root_app(stack, ["conductor"])
        yield stack
    finally:
        await stack.aclose()


def assert_compute_error(response: httpx.Response, status: int, key: str) -> str:
    """Nova's error body: ``{"<kind>": {"message", "code"}}``."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert list(body) == [key], body
    assert body[key]["code"] == status
    assert body[key]["message"]
    return str(body[key]["message"])
