"""A real identity service over HTTP, on SQLite and on PostgreSQL, wired as ``stratus up`` does.

The app is built by ``stratus.units`` itself (``Stack`` → ``run_bootstrap`` → ``root_app``),
so the identity API sits under ``/identity`` behind the same ``CachingValidator`` the
running cloud uses. Every response the client receives is checked: it carries a
``req-`` request id and contains neither a bcrypt hash nor any password the test used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.core.auth import CachingValidator
from stratus.core.config import Settings
from stratus.identity.service import IdentityRuntime
from stratus.stack import Stack
from stratus.units import root_app, run_bootstrap

ADMIN_PASSWORD = "Adm1n-Pa55-integration-7d1f"
BASE_URL = "http://test/identity"
PUBLIC_URL = "http://test"
BCRYPT_MARKERS = (b"$2b$", b"$2a$", b"$2y$")


def check_response(response: httpx.Response, secrets: Iterable[str]) -> None:
    """What must hold for every answer identity gives, whatever the request."""
    request_id = response.headers.get("x-openstack-request-id", "")
    assert request_id.startswith("req-"), (
        f"{response.request.method} {response.request.url} answered without a req- request id: "
        f"{request_id!r}")
    blob = response.content + b"\n".join(
        name + b": " + value for name, value in response.headers.raw)
    for marker in BCRYPT_MARKERS:
        assert marker not in blob, (
            f"{response.request.method} {response.request.url} leaked a bcrypt hash")
    for secret in secrets:
        assert secret.encode() not in blob, (
            f"{response.request.method} {response.request.url} leaked a password or secret")


class CheckedClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that runs ``check_response`` on every response."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Strings no response may ever contain (passwords, app credential secrets once shown).
        self.secrets: set[str] = {ADMIN_PASSWORD}
        self.checked = 0

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = await super().send(request, **kwargs)
        await response.aread()
        check_response(response, self.secrets)
        self.checked += 1
        return response


def assert_error(response: httpx.Response, status: int) -> str:
    """The response is a Keystone-style error with this status; returns its message."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "title", "message"}, error
    assert error["code"] == status
    assert isinstance(error["title"], str) and error["title"]
    assert isinstance(error["message"], str) and error["message"]
    return str(error["message"])


def password_auth(*, password: str, user_id: str | None = None, name: str | None = None,
                  domain: dict[str, str] | None = None,
                  scope: dict[str, Any] | str | None = None) -> dict[str, Any]:
    """A ``POST /v3/auth/tokens`` body for the password method."""
    user: dict[str, Any] = {"password": password}
    if user_id is not None:
        user["id"] = user_id
    if name is not None:
        user["name"] = name
        user["domain"] = domain or {"id": "default"}
    auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": user}}}
    if scope is not None:
        auth["scope"] = scope
    return {"auth": auth}


def project_scope(project_id: str) -> dict[str, Any]:
    return {"project": {"id": project_id}}


@dataclass
class Member:
    """A non-admin user holding ``member`` on a project of its own, with a token for it."""

    user: dict[str, Any]
    password: str
    project: dict[str, Any]
    token: str
    body: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}


@dataclass
class Cloud:
    client: CheckedClient
    stack: Stack
    runtime: IdentityRuntime
    validator: CachingValidator
    admin_token: str
    admin_body: dict[str, Any]
    roles: dict[str, str] = field(default_factory=dict)
    _counter: int = 0

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def admin(self) -> dict[str, str]:
        return {"X-Auth-Token": self.admin_token}

    @property
    def admin_user_id(self) -> str:
        return str(self.admin_body["user"]["id"])

    @property
    def admin_project_id(self) -> str:
        return str(self.admin_body["project"]["id"])

    def unique(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}-{self._counter}"

    def new_password(self) -> str:
        password = f"Pw-{self.unique('secret')}-q8Zx3mL0"
        self.client.secrets.add(password)
        return password

    # Requests -----------------------------------------------------------------------------

    async def authenticate(self, body: dict[str, Any], *, query: str = "") -> httpx.Response:
        return await self.client.post(f"/v3/auth/tokens{query}", json=body)

    async def issue(self, body: dict[str, Any], *, query: str = "") -> tuple[str, dict[str, Any]]:
        response = await self.authenticate(body, query=query)
        assert response.status_code == 201, response.text
        token = response.headers["X-Subject-Token"]
        assert token
        return token, response.json()["token"]

    async def validate(self, token: str, *, as_token: str | None = None,
                       query: str = "") -> httpx.Response:
        return await self.client.get(
            f"/v3/auth/tokens{query}",
            headers={"X-Auth-Token": as_token or self.admin_token, "X-Subject-Token": token})

    async def post(self, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
        response = await self.client.post(path, json=body, headers=self.admin)
        assert response.status_code == status, response.text
        result: dict[str, Any] = response.json()
        return result

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        response = await self.client.get(path, params=params, headers=self.admin)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def put(self, path: str) -> None:
        response = await self.client.put(path, headers=self.admin)
        assert response.status_code == 204, response.text

    async def delete(self, path: str) -> None:
        response = await self.client.delete(path, headers=self.admin)
        assert response.status_code == 204, response.text

    # Fixtures within a test ---------------------------------------------------------------

    async def create_project(self, name: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"project": {"name": name or self.unique("project"), **fields}}
        return (await self.post("/v3/projects", body))["project"]

    async def create_user(self, name: str | None = None, *, password: str | None = None,
                          **fields: Any) -> dict[str, Any]:
        user: dict[str, Any] = {"name": name or self.unique("user"), **fields}
        if password is not None:
            self.client.secrets.add(password)
            user["password"] = password
        return (await self.post("/v3/users", {"user": user}))["user"]

    async def grant(self, project_id: str, user_id: str, role: str) -> None:
        await self.put(f"/v3/projects/{project_id}/users/{user_id}/roles/{self.roles[role]}")

    async def member(self, role: str = "member") -> Member:
        """A fresh user holding ``role`` on a fresh project, with a project-scoped token."""
        project = await self.create_project()
        password = self.new_password()
        user = await self.create_user(password=password)
        await self.grant(project["id"], user["id"], role)
        token, body = await self.issue(password_auth(
            user_id=user["id"], password=password, scope=project_scope(project["id"])))
        return Member(user=user, password=password, project=project, token=token, body=body)


@pytest.fixture
async def cloud(db_url: str, tmp_path: Path) -> AsyncIterator[Cloud]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=db_url,
        public_url=PUBLIC_URL,
        admin_password=ADMIN_PASSWORD,
        identity={"bcrypt_rounds": 4},
    )
    stack = Stack(settings)
    try:
        await run_bootstrap(stack)
        app = await root_app(stack, ["identity-api"])
        assert stack.identity is not None
        assert isinstance(stack.validator, CachingValidator)
        async with CheckedClient(transport=httpx.ASGITransport(app=app),
                                 base_url=BASE_URL) as client:
            response = await client.post("/v3/auth/tokens", json=password_auth(
                name="admin", domain={"name": "Default"}, password=ADMIN_PASSWORD,
                scope={"project": {"name": "admin", "domain": {"name": "Default"}}}))
            assert response.status_code == 201, response.text
            cloud = Cloud(client=client, stack=stack, runtime=stack.identity,
                          validator=stack.validator,
                          admin_token=response.headers["X-Subject-Token"],
                          admin_body=response.json()["token"])
            roles = (await cloud.get("/v3/roles"))["roles"]
            cloud.roles = {r["name"]: r["id"] for r in roles}
            yield cloud
    finally:
        await stack.aclose()
