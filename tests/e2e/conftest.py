"""Fixtures shared by the e2e modules."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import backend_unavailable
from tests.e2e.browser_netns import isolated_chromium
from tests.e2e.cloud import Cloud, base_env, free_port, libvirt_cloud
from tests.e2e.dashboard_browser import CHROMIUM, Admin, logged_in
from tests.realvm import guest_image, libvirt_ready


@pytest.fixture(scope="session")
def _realvm_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    """One ``stratus up --with-test-image`` (libvirt driver, real networking) for every
    real-guest CLI test of the session: starting it (identity bootstrap, the test image
    upload, the networks) is the same for each, so it is paid once. The test guest built
    once for the session is put in the data dir's cache (same key)."""
    libvirt_ready()
    image = guest_image()
    data = tmp_path_factory.mktemp("realvm-up") / "data"
    (data / "guest-image").mkdir(parents=True)
    shutil.copyfile(image, data / "guest-image" / image.name)
    with libvirt_cloud(data, ["up", "--with-test-image"]) as instance:
        yield instance


@pytest.fixture
def realvm_cloud(_realvm_up: Cloud) -> Iterator[Cloud]:
    """The session's real-guest cloud, running (started again if a test stopped or killed
    it), handed to one test; what servers, snapshots and key pairs the test left are deleted
    after it, so the next test starts from the same cloud (its names free)."""
    cloud = _realvm_up
    if cloud.process is None or cloud.process.poll() is not None:
        cloud.start(timeout=180)
    try:
        yield cloud
    finally:
        if cloud.process is None or cloud.process.poll() is not None:
            cloud.start(timeout=180)
        servers = [s["ID"] for s in cloud.openstack_json("server", "list", "--all-projects")]
        if servers:
            cloud.openstack("server", "delete", "--wait", *servers, check=False)
        for image in cloud.openstack_json("image", "list"):
            if image["Name"] != "stratus-test-guest":
                cloud.openstack("image", "delete", image["ID"], check=False)
        for keypair in cloud.openstack_json("keypair", "list"):
            cloud.openstack("keypair", "delete", keypair["Name"], check=False)


# The dashboard's browser tests: one cloud and one chromium for every module of a process.


@pytest.fixture(scope="session")
def dashboard_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    """One ``stratus up`` (fake hypervisor, network backend noop: the APIs and IPAM, no
    kernel work) with quick dashboard polls."""
    data = tmp_path_factory.mktemp("dashboard-pages") / "data"
    instance = Cloud(data, free_port(), base_env(STRATUS_DASHBOARD__POLL_INTERVAL="0.5",
                                                 STRATUS_DASHBOARD__POLL_MAX_INTERVAL="2"),
                     args=["up", "--network-backend", "noop"])
    instance.start(timeout=120)  # (a busy machine starts slowly)
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def dashboard_admin(dashboard_cloud: Cloud) -> Iterator[Admin]:
    made = Admin(dashboard_cloud)
    try:
        yield made
    finally:
        made.http.close()


@pytest.fixture(scope="module")
def dashboard_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's chromium under a sync Playwright, for the browser tests of one module: no
    longer, since while it runs the thread has a running event loop (every later test's
    ``asyncio.run`` would be refused), and one at a time (a second one is refused). It runs
    in a network namespace of its own (``browser_netns``), where the links the tests beside
    it make and remove cannot fail its requests with ``ERR_NETWORK_CHANGED``."""
    if not CHROMIUM.exists():
        backend_unavailable("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with isolated_chromium(CHROMIUM, tmp_path_factory.mktemp("chromium")) as chromium, \
            sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium))
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def dashboard_page(dashboard_browser: Any, dashboard_cloud: Cloud,
                   dashboard_admin: Admin) -> Iterator[Any]:
    """A fresh context logged in as admin; the admin's password never in the cloud's log."""
    with logged_in(dashboard_browser, dashboard_cloud, "admin",
                   dashboard_admin.password) as opened:
        yield opened
    assert dashboard_admin.password not in dashboard_cloud.log()
