"""In-process test clouds: units built by ``stratus.units`` as ``stratus up`` builds them, one
ASGI app, an HTTP client into it, and an admin logged in.

``CloudStarter`` starts as many clouds as a test asks for (each its own data directory on the
test's database) and closes them all at its end; ``TestCloud`` is what a started cloud offers
every service's tests: the client, the stack, the admin's token and the role ids, and fresh
projects with a user of a given role.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from stratus.core.config import Settings
from stratus.stack import Stack
from stratus.units import root_app, run_bootstrap
from tests.integration.asgi import LateASGITransport

ROOT = "http://test"


def auth_body(name: str, password: str, project: str) -> dict[str, Any]:
    """A password authentication scoped to ``project`` (users and projects in Default)."""
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
class TestCloud:
    __test__ = False  # not a test class, whatever pytest makes of its name

    client: httpx.AsyncClient
    stack: Stack
    settings: Settings
    admin: Who = field(default_factory=lambda: Who("", "", ""))
    roles: dict[str, str] = field(default_factory=dict)

    async def token(self, name: str, password: str, project: str) -> Who:
        response = await self.client.post("/identity/v3/auth/tokens",
                                          json=auth_body(name, password, project))
        assert response.status_code == 201, response.text
        body = response.json()["token"]
        return Who(response.headers["X-Subject-Token"], body["project"]["id"],
                   body["user"]["id"])

    async def project(self, role: str = "member") -> Who:
        """A fresh project with a user holding ``role`` on it, logged in."""
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


CloudT = TypeVar("CloudT", bound=TestCloud)


class CloudStarter:
    """Starts in-process clouds for one test on its database; ``aclose`` stops them all."""

    def __init__(self, db_url: str, tmp_path: Path, admin_password: str) -> None:
        self.db_url = db_url
        self.tmp_path = tmp_path
        self.admin_password = admin_password
        self._stacks: list[Stack] = []
        self._clients: list[httpx.AsyncClient] = []

    async def start(self, kind: type[CloudT], units: tuple[str, ...], bus_url: str,
                    **settings: Any) -> CloudT:
        """A cloud of ``kind`` running ``units``, the admin logged in on project admin."""
        config = Settings(data_dir=self.tmp_path / f"data{len(self._stacks)}",
                          database_url=self.db_url, public_url=ROOT,
                          admin_password=self.admin_password, bus_url=bus_url,
                          identity={"bcrypt_rounds": 4}, **settings)
        transport = LateASGITransport()
        stack = Stack(config, http_transport=transport)
        self._stacks.append(stack)
        await run_bootstrap(stack)
        app = await root_app(stack, list(units))
        transport.app = app
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ROOT,
                                   timeout=60)
        self._clients.append(client)
        cloud = kind(client, stack, config)
        cloud.admin = await cloud.token("admin", self.admin_password, "admin")
        roles = (await client.get("/identity/v3/roles",
                                  headers=cloud.admin.headers)).json()["roles"]
        cloud.roles = {r["name"]: r["id"] for r in roles}
        return cloud

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
        for stack in self._stacks:
            await stack.aclose()
