"""Sessions in memcached: two dashboard apps (each its own memcached client and memory)
behind the same cookie share one session; memcached also keeps a project's flavor and
image lists a few seconds, never server status. A private memcached per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from stratus.core.config import DashboardSettings
from stratus.dashboard.app import create_dashboard_app
from stratus.dashboard.sessions import MemcachedStore, MemoryStore, SessionStore
from tests.integration.dashboard.conftest import ROOT, Deck, make_deck, upload_image


@pytest.fixture
async def shared(tmp_path: Path, sqlite_template: Path, memcached: str) -> AsyncIterator[Deck]:
    async for made in make_deck(tmp_path, sqlite_template, DashboardSettings(
            session_store="memcached", memcached=memcached, list_cache_ttl=30)):
        yield made


async def _other_dashboard(deck: Deck, store: SessionStore) -> httpx.AsyncClient:
    """A second dashboard app in front of the same cloud, with the first one's cookies."""
    options = DashboardSettings(session_store="memcached", list_cache_ttl=30)
    app = create_dashboard_app(options, deck.api_http, f"{ROOT}/identity/v3", store=store)
    root = Starlette(routes=[Mount("/dashboard", app=app), Mount("", app=deck.cloud_app)])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=root), base_url=ROOT,
                             cookies=deck.browser.cookies)


async def test_two_dashboards_share_a_session_through_memcached(
        shared: Deck, memcached: str) -> None:
    assert (await shared.login()).status_code == 303
    assert (await shared.browser.get("/dashboard/instances")).status_code == 200

    # A dashboard with sessions in its own memory does not know the cookie ...
    lonely = MemoryStore()
    async with await _other_dashboard(shared, lonely) as other:
        missing = await other.get("/dashboard/instances")
        assert missing.status_code == 303, missing.text
    # ... one on the same memcached does, and its logout ends the session for both.
    store = MemcachedStore(memcached)
    try:
        async with await _other_dashboard(shared, store) as other:
            page = await other.get("/dashboard/instances")
            assert page.status_code == 200, page.text
            assert "admin" in page.text
            token = await shared.csrf()
            out = await other.post("/dashboard/logout", data={"csrf_token": token})
            assert out.status_code == 303, out.text
        gone = await shared.browser.get("/dashboard/instances")
        assert gone.status_code == 303
        assert gone.headers["location"] == "/dashboard/login"
    finally:
        await store.aclose()


async def test_flavor_and_image_lists_are_shared_a_few_seconds_but_status_never(
        shared: Deck, memcached: str) -> None:
    await upload_image(shared, name="cached-image")
    assert (await shared.login()).status_code == 303
    shared.calls.clear()
    first = await shared.browser.get("/dashboard/launch")
    assert first.status_code == 200 and "cached-image" in first.text
    assert ("GET", "/compute/v2.1/flavors/detail") in shared.calls.made
    assert ("GET", "/image/v2/images") in shared.calls.made

    # The other dashboard process finds both lists in memcached.
    store = MemcachedStore(memcached)
    try:
        async with await _other_dashboard(shared, store) as other:
            shared.calls.clear()
            again = await other.get("/dashboard/launch")
            assert again.status_code == 200 and "cached-image" in again.text
            assert "m1.tiny" in again.text
            assert ("GET", "/compute/v2.1/flavors/detail") not in shared.calls.made
            assert ("GET", "/image/v2/images") not in shared.calls.made
            # The instances table: image names from the cache after its first page, the
            # servers (their status) asked every time.
            await other.get("/dashboard/instances")
            shared.calls.clear()
            listed = await other.get("/dashboard/instances")
            assert listed.status_code == 200
            assert shared.calls.made == [("GET", "/compute/v2.1/servers/detail")]
    finally:
        await store.aclose()


async def test_an_unreachable_memcached_is_a_503_naming_it(shared: Deck) -> None:
    store = MemcachedStore("127.0.0.1:9")  # discard port: nothing listens
    try:
        async with await _other_dashboard(shared, store) as other:
            other.cookies.set("stratus_session", "some-cookie")
            page = await other.get("/dashboard/instances")
            assert page.status_code == 503
            assert "session store is unavailable" in page.text
            assert "127.0.0.1:9" in page.text
    finally:
        await store.aclose()


async def test_the_memcached_store_keeps_bytes_for_their_time_to_live(memcached: str) -> None:
    store = MemcachedStore(memcached)
    try:
        assert await store.load("sess:none") is None
        await store.save("sess:a", b"\x00session\xff", 60)
        assert await store.load("sess:a") == b"\x00session\xff"
        # Beyond 30 days memcached reads a time to live as a date (long past): clamped,
        # the entry stays.
        await store.save("sess:long", b"kept", 90 * 24 * 3600)
        assert await store.load("sess:long") == b"kept"
        await store.delete("sess:a")
        assert await store.load("sess:a") is None
        with pytest.raises(ValueError, match="host:port"):
            MemcachedStore("no-port")
    finally:
        await store.aclose()
