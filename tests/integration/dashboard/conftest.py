"""A whole in-process cloud (fake hypervisor) and the dashboard in front of it, with every
API call the dashboard makes counted by an httpx event hook."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from stratus.core.config import DashboardSettings, Settings
from stratus.dashboard.app import create_dashboard_app
from stratus.dashboard.sessions import store_for
from stratus.stack import Stack
from tests.integration.asgi import served_stack
from tests.integration.clouds import auth_body

ROOT = "http://test"
ADMIN_PASSWORD = "dashboard-tests-admin-pw"
UNITS = ["identity-api", "image-api", "compute-api", "conductor", "scheduler", "compute-agent",
         "network-api"]


@dataclass
class Calls:
    """The API calls the dashboard made: ``(method, path)`` each."""

    made: list[tuple[str, str]] = field(default_factory=list)

    async def hook(self, request: httpx.Request) -> None:
        self.made.append((request.method, request.url.path))

    def clear(self) -> None:
        self.made.clear()

    def __len__(self) -> int:
        return len(self.made)


@dataclass
class Deck:
    """The cloud's API (``api``, as admin) and the dashboard (``browser``, a cookie jar)."""

    api: httpx.AsyncClient
    browser: httpx.AsyncClient
    calls: Calls
    stack: Stack
    admin_token: str
    cloud_app: Any
    #: The dashboard's HTTP client towards the APIs (tests may swap its transport).
    api_http: httpx.AsyncClient
    #: The dashboard's session store (its entries as bytes, for tests that look inside).
    store: Any = None

    def admin(self, version: str | None = None) -> dict[str, str]:
        headers = {"X-Auth-Token": self.admin_token}
        if version:
            headers["OpenStack-API-Version"] = f"compute {version}"
        return headers

    async def login(self, user: str = "admin", password: str = ADMIN_PASSWORD,
                    domain: str = "Default") -> httpx.Response:
        page = await self.browser.get("/dashboard/login")
        assert page.status_code == 200, page.text
        return await self.browser.post("/dashboard/login", data={
            "csrf_token": form_token(page.text), "domain": domain, "user": user,
            "password": password})

    async def csrf(self) -> str:
        page = await self.browser.get("/dashboard/instances")
        assert page.status_code == 200, page.text
        return form_token(page.text)


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


async def make_deck(tmp_path: Path, sqlite_template: Path, options: DashboardSettings,
                    wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]
                    | None = None, units: list[str] | None = None) -> AsyncIterator[Deck]:
    db = tmp_path / "test.db"
    shutil.copyfile(sqlite_template, db)
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{db}",
                        public_url=ROOT, admin_password=ADMIN_PASSWORD,
                        identity={"bcrypt_rounds": 4}, network={"backend": "noop"},
                        compute={"fake_hosts": 1, "host": "node"})
    async with served_stack(settings, units or UNITS) as (stack, cloud_app):
        calls = Calls()
        inner: httpx.AsyncBaseTransport = httpx.ASGITransport(app=cloud_app)
        api_http = httpx.AsyncClient(transport=wrap(inner) if wrap else inner,
                                     event_hooks={"request": [calls.hook]})
        store = store_for(options)
        stack.exits.push_async_callback(store.aclose)
        dashboard = create_dashboard_app(options, api_http, f"{ROOT}/identity/v3",
                                         store=store)
        app = Starlette(routes=[Mount("/dashboard", app=dashboard), Mount("", app=cloud_app)])
        async with api_http, httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=ROOT) as browser, \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=cloud_app),
                                  base_url=ROOT) as api:
            token = (await api.post("/identity/v3/auth/tokens", json=auth_body(
                "admin", ADMIN_PASSWORD, "admin"))).headers["X-Subject-Token"]
            yield Deck(api, browser, calls, stack, token, cloud_app, api_http, store)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def memcached() -> AsyncIterator[str]:
    """A private memcached on a free loopback port (never the system's): its address."""
    program = shutil.which("memcached")
    if program is None:
        if os.environ.get("CI") == "true":
            pytest.fail("memcached is not installed (.ci/run installs it)")
        pytest.skip("memcached is not installed (apt-get install memcached)")
    for _ in range(5):  # another process may take the port between probe and bind
        port = _free_port()
        # As root memcached must be told whom to run as: itself (root), no one else.
        user = ["-u", "root"] if os.geteuid() == 0 else []
        proc = await asyncio.create_subprocess_exec(
            program, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16", "-t", "1",
            *user, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for _ in range(100):
            if proc.returncode is not None:
                break
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            break
        if proc.returncode is None:
            break
    else:
        pytest.fail("memcached did not start")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        await proc.wait()


@pytest.fixture
async def sqlite_template(_schema_templates: Any) -> Path:
    path: Path = await _schema_templates.sqlite()
    return path


@pytest.fixture
async def deck(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Deck]:
    # SQLite only: the dashboard is a client of the APIs; their databases are tested there.
    # No list cache: these tests count each page's calls (test_shared_sessions tests it).
    async for made in make_deck(tmp_path, sqlite_template, DashboardSettings(
            page_size=200, poll_interval=0.5, list_cache_ttl=0)):
        yield made


async def upload_image(deck: Deck, name: str = "tiny", size: int = 4096,
                       **extra: Any) -> str:
    created = await deck.api.post("/image/v2/images", headers=deck.admin(), json={
        "name": name, "disk_format": "raw", "container_format": "bare", **extra})
    assert created.status_code == 201, created.text
    image_id: str = created.json()["id"]
    upload = await deck.api.put(f"/image/v2/images/{image_id}/file", headers={
        **deck.admin(), "Content-Type": "application/octet-stream"}, content=b"\0" * size)
    assert upload.status_code == 204, upload.text
    return image_id
