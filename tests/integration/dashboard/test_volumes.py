"""The volumes page through the ASGI app: one round of calls, rows in transition polled in
one request, the volume API's refusals shown beside the row or form they came from, an odd
id refused before it reaches an API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratus.core.config import DashboardSettings
from tests.integration.dashboard.conftest import UNITS, Deck, make_deck


@pytest.fixture
async def storage(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Deck]:
    # The volume API without a volume host (a new volume is put back to "creating").
    async for made in make_deck(tmp_path, sqlite_template, DashboardSettings(
            poll_interval=0.5, list_cache_ttl=0), units=[*UNITS, "volume-api"]):
        yield made


async def test_create_lists_a_polling_row_and_refusals_show_at_the_row(storage: Deck) -> None:
    deck = storage
    await deck.login()
    csrf = await deck.csrf()
    created = await deck.browser.post("/dashboard/volumes", data={
        "csrf_token": csrf, "name": "data-1", "size": "2", "source": "blank"})
    assert created.status_code == 303, created.text
    volumes = f"/volume/v3/{await _project(deck)}/volumes"
    listed = (await deck.api.get(f"{volumes}/detail", headers=deck.admin())).json()["volumes"]
    (volume,) = [v for v in listed if v["name"] == "data-1"]
    assert volume["size"] == 2
    reset = await deck.api.post(f"{volumes}/{volume['id']}/action", headers=deck.admin(),
                                json={"os-reset_status": {"status": "creating"}})
    assert reset.status_code == 202, reset.text

    deck.calls.clear()
    page = await deck.browser.get("/dashboard/volumes")
    assert page.status_code == 200
    # volumes, snapshots, servers, images: one round, whatever the number of rows.
    assert len(deck.calls) == 4, deck.calls.made
    row = re.search(rf'<tr id="volume-{volume["id"]}">.*?</tr>', page.text, re.S)
    assert row and "data-1" in row.group(0) and "2 GiB" in row.group(0)
    poller = re.search(r'id="row-poller"[^>]*hx-post="([^"]+)"', page.text)
    assert poller, "a creating volume polls"
    ids = re.findall(r'name="id" value="([^"]+)"', page.text)
    assert ids == [f"volume:{volume['id']}"]

    deck.calls.clear()
    polled = await deck.browser.post(poller.group(1).replace("&amp;", "&"),
                                     data={"id": ids}, headers={"X-CSRF-Token": csrf,
                                                                "HX-Request": "true"})
    assert polled.status_code == 200
    assert len(deck.calls) == 3, deck.calls.made
    assert f'id="volume-{volume["id"]}" hx-swap-oob="true"' in polled.text

    # A volume the API does not know: its 404 message at the row, not a 500 page.
    gone = await deck.browser.post("/dashboard/volumes/no-such-volume/extend",
                                   data={"csrf_token": csrf, "size": "x"})
    assert gone.status_code == 400 and "whole number" in gone.text
    refused = await deck.browser.post(f"/dashboard/volumes/{volume['id']}/extend",
                                      data={"csrf_token": csrf, "size": "1"})
    assert 400 <= refused.status_code < 500, refused.text
    message = re.search(rf'id="volume-{volume["id"]}-error">([^<]+)<', refused.text)
    assert message, refused.text[-3000:]

    # An id that would change the call (a query, a control character) is refused as a
    # 404 before anything is sent, never passed on nor a 500.
    deck.calls.clear()
    for odd in ("x%3Fall_tenants=1", "a%00b"):
        answer = await deck.browser.post(f"/dashboard/volumes/{odd}/delete",
                                         data={"csrf_token": csrf})
        assert answer.status_code == 404 and 'id="page-error"' in answer.text, answer.text
        shown = await deck.browser.get(f"/dashboard/instances/{odd}")
        assert shown.status_code == 404 and "no such resource" in shown.text
    assert not [c for c in deck.calls.made if c[0] == "DELETE" or "x?" in c[1]]


async def _project(deck: Deck) -> str:
    body = (await deck.api.get("/identity/v3/auth/tokens", headers={
        **deck.admin(), "X-Subject-Token": deck.admin_token})).json()["token"]
    project_id: str = body["project"]["id"]
    return project_id
