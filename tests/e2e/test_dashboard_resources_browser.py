"""The resource pages in a real browser (Debian's chromium driven by Playwright) against
one ``stratus up`` (fake hypervisor, network backend noop: the API and IPAM, no kernel
work): volumes, networks, routers, floating IPs, security groups, one flow each, every
result checked through the API. The cloud and the browser are shared by the module's tests;
each test logs in with a fresh browser context.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import backend_unavailable
from tests.e2e.cloud import Cloud, base_env, free_port

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    data = tmp_path_factory.mktemp("dashboard-resources") / "data"
    instance = Cloud(data, free_port(), base_env(STRATUS_DASHBOARD__POLL_INTERVAL="0.5",
                                                 STRATUS_DASHBOARD__POLL_MAX_INTERVAL="2"),
                     args=["up", "--network-backend", "noop"])
    instance.start(timeout=120)  # (a busy machine starts slowly)
    try:
        yield instance
    finally:
        instance.stop()


class Admin:
    """The cloud's APIs as its admin (what the tests check the pages' results with)."""

    def __init__(self, cloud: Cloud) -> None:
        clouds = yaml.safe_load(cloud.clouds_yaml.read_text())
        self.password = str(clouds["clouds"]["stratus"]["auth"]["password"])
        self.http = httpx.Client(base_url=cloud.url, timeout=30)
        issued = self.http.post("/identity/v3/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"}, "password": self.password}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
        token = issued.json()["token"]
        self.project_id = token["project"]["id"]
        self.http.headers["X-Auth-Token"] = issued.headers["X-Subject-Token"]
        self.http.headers["OpenStack-API-Version"] = "compute 2.47"

    def get(self, path: str) -> Any:
        answer = self.http.get(path)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def post(self, path: str, body: Any) -> Any:
        answer = self.http.post(path, json=body)
        assert answer.status_code < 300, answer.text
        return answer.json() if answer.content else None

    def volumes(self) -> dict[str, Any]:
        listed = self.get(f"/volume/v3/{self.project_id}/volumes/detail")["volumes"]
        return {v["name"]: v for v in listed}

    def network(self, collection: str, **params: str) -> list[dict[str, Any]]:
        body = self.http.get(f"/network/v2.0/{collection}", params=params).json()
        key = collection.replace("-", "_")
        return list(body[key])

    def server(self, name: str) -> dict[str, Any]:
        """A server launched (fake hypervisor) and active, on the private network."""
        image = self.post("/image/v2/images", {"name": f"{name}-image", "disk_format": "raw",
                                               "container_format": "bare"})
        self.http.put(f"/image/v2/images/{image['id']}/file", content=b"\0" * 65536,
                      headers={"Content-Type": "application/octet-stream"})
        (private,) = self.network("networks", name="private")
        flavor = min(self.get("/compute/v2.1/flavors/detail")["flavors"],
                     key=lambda f: f["ram"])
        server = self.post("/compute/v2.1/servers", {"server": {
            "name": name, "imageRef": image["id"], "flavorRef": flavor["id"],
            "networks": [{"uuid": private["id"]}]}})["server"]
        until(lambda: self.get(f"/compute/v2.1/servers/{server['id']}")["server"]["status"]
              == "ACTIVE", f"{name} ACTIVE")
        return dict(server)


def until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


@pytest.fixture(scope="module")
def admin(cloud: Cloud) -> Iterator[Admin]:
    made = Admin(cloud)
    try:
        yield made
    finally:
        made.http.close()


@pytest.fixture(scope="module")
def browser(cloud: Cloud) -> Iterator[Any]:
    if not CHROMIUM.exists():
        backend_unavailable("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, cloud: Cloud, admin: Admin, tmp_path: Path) -> Iterator[Any]:
    """A fresh context logged in as admin; no script error may happen on its pages (a
    refusal's page answering its 4xx is meant, and the browser notes it as a console error)."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" and not re.match(
        r"Failed to load resource: the server responded with a status of 4\d\d", m.text)
        else None)
    opened.on("pageerror", lambda e: errors.append(str(e)))
    opened.goto(f"{cloud.url}/dashboard/login")
    opened.get_by_label("User name").fill("admin")
    opened.get_by_label("Password").fill(admin.password)
    opened.get_by_role("button", name="Log in").click()
    expect(opened).to_have_url(re.compile(r"/dashboard/instances$"))
    try:
        yield opened
        assert errors == [], "\n".join(errors)
    finally:
        context.close()
    assert admin.password not in cloud.log()


def test_volumes_create_attach_extend_snapshot_and_delete(page: Any, admin: Admin,
                                                          tmp_path: Path) -> None:
    from playwright.sync_api import expect

    server = admin.server("vol-host")
    page.get_by_role("link", name="Volumes").click()
    expect(page.get_by_role("heading", name="Create a volume")).to_be_visible()
    page.get_by_label("Name", exact=True).fill("data-1")
    page.get_by_label("Size (GiB)").fill("1")
    page.get_by_role("button", name="Create volume").click()
    row = page.locator("tr", has_text="data-1")
    page.wait_for_load_state("load")
    # From here until the next form the status changes in place, without a reload.
    loads: list[str] = []
    page.on("load", lambda: loads.append(page.url))
    expect(row.locator(".state")).to_have_text("available", timeout=60_000)
    assert loads == []
    assert admin.volumes()["data-1"]["size"] == 1

    row.get_by_label("Attach data-1 to").select_option(label="vol-host")
    row.get_by_role("button", name="Attach data-1").click()
    expect(row.locator(".state")).to_have_text("in-use", timeout=60_000)
    expect(row).to_contain_text("vol-host on /dev/vdb")
    (attached,) = admin.volumes()["data-1"]["attachments"]
    assert attached["server_id"] == server["id"]
    page.screenshot(path=str(tmp_path / "volumes.png"), full_page=True)

    # The volume API's refusal is said at the row, not as an error page.
    row.get_by_label("New size of data-1 (GiB)").fill("1")
    row.get_by_role("button", name="Extend data-1").click()
    expect(row.locator(".error")).to_be_visible()
    assert admin.volumes()["data-1"]["size"] == 1

    row.get_by_role("button", name="Detach data-1 from vol-host").click()
    expect(row.locator(".state")).to_have_text("available", timeout=60_000)
    row.get_by_label("New size of data-1 (GiB)").fill("2")
    row.get_by_role("button", name="Extend data-1").click()
    expect(row.locator(".state")).to_have_text("available", timeout=60_000)
    expect(row).to_contain_text("2 GiB")
    assert admin.volumes()["data-1"]["size"] == 2

    page.get_by_label("Snapshot name").fill("data-1-snap")
    page.get_by_role("button", name="Create snapshot").click()
    snapshot = page.locator("#snapshots tr", has_text="data-1-snap")
    expect(snapshot.locator(".state")).to_have_text("available", timeout=60_000)
    snapshots = admin.get(f"/volume/v3/{admin.project_id}/snapshots/detail")["snapshots"]
    assert [(s["name"], s["volume_id"]) for s in snapshots] == [
        ("data-1-snap", admin.volumes()["data-1"]["id"])]
    snapshot.get_by_role("button", name="Delete snapshot data-1-snap").click()
    expect(snapshot).to_have_count(0, timeout=60_000)
    page.get_by_role("button", name="Delete volume data-1").click()
    expect(row).to_have_count(0, timeout=60_000)
    until(lambda: "data-1" not in admin.volumes(), "data-1 deleted")
