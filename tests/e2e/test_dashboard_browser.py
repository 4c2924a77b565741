"""The dashboard in a real browser: Debian's chromium driven by Playwright against
``stratus up`` (fake hypervisor, slowed so a person, and this test, see BUILD).

Playwright never downloads a browser here (``playwright install`` is never run): it
launches ``/usr/bin/chromium``, which ``.ci/run`` installs. Screenshots of the pages go to
the test's ``tmp_path`` for a person to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import backend_unavailable
from tests.e2e.cloud import Cloud, running_cloud

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    # Each fake-driver step takes a second: the new row shows BUILD before ACTIVE, and a
    # stop shows its task before SHUTOFF.
    with running_cloud(tmp_path, STRATUS_COMPUTE__FAKE_LATENCY="1",
                       STRATUS_DASHBOARD__POLL_INTERVAL="0.5",
                       STRATUS_DASHBOARD__POLL_MAX_INTERVAL="2") as instance:
        yield instance


def _admin_password(cloud: Cloud) -> str:
    clouds = yaml.safe_load(cloud.clouds_yaml.read_text())
    return str(clouds["clouds"]["stratus"]["auth"]["password"])


def _upload_image(cloud: Cloud, password: str) -> None:
    with httpx.Client(base_url=cloud.url, timeout=30) as api:
        issued = api.post("/identity/v3/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
        headers = {"X-Auth-Token": issued.headers["X-Subject-Token"]}
        image = api.post("/image/v2/images", headers=headers, json={
            "name": "tiny-image", "disk_format": "raw", "container_format": "bare"}).json()
        uploaded = api.put(f"/image/v2/images/{image['id']}/file", content=b"\0" * 65536,
                           headers={**headers, "Content-Type": "application/octet-stream"})
        assert uploaded.status_code == 204, uploaded.text


def test_launch_watch_build_to_active_stop_start_and_log_out(
        cloud: Cloud, dashboard_browser: Any, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        backend_unavailable("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import Locator, expect

    password = _admin_password(cloud)
    _upload_image(cloud, password)
    # The session's chromium (conftest.py), shared with the other dashboard modules: a
    # second sync Playwright in the same process while one runs is refused.
    with nullcontext(dashboard_browser) as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            page.goto(f"{cloud.url}/dashboard/")
            expect(page).to_have_url(re.compile(r"/dashboard/login$"))
            page.get_by_label("User name").fill("admin")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(re.compile(r"/dashboard/instances$"))
            (session,) = [c for c in context.cookies() if c["name"] == "stratus_session"]
            assert session["httpOnly"] and session["sameSite"] == "Lax"
            assert page.evaluate("document.cookie") == ""  # nothing scripts can read

            page.get_by_role("link", name="Launch instance").click()
            expect(page.get_by_role("heading", name="Launch instance")).to_be_visible()
            page.screenshot(path=str(tmp_path / "launch.png"), full_page=True)
            page.get_by_label("Name").fill("web-1")
            for field, text in (("Image", "tiny-image"), ("Flavor", "m1.tiny:")):
                select = page.get_by_label(field)
                value = select.locator("option", has_text=text).get_attribute("value")
                select.select_option(value=value)
            page.get_by_label("Network").select_option(label="private")
            page.get_by_role("button", name="Launch").click()
            expect(page).to_have_url(re.compile(r"/dashboard/instances$"))

            page.wait_for_load_state("load")
            # From here on the page is never reloaded: the row changes in place.
            loads: list[str] = []
            page.on("load", lambda: loads.append(page.url))
            sent: list[str] = []  # what the page asked, to say why if it reloaded
            page.on("request", lambda r: sent.append(
                f"{r.method} {r.url} htmx={r.headers.get('hx-request')} "
                f"navigation={r.is_navigation_request()}"))
            row = page.locator("tr", has_text="web-1")
            status = row.locator(".state")
            expect(status).to_have_text("BUILD")
            page.screenshot(path=str(tmp_path / "instances-build.png"), full_page=True)
            expect(status).to_have_text("ACTIVE", timeout=60_000)
            expect(row).to_contain_text("private: 10.0.0.")
            page.screenshot(path=str(tmp_path / "instances.png"), full_page=True)

            def ready(label: str) -> Locator:
                """The row's button, once htmx has taken it over: until it has (the first
                20 ms after a swap) it is a plain form, which works too but reloads the
                page. A person never clicks that fast; a test does."""
                button = row.get_by_role("button", name=f"{label} web-1")
                expect(button).to_be_visible(timeout=60_000)
                page.wait_for_function(
                    "() => !document.querySelector('.htmx-added, .htmx-settling')")
                return button

            ready("Stop").click()
            expect(status).to_have_text("SHUTOFF", timeout=60_000)
            # By keyboard: the row's buttons are plain buttons in forms.
            ready("Start").focus()
            page.keyboard.press("Enter")
            expect(status).to_have_text("ACTIVE", timeout=60_000)
            assert loads == [] and not any("navigation=True" in r for r in sent), \
                "\n".join(sent)
            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            page.screenshot(path=str(tmp_path / "instances-phone.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 800})

            # Its detail page, with the console log.
            row.get_by_role("link", name="web-1").click()
            expect(page.get_by_role("heading", name="Console log")).to_be_visible()
            expect(page.locator("#console")).to_be_visible()
            assert errors == [], "\n".join(errors)

            page.get_by_role("button", name="Log out").click()
            expect(page).to_have_url(re.compile(r"/dashboard/login$"))
            # The old cookie, put back, names no session any more.
            context.add_cookies([{k: session[k] for k in (  # type: ignore[misc]
                "name", "value", "domain", "path", "httpOnly", "secure", "sameSite")}])
            page.goto(f"{cloud.url}/dashboard/instances")
            expect(page).to_have_url(re.compile(r"/dashboard/login$"))
        finally:
            context.close()
    assert password not in cloud.log()


def test_upload_an_image_with_progress_create_a_key_pair_and_see_the_overview(
        cloud: Cloud, dashboard_browser: Any, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        backend_unavailable("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import expect

    password = _admin_password(cloud)
    disk = tmp_path / "disk.raw"
    with disk.open("wb") as out:  # 20 MiB, not all zeros
        for n in range(20):
            out.write(bytes([n]) * (1 << 20))
    # The session's chromium (conftest.py), shared with the other dashboard modules: a
    # second sync Playwright in the same process while one runs is refused.
    with nullcontext(dashboard_browser) as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{cloud.url}/dashboard/login")
            page.get_by_label("User name").fill("admin")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(re.compile(r"/dashboard/instances$"))

            # The upload: the progress bar reaches 100%, then the image is active.
            page.get_by_role("link", name="Images").click()
            expect(page.get_by_role("heading", name="Upload an image")).to_be_visible()
            page.get_by_label("Name").fill("big-upload")
            page.get_by_label("Disk format").select_option("raw")
            page.get_by_label("File").set_input_files(str(disk))
            page.get_by_role("button", name="Upload").click()
            expect(page.locator("#upload-percent")).to_have_text("100%")
            assert page.locator("#upload-progress").evaluate("e => e.value") == 100
            expect(page.get_by_text("Upload complete.")).to_be_visible()
            page.screenshot(path=str(tmp_path / "images-uploaded.png"), full_page=True)
            page.get_by_role("link", name="Show the image list").click()
            row = page.locator("tr", has_text="big-upload")
            expect(row.locator(".state")).to_have_text("active")
            expect(row).to_contain_text("20.0 MiB")

            # A key pair: its private key shown once.
            page.get_by_role("link", name="Key pairs").click()
            page.get_by_label("Name").fill("laptop")
            page.get_by_role("button", name="Create key pair").click()
            secret = page.get_by_label("Private key of laptop")
            expect(secret).to_be_visible()
            assert "PRIVATE KEY" in secret.input_value()
            page.screenshot(path=str(tmp_path / "keypairs.png"), full_page=True)

            page.get_by_role("link", name="Overview").click()
            expect(page.get_by_role("heading", name="Compute")).to_be_visible()
            expect(page.locator("li.quota", has_text="Instances")).to_contain_text("0 of ")
            page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
            assert errors == [], "\n".join(errors)
        finally:
            context.close()
    assert password not in cloud.log()
