"""Identity and network-api over HTTP, built by ``stratus.units`` as ``stratus up`` builds
them, on SQLite and PostgreSQL; the bus is in-process unless a test asks for another.

``make_cloud(backend=..., bus=..., **network_settings)`` builds one; ``cloud`` is the noop
backend on the memory bus. Service-to-service HTTP (the external events to compute) is
routed into the same app.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.core.config import Settings
from stratus.network.service import NetworkRuntime
from stratus.units import Stack, root_app, run_bootstrap
from tests.integration.asgi import LateASGITransport

ADMIN_PASSWORD = "network-tests-admin-pw"
ROOT = "http://test"
NET = "/network/v2.0"


def auth_body(name: str, password: str, project: str) -> dict[str, Any]:
    return {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": name, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}


@dataclass
class Who:
    token: str
    project_id: str
    user_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}


@dataclass
class NetCloud:
    client: httpx.AsyncClient
    stack: Stack
    admin: Who
    roles: dict[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> NetworkRuntime:
        assert self.stack.network is not None
        return self.stack.network

    async def token(self, name: str, password: str, project: str) -> Who:
        response = await self.client.post("/identity/v3/auth/tokens",
                                          json=auth_body(name, password, project))
        assert response.status_code == 201, response.text
        body = response.json()["token"]
        return Who(response.headers["X-Subject-Token"], body["project"]["id"],
                   body["user"]["id"])

    async def project(self, role: str = "member") -> Who:
        """A fresh project with a user holding ``role`` on it."""
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
                   headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, f"{NET}{path}",
                                         headers={**(who or self.admin).headers,
                                                  **(headers or {})}, **kwargs)

    async def create(self, kind: str, who: Who | None = None, **attrs: Any) -> dict[str, Any]:
        """POST ``/<kind>s`` (``security-group`` → ``security-groups``); asserts a 201."""
        key = kind.replace("-", "_")
        response = await self.call("POST", f"/{kind}s", who, json={key: attrs})
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()[key]
        return result

    async def network_with_subnet(self, who: Who | None = None, cidr: str = "10.1.0.0/24",
                                  **subnet: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        net = await self.create("network", who, name=f"n-{uuid.uuid4().hex[:6]}")
        sub = await self.create("subnet", who, network_id=net["id"], cidr=cidr,
                                ip_version=4, **subnet)
        return net, sub


CloudFactory = Callable[..., Awaitable[NetCloud]]


@pytest.fixture
async def make_cloud(db_url: str, tmp_path: Path) -> AsyncIterator[CloudFactory]:
    stacks: list[Stack] = []
    clients: list[httpx.AsyncClient] = []

    async def build(backend: str = "noop", bus: str | None = None,
                    units: tuple[str, ...] = ("identity-api", "network-api"),
                    **network: Any) -> NetCloud:
        settings = Settings(data_dir=tmp_path / f"data{len(stacks)}", database_url=db_url,
                            public_url=ROOT, admin_password=ADMIN_PASSWORD,
                            bus_url=bus or f"memory://net-{uuid.uuid4().hex[:8]}",
                            identity={"bcrypt_rounds": 4},
                            network={"backend": backend, **network})
        transport = LateASGITransport()
        stack = Stack(settings, http_transport=transport)
        stacks.append(stack)
        await run_bootstrap(stack)
        app = await root_app(stack, list(units))
        transport.app = app
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ROOT,
                                   timeout=60)
        clients.append(client)
        instance = NetCloud(client, stack, Who("", "", ""))
        instance.admin = await instance.token("admin", ADMIN_PASSWORD, "admin")
        roles = (await client.get("/identity/v3/roles",
                                  headers=instance.admin.headers)).json()["roles"]
        instance.roles = {r["name"]: r["id"] for r in roles}
        return instance

    try:
        yield build
    finally:
        for client in clients:
            await client.aclose()
        for stack in stacks:
            await stack.aclose()


@pytest.fixture
async def cloud(make_cloud: CloudFactory) -> NetCloud:
    return await make_cloud()


def assert_neutron_error(response: httpx.Response, status: int, type_name: str) -> str:
    """A Neutron error body of this status and type; returns its message."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"NeutronError"}, body
    error = body["NeutronError"]
    assert set(error) == {"type", "message", "detail"}, error
    assert error["type"] == type_name, error
    assert error["message"], error
    return str(error["message"])
