"""What the dashboard's browser tests share: the cloud's admin through the APIs (what the
tests check the pages' results with), waiting, and logging a fresh browser context in.

The fixtures built on these live in ``conftest.py`` (``dashboard_cloud``,
``dashboard_admin``, ``dashboard_browser``, ``dashboard_page``), session-scoped, so every
dashboard browser module of a test process shares one ``stratus up`` and one chromium.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.e2e.cloud import Cloud

CHROMIUM = Path("/usr/bin/chromium")


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

    def reset_status(self, volume_id: str, status: str) -> None:
        self.post(f"/volume/v3/{self.project_id}/volumes/{volume_id}/action",
                  {"os-reset_status": {"status": status}})

    def network(self, collection: str, **params: str) -> list[dict[str, Any]]:
        body = self.http.get(f"/network/v2.0/{collection}", params=params).json()
        key = collection.replace("-", "_")
        return list(body[key])

    def identity(self, collection: str, **params: str) -> list[dict[str, Any]]:
        body = self.get_params(f"/identity/v3/{collection}", params)
        return list(body[collection])

    def get_params(self, path: str, params: dict[str, str]) -> Any:
        answer = self.http.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def image(self, name: str) -> dict[str, Any]:
        """An active image of 64 KiB of zeros."""
        image = self.post("/image/v2/images", {"name": name, "disk_format": "raw",
                                               "container_format": "bare"})
        self.http.put(f"/image/v2/images/{image['id']}/file", content=b"\0" * 65536,
                      headers={"Content-Type": "application/octet-stream"})
        return dict(image)

    def server(self, name: str) -> dict[str, Any]:
        """A server launched (fake hypervisor) and active, on the private network."""
        image = self.image(f"{name}-image")
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


@contextmanager
def logged_in(browser: Any, cloud: Cloud, user: str, password: str) -> Iterator[Any]:
    """A fresh context's page, logged in as ``user``; no script error may happen on its
    pages (a refusal's page answering its 4xx is meant, and the browser notes it as a
    console error; so is a request Chromium drops because the host's interfaces changed,
    which the kernel-network tests running beside it do: what the page then shows is
    checked by the test)."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" and not re.match(
        r"Failed to load resource: (the server responded with a status of 4\d\d"
        r"|net::ERR_NETWORK_CHANGED)", m.text)
        else None)
    opened.on("pageerror", lambda e: errors.append(str(e)))
    opened.goto(f"{cloud.url}/dashboard/login")
    opened.get_by_label("User name").fill(user)
    opened.get_by_label("Password").fill(password)
    opened.get_by_role("button", name="Log in").click()
    expect(opened).to_have_url(re.compile(r"/dashboard/instances$"))
    try:
        yield opened
        assert errors == [], "\n".join(errors)
    finally:
        context.close()
