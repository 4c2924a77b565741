"""The instance detail page through the ASGI app: the launch trace (the compute API's admin
route, as the seeds' step table) for an admin, starting at the dashboard when the launch
came from it, and nothing of it for a member of the same project (the attached volumes:
tests/unit/test_dashboard_instance_parts.py, and the resource pages' browser test)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stratus.core import trace_table
from stratus.core.config import DashboardSettings
from stratus.core.http import TracingTransport
from stratus.core.spanstore import SpanStore, SpanStoreExporter
from tests.integration.dashboard.conftest import Deck, make_deck, upload_image


async def _booted(deck: Deck) -> str:
    image_id = await upload_image(deck)
    created = await deck.api.post("/compute/v2.1/servers", headers=deck.admin("2.47"), json={
        "server": {"name": "traced", "imageRef": image_id, "flavorRef": "1",
                   "networks": "none"}})
    assert created.status_code == 202, created.text
    server_id: str = created.json()["server"]["id"]
    for _ in range(300):
        server = (await deck.api.get(f"/compute/v2.1/servers/{server_id}",
                                     headers=deck.admin())).json()["server"]
        if server["status"] == "ACTIVE":
            return server_id
        assert server["status"] == "BUILD", server
        await asyncio.sleep(0.05)
    raise AssertionError("the server never became ACTIVE")


async def _member_of_admin_project(deck: Deck) -> None:
    admin = deck.admin()
    token = (await deck.api.get("/identity/v3/auth/tokens", headers={
        **admin, "X-Subject-Token": deck.admin_token})).json()["token"]
    user = (await deck.api.post("/identity/v3/users", headers=admin, json={
        "user": {"name": "erin", "password": "erin-pw-1234",
                 "default_project_id": token["project"]["id"]}})).json()["user"]
    roles = (await deck.api.get("/identity/v3/roles?name=member", headers=admin)).json()
    granted = await deck.api.put(
        f"/identity/v3/projects/{token['project']['id']}/users/{user['id']}/roles/"
        f"{roles['roles'][0]['id']}", headers=admin)
    assert granted.status_code == 204, granted.text


async def test_an_admin_sees_the_launch_trace_and_a_member_nothing_of_it(
        deck: Deck, span_exporter: InMemorySpanExporter) -> None:
    server_id = await _booted(deck)
    await asyncio.sleep(0.1)  # the agent's handler ends just after the ACTIVE commit
    # As each process's exporter does: the finished spans into this host's span store.
    store = SpanStore(deck.stack.settings.data_dir)
    SpanStoreExporter(store).export(span_exporter.get_finished_spans())
    store.close()

    assert (await deck.login()).status_code == 303
    deck.calls.clear()
    page = await deck.browser.get(f"/dashboard/instances/{server_id}")
    assert page.status_code == 200, page.text
    assert ("GET", f"/compute/v2.1/os-stratus-trace/{server_id}") in deck.calls.made
    table = re.search(r'<table id="launch-trace">.*?</table>', page.text, re.S)
    assert table, page.text
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows[1:]]
    boot = next(c for c in cells if c[2] == "POST /v2.1/servers")
    # step, from → to, what, unit@host, offset, duration, outcome
    assert boot[0] == "4,7" and boot[1] == "client → compute-api"
    assert boot[3].startswith("compute-api@") and boot[6] == "202"
    assert float(boot[4]) >= 0 and float(boot[5]) > 0
    assert any(c[0] == "43-44" and c[3].startswith("compute-agent@") for c in cells), cells
    assert 'role="alert"' not in page.text

    # A member of the same project: the same page, no trace section, no call, no error.
    await _member_of_admin_project(deck)
    await deck.browser.post("/dashboard/logout", data={"csrf_token": await deck.csrf()})
    assert (await deck.login("erin", "erin-pw-1234")).status_code == 303
    deck.calls.clear()
    shown = await deck.browser.get(f"/dashboard/instances/{server_id}")
    assert shown.status_code == 200, shown.text
    assert "traced" in shown.text and "Launch trace" not in shown.text
    assert 'role="alert"' not in shown.text
    assert not any("os-stratus-trace" in path for _, path in deck.calls.made)


async def test_an_admin_without_spans_is_told_so_in_the_section(deck: Deck) -> None:
    server_id = await _booted(deck)  # no span exported into the store
    assert (await deck.login()).status_code == 303
    page = await deck.browser.get(f"/dashboard/instances/{server_id}")
    assert page.status_code == 200
    section = re.search(r'<section aria-labelledby="trace-title">.*?</section>', page.text,
                        re.S)
    assert section and f"No spans of {server_id}" in section.group(0)
    assert 'role="alert"' not in page.text  # not a banner: the rest of the page is fine



async def test_a_launch_from_the_dashboard_is_traced_from_the_dashboard(
        tmp_path: Path, sqlite_template: Path, span_exporter: InMemorySpanExporter) -> None:
    # The dashboard's calls through the same tracing transport as in `stratus up`.
    async for deck in make_deck(tmp_path, sqlite_template, DashboardSettings(list_cache_ttl=0),
                                wrap=TracingTransport):
        image_id = await upload_image(deck)
        assert (await deck.login()).status_code == 303
        launched = await deck.browser.post("/dashboard/launch", data={
            "csrf_token": await deck.csrf(), "name": "from-the-dashboard", "image": image_id,
            "flavor": "1", "network": "none", "key_name": "", "count": "1"})
        assert launched.status_code == 303, launched.text
        listed = (await deck.api.get("/compute/v2.1/servers", headers=deck.admin())).json()
        (server_id,) = [s["id"] for s in listed["servers"] if s["name"] == "from-the-dashboard"]
        store = SpanStore(deck.stack.settings.data_dir)
        SpanStoreExporter(store).export(span_exporter.get_finished_spans())
        rows = trace_table.rows_of(store, server_id)
        store.close()
        first = rows[0]
        assert (first.source, first.target, first.unit, first.what) == (
            "client", "dashboard", "dashboard", "POST /dashboard/launch"), rows[:3]
        assert first.outcome == "303"
        boot = next(r for r in rows if r.unit == "compute-api" and r.what == "POST /v2.1/servers")
        assert (boot.source, boot.step) == ("dashboard", "4,7")
        assert boot.trace_id == first.trace_id
        assert not any(r.unit.endswith("POST-api") or r.source == "POST-api" for r in rows)
