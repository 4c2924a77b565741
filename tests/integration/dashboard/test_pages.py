"""The dashboard through its ASGI app, in front of a whole in-process cloud (fake
hypervisor), with an httpx event hook counting the API calls each page makes."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, update

from stratus.compute.models import Instance
from stratus.core.config import DashboardSettings
from tests.integration.dashboard.conftest import (
    ADMIN_PASSWORD,
    Deck,
    form_token,
    make_deck,
    upload_image,
)


async def _whoami(deck: Deck) -> tuple[str, str]:
    body = (await deck.api.get("/identity/v3/auth/tokens", headers={
        **deck.admin(), "X-Subject-Token": deck.admin_token})).json()["token"]
    return body["project"]["id"], body["user"]["id"]


async def _servers(deck: Deck, count: int, *, vm_state: str = "active",
                   image_ref: str = "") -> list[str]:
    """``count`` servers of the admin project straight into the database (fast)."""
    project_id, user_id = await _whoami(deck)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    rows = [{"uuid": str(uuid.uuid4()), "display_name": f"srv-{n:03d}", "hostname": "srv",
             "project_id": project_id, "user_id": user_id, "reservation_id": "r-dash",
             "flavor_id": "1", "image_ref": image_ref, "vm_state": vm_state,
             "flavor": {"name": "m1.tiny", "vcpus": 1, "ram": 512, "disk": 1},
             "network_info": [{"network_name": "private", "address": "fa:16:3e:00:00:01",
                               "ips": [{"address": f"10.0.{n // 250}.{n % 250 + 2}",
                                        "version": 4}]}],
             "created_at": start + dt.timedelta(seconds=n),
             "updated_at": start + dt.timedelta(seconds=n)} for n in range(count)]
    runtime = deck.stack.compute
    assert runtime is not None
    async with runtime.service() as svc:
        await svc.session.execute(insert(Instance), rows)
    return [r["uuid"] for r in rows]


async def _set_state(deck: Deck, server_id: str, **values: Any) -> None:
    runtime = deck.stack.compute
    assert runtime is not None
    async with runtime.service() as svc:
        await svc.session.execute(update(Instance).where(Instance.uuid == server_id).values(
            updated_at=dt.datetime.now(dt.UTC), **values))


def _poll_of(html: str) -> tuple[str, list[str]]:
    """The poller's URL and the ids of the rows in transition, as htmx would send them."""
    found = re.search(r'id="poller"[^>]*hx-post="([^"]+)"', html)
    assert found, "no poller"
    url = found.group(1).replace("&amp;", "&")
    ids = re.findall(r'<input type="hidden" name="id" value="([^"]+)">', html)
    return url, ids


# Sessions ---------------------------------------------------------------------------------


async def test_login_sets_an_opaque_httponly_cookie_and_no_page_holds_the_token(
        deck: Deck) -> None:
    image_id = await upload_image(deck)
    (server_id,) = await _servers(deck, 1, image_ref=image_id)
    response = await deck.login()
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/dashboard/instances"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("stratus_session=")
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    assert "secure" not in cookie.lower()  # plain http here
    assert "path=/dashboard" in cookie.lower()
    session_cookie = deck.browser.cookies["stratus_session"]
    assert len(session_cookie) >= 40

    # The session's token: the only live one of this login (the dashboard's calls carry it).
    seen: list[str] = []
    deck.api_http.event_hooks["request"].append(
        lambda request: _record(seen, request.headers.get("X-Auth-Token")))
    pages = []
    for path in ("/dashboard/instances", "/dashboard/launch",
                 f"/dashboard/instances/{server_id}",
                 f"/dashboard/instances/{server_id}/console",
                 f"/dashboard/instances/{server_id}/summary", "/dashboard/login"):
        page = await deck.browser.get(path, follow_redirects=True)
        assert page.status_code == 200, (path, page.text)
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-frame-options"] == "DENY"
        pages.append(page)
    token = seen[0]
    assert token and set(seen) == {token}
    assert token != session_cookie
    for page in pages:
        assert token not in page.text
        assert all(token not in value for value in page.headers.values())
    assert "srv-000" in pages[0].text and "tiny" in pages[0].text


async def _record(seen: list[str], token: str | None) -> None:
    if token:
        seen.append(token)


async def test_csrf_is_refused_without_the_token(deck: Deck) -> None:
    (server_id,) = await _servers(deck, 1)
    # The login form too: without its pre-login cookie's token, no login.
    refused = await deck.browser.post("/dashboard/login", data={
        "domain": "Default", "user": "admin", "password": ADMIN_PASSWORD})
    assert refused.status_code == 403
    assert "stratus_session" not in deck.browser.cookies
    assert (await deck.login()).status_code == 303
    token = await deck.csrf()
    deck.calls.clear()
    for headers, data in (({}, {}), ({"X-CSRF-Token": "forged"}, {}),
                          ({}, {"csrf_token": "forged"})):
        answer = await deck.browser.post(f"/dashboard/instances/{server_id}/stop",
                                         headers=headers, data=data)
        assert answer.status_code == 403, answer.text
        assert "expired" in answer.text
    launch = await deck.browser.post("/dashboard/launch", data={"name": "x", "count": "1"})
    assert launch.status_code == 403
    logout = await deck.browser.post("/dashboard/logout")
    assert logout.status_code == 403
    assert len(deck.calls) == 0  # nothing reached the APIs
    # With the token (header, as htmx sends it), the action goes through.
    done = await deck.browser.post(f"/dashboard/instances/{server_id}/stop",
                                   headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert done.status_code == 200, done.text
    assert ("POST", f"/compute/v2.1/servers/{server_id}/action") in deck.calls.made


async def test_logout_revokes_the_token_and_the_old_cookie_is_refused(deck: Deck) -> None:
    assert (await deck.login()).status_code == 303
    old_cookie = deck.browser.cookies["stratus_session"]
    token = await deck.csrf()
    seen: list[str] = []
    deck.api_http.event_hooks["request"].append(
        lambda request: _record(seen, request.headers.get("X-Auth-Token")))
    await deck.browser.get("/dashboard/instances")
    session_token = seen[-1]
    out = await deck.browser.post("/dashboard/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
    assert ("DELETE", "/identity/v3/auth/tokens") in deck.calls.made
    # The token is revoked at the identity service.
    check = await deck.api.get("/identity/v3/auth/tokens", headers={
        **deck.admin(), "X-Subject-Token": session_token})
    assert check.status_code == 404, check.text
    # The old cookie names no session: to the login page; an htmx request gets a 401.
    deck.browser.cookies.clear()
    replay = await deck.browser.get("/dashboard/instances",
                                    headers={"Cookie": f"stratus_session={old_cookie}"})
    assert replay.status_code == 303 and replay.headers["location"] == "/dashboard/login"
    replay = await deck.browser.post("/dashboard/instances/poll",
                                     headers={"Cookie": f"stratus_session={old_cookie}",
                                              "X-CSRF-Token": token, "HX-Request": "true"})
    assert replay.status_code in (401, 403)


async def test_wrong_password_is_said_at_the_form(deck: Deck) -> None:
    answer = await deck.login(password="wrong")
    assert answer.status_code == 401
    assert "user name or password is wrong" in answer.text
    assert "stratus_session" not in deck.browser.cookies


async def test_project_switch_rescopes_and_starts_a_new_session(deck: Deck) -> None:
    admin = deck.admin()
    project = (await deck.api.post("/identity/v3/projects", headers=admin, json={
        "project": {"name": "second"}})).json()["project"]
    roles = (await deck.api.get("/identity/v3/roles?name=admin", headers=admin)).json()
    _, user_id = await _whoami(deck)
    grant = await deck.api.put(f"/identity/v3/projects/{project['id']}/users/{user_id}/roles/"
                               f"{roles['roles'][0]['id']}", headers=admin)
    assert grant.status_code == 204
    await _servers(deck, 2)  # in project admin
    assert (await deck.login()).status_code == 303
    old_cookie = deck.browser.cookies["stratus_session"]
    page = await deck.browser.get("/dashboard/instances")
    assert "srv-001" in page.text and ">second</option>" in page.text
    switched = await deck.browser.post("/dashboard/project", data={
        "csrf_token": form_token(page.text), "project": project["id"]})
    assert switched.status_code == 303, switched.text
    assert deck.browser.cookies["stratus_session"] != old_cookie
    page = await deck.browser.get("/dashboard/instances")
    assert "Servers of project" not in page.text and "No instances yet" in page.text
    assert 'selected>second</option>' in page.text
    deck.browser.cookies.clear()
    replay = await deck.browser.get("/dashboard/instances",
                                    headers={"Cookie": f"stratus_session={old_cookie}"})
    assert replay.status_code == 303


# The instances table ----------------------------------------------------------------------


async def test_instances_page_of_200_servers_is_two_calls_and_a_poll_is_one(
        deck: Deck) -> None:
    image_id = await upload_image(deck, name="cirros")
    ids = await _servers(deck, 200, image_ref=image_id)
    building = ids[:3]
    for server_id in building:
        await _set_state(deck, server_id, vm_state="building", task_state="spawning")
    # changes-since is at one second's precision, a second early: let these changes fall
    # before the page's window, so the first poll has nothing new.
    await asyncio.sleep(2.1)
    assert (await deck.login()).status_code == 303
    token = await deck.csrf()

    deck.calls.clear()
    page = await deck.browser.get("/dashboard/instances")
    assert page.status_code == 200
    assert sorted(deck.calls.made) == [("GET", "/compute/v2.1/servers/detail"),
                                       ("GET", "/image/v2/images")]
    assert page.text.count('<tr id="server-') == 200
    assert page.text.count(">cirros</td>") == 200
    assert "m1.tiny" in page.text and "private: 10.0.0.2" in page.text
    url, watched = _poll_of(page.text)
    assert sorted(watched) == sorted(building)

    # Nothing changed: one call, no cells, a poller that waits longer.
    deck.calls.clear()
    poll = await deck.browser.post(url, data={"id": watched},
                                   headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert poll.status_code == 200, poll.text
    assert deck.calls.made == [("GET", "/compute/v2.1/servers/detail")]
    assert 'hx-swap-oob' not in poll.text.replace('id="poller"', "")
    assert 'data-delay="0.8"' in poll.text  # 0.5 s times 1.5, rounded
    # One server becomes active, another is deleted: their cells are swapped or the row
    # removed; the third still polls.
    await _set_state(deck, building[0], vm_state="active", task_state=None)
    await _set_state(deck, building[1], vm_state="deleted", task_state=None,
                     deleted_at=dt.datetime.now(dt.UTC))
    url, _ = _poll_of(poll.text)
    deck.calls.clear()
    poll = await deck.browser.post(url, data={"id": watched},
                                   headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert len(deck.calls) == 1
    assert re.search(rf'<td data-label="Status" id="status-{building[0]}" class="status" '
                     r'hx-swap-oob="true">\s*<span class="state state-active">ACTIVE</span>',
                     poll.text), poll.text
    assert f'<tr id="server-{building[1]}" hx-swap-oob="delete">' in poll.text
    assert f'id="status-{building[2]}"' not in poll.text  # unchanged: not swapped
    assert 'data-delay="0.5"' in poll.text  # something changed: back to the first interval
    # The last one settles: the poll answers no poller at all.
    await _set_state(deck, building[2], vm_state="stopped", task_state=None)
    url, _ = _poll_of(poll.text)
    poll = await deck.browser.post(url, data={"id": [building[2]]},
                                   headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert "SHUTOFF" in poll.text
    assert not re.search(r'id="poller"[^>]*hx-post', poll.text)  # no poller any more


async def test_a_failed_service_is_a_banner_and_the_rest_renders(
        tmp_path: Path, sqlite_template: Path) -> None:
    class NoImages(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.startswith("/image/"):
                raise httpx.ConnectError("refused", request=request)
            return await self.inner.handle_async_request(request)

    async for deck in make_deck(tmp_path, sqlite_template, DashboardSettings(),
                                wrap=NoImages):
        await _servers(deck, 2, image_ref=str(uuid.uuid4()))
        assert (await deck.login()).status_code == 303
        page = await deck.browser.get("/dashboard/instances")
        assert page.status_code == 200
        assert "The image service is unavailable: it is unreachable." in page.text
        assert "srv-001" in page.text  # the servers are listed all the same
        launch = await deck.browser.get("/dashboard/launch")
        assert "The image service is unavailable" in launch.text
        assert "m1.tiny" in launch.text


# Launch, detail, actions ------------------------------------------------------------------


async def test_launch_builds_a_server_that_polls_to_active_then_stop_and_start(
        deck: Deck) -> None:
    image_id = await upload_image(deck)
    assert (await deck.login()).status_code == 303
    form = await deck.browser.get("/dashboard/launch")
    assert form.status_code == 200
    assert "m1.tiny" in form.text and f'value="{image_id}"' in form.text
    token = form_token(form.text)
    launched = await deck.browser.post("/dashboard/launch", data={
        "csrf_token": token, "name": "web-1", "image": image_id, "flavor": "1",
        "network": "none", "key_name": "", "count": "1"})
    assert launched.status_code == 303, launched.text
    page = await deck.browser.get("/dashboard/instances")
    (server_id,) = re.findall(r'<tr id="server-([^"]+)"', page.text)
    assert "web-1" in page.text

    async def settle(html: str) -> str:
        for _ in range(200):
            if 'id="poller" hx-post' not in html and '"poller" hx-swap-oob="true" hx-post' \
                    not in html:
                return html
            url, ids = _poll_of(html)
            await asyncio.sleep(0.05)
            answer = await deck.browser.post(url, data={"id": ids or [server_id]}, headers={
                "X-CSRF-Token": token, "HX-Request": "true"})
            assert answer.status_code == 200
            html = answer.text
        raise AssertionError("still polling")

    if "BUILD" in page.text:
        await settle(page.text)
    page = await deck.browser.get("/dashboard/instances")
    assert "ACTIVE" in page.text
    stopped = await deck.browser.post(f"/dashboard/instances/{server_id}/stop", headers={
        "X-CSRF-Token": token, "HX-Request": "true"})
    assert stopped.status_code == 200
    final = await settle(stopped.text) if "hx-post" in stopped.text else stopped.text
    assert "SHUTOFF" in final or "SHUTOFF" in (await deck.browser.get(
        "/dashboard/instances")).text
    detail = await deck.browser.get(f"/dashboard/instances/{server_id}")
    assert detail.status_code == 200
    assert "Console log" in detail.text and "SHUTOFF" in detail.text
    assert "stop" in detail.text.lower()
    # A plain form (no JS): start, and back to the detail page.
    started = await deck.browser.post(f"/dashboard/instances/{server_id}/start", data={
        "csrf_token": token, "next": "detail"})
    assert started.status_code == 303
    assert started.headers["location"] == f"/dashboard/instances/{server_id}"


async def test_a_bad_launch_shows_the_api_message_at_the_form(deck: Deck) -> None:
    image_id = await upload_image(deck, name="big", min_disk=50)
    assert (await deck.login()).status_code == 303
    token = await deck.csrf()
    deck.calls.clear()
    answer = await deck.browser.post("/dashboard/launch", data={
        "csrf_token": token, "name": "too-big", "image": image_id, "flavor": "1",
        "network": "none", "count": "1"})
    assert answer.status_code == 400, answer.text
    message = re.search(r'<p class="error" role="alert" id="launch-error">([^<]+)</p>',
                        answer.text)
    assert message, answer.text
    assert "disk" in message.group(1).lower()
    assert 'value="too-big"' in answer.text  # what was typed stays
    bad_count = await deck.browser.post("/dashboard/launch", data={
        "csrf_token": token, "name": "x", "image": image_id, "flavor": "1", "count": "zero"})
    assert bad_count.status_code == 400
    assert 'id="count-error"' in bad_count.text


async def test_under_https_the_cookie_is_secure(deck: Deck) -> None:
    async with httpx.AsyncClient(transport=deck.browser._transport,
                                 base_url="https://test") as browser:
        page = await browser.get("/dashboard/login")
        assert "secure" in page.headers["set-cookie"].lower()
        answer = await browser.post("/dashboard/login", data={
            "csrf_token": form_token(page.text), "domain": "Default", "user": "admin",
            "password": ADMIN_PASSWORD})
        assert answer.status_code == 303, answer.text
        cookie = answer.headers.get_list("set-cookie")[0]
        assert cookie.startswith("stratus_session=") and "; secure" in cookie.lower()


async def test_a_user_without_a_default_project_lands_in_one_of_theirs(deck: Deck) -> None:
    admin = deck.admin()
    project = (await deck.api.post("/identity/v3/projects", headers=admin, json={
        "project": {"name": "team"}})).json()["project"]
    user = (await deck.api.post("/identity/v3/users", headers=admin, json={
        "user": {"name": "carol", "password": "carol-pw-1234"}})).json()["user"]
    roles = (await deck.api.get("/identity/v3/roles?name=member", headers=admin)).json()
    grant = await deck.api.put(f"/identity/v3/projects/{project['id']}/users/{user['id']}/"
                               f"roles/{roles['roles'][0]['id']}", headers=admin)
    assert grant.status_code == 204
    await _servers(deck, 1)  # the admin project's: carol does not see it
    deck.calls.clear()
    assert (await deck.login("carol", "carol-pw-1234")).status_code == 303
    # Unscoped token, her projects, the rescope, the unscoped token revoked.
    assert deck.calls.made == [("POST", "/identity/v3/auth/tokens"),
                               ("GET", "/identity/v3/auth/projects"),
                               ("POST", "/identity/v3/auth/tokens"),
                               ("DELETE", "/identity/v3/auth/tokens")]
    page = await deck.browser.get("/dashboard/instances")
    assert "No instances yet" in page.text and "srv-000" not in page.text
    assert 'selected>team</option>' in page.text and ">carol<" in page.text


async def test_delete_from_the_table_removes_the_row(deck: Deck) -> None:
    image_id = await upload_image(deck)
    assert (await deck.login()).status_code == 303
    token = await deck.csrf()
    created = await deck.api.post("/compute/v2.1/servers", headers=deck.admin("2.47"), json={
        "server": {"name": "gone", "imageRef": image_id, "flavorRef": "1",
                   "networks": "none"}})
    assert created.status_code == 202, created.text
    server_id = created.json()["server"]["id"]
    for _ in range(400):
        shown = await deck.api.get(f"/compute/v2.1/servers/{server_id}", headers=deck.admin())
        if shown.json()["server"]["status"] == "ACTIVE":
            break
        await asyncio.sleep(0.05)
    # The row's one form, as drawn: its URL, and the button pressed names the action.
    table = (await deck.browser.get("/dashboard/instances")).text
    cell = re.search(rf'<td id="actions-{server_id}" class="actions">\s*<form method="post" '
                     r'action="([^"]+)"(.*?)</form>', table, re.S)
    assert cell and cell.group(1) == f"/dashboard/instances/{server_id}", table[-3000:]
    assert re.search(r'<button type="submit" name="action" value="delete" hx-post="'
                     + cell.group(1), cell.group(2)), cell.group(2)
    answer = await deck.browser.post(cell.group(1), data={"action": "delete"}, headers={
        "X-CSRF-Token": token, "HX-Request": "true"})
    assert answer.status_code == 200, answer.text
    html = answer.text
    for _ in range(400):
        if f'<tr id="server-{server_id}" hx-swap-oob="delete">' in html:
            break
        assert re.search(r'id="poller"[^>]*hx-post', html), html  # polls until it goes
        url, _ = _poll_of(html)
        await asyncio.sleep(0.05)
        html = (await deck.browser.post(url, data={"id": [server_id]}, headers={
            "X-CSRF-Token": token, "HX-Request": "true"})).text
    else:
        raise AssertionError("the row was never removed")


async def test_another_projects_server_is_not_found_through_the_dashboard(deck: Deck) -> None:
    (theirs,) = await _servers(deck, 1)  # the admin project's
    admin = deck.admin()
    project = (await deck.api.post("/identity/v3/projects", headers=admin, json={
        "project": {"name": "other"}})).json()["project"]
    user = (await deck.api.post("/identity/v3/users", headers=admin, json={
        "user": {"name": "dave", "password": "dave-pw-1234",
                 "default_project_id": project["id"]}})).json()["user"]
    roles = (await deck.api.get("/identity/v3/roles?name=member", headers=admin)).json()
    await deck.api.put(f"/identity/v3/projects/{project['id']}/users/{user['id']}/roles/"
                       f"{roles['roles'][0]['id']}", headers=admin)
    assert (await deck.login("dave", "dave-pw-1234")).status_code == 303
    token = await deck.csrf()
    shown = await deck.browser.get(f"/dashboard/instances/{theirs}")
    assert shown.status_code == 404 and "srv-000" not in shown.text
    assert 'class="banner" role="alert"' in shown.text  # the API's message, as a message
    stopped = await deck.browser.post(f"/dashboard/instances/{theirs}/stop",
                                      data={"csrf_token": token})
    assert stopped.status_code == 404
    state = await deck.api.get(f"/compute/v2.1/servers/{theirs}", headers=admin)
    assert state.json()["server"]["status"] == "ACTIVE"
