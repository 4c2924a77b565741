"""The identity admin pages (projects, users, role assignments) and the hosts page through
the ASGI app: each page is one round of calls, every change is one call checked through the
API, the API's refusal is said at its form or row, and a member is refused by the APIs
themselves (the nav only hides the entries)."""

from __future__ import annotations

import re
from typing import Any

from tests.integration.dashboard.conftest import Deck


async def _identity(deck: Deck, path: str) -> Any:
    answer = await deck.api.get(f"/identity/v3{path}", headers=deck.admin())
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _by_name(deck: Deck, collection: str, name: str) -> dict[str, Any]:
    (found,) = [row for row in (await _identity(deck, f"/{collection}"))[collection]
                if row["name"] == name]
    return dict(found)


async def _page(deck: Deck, path: str, calls: int) -> str:
    deck.calls.clear()
    page = await deck.browser.get(f"/dashboard{path}")
    assert page.status_code == 200, (path, page.text[-2000:])
    assert len(deck.calls) == calls, (path, deck.calls.made)
    return page.text


async def _post(deck: Deck, path: str, status: int = 303, **data: str) -> str:
    answer = await deck.browser.post(f"/dashboard{path}",
                                     data={"csrf_token": await deck.csrf(), **data})
    assert answer.status_code == status, (path, answer.text[-3000:])
    return answer.text


async def test_projects_users_and_role_assignments_through_the_identity_api(
        deck: Deck) -> None:
    assert (await deck.login()).status_code == 303
    listed = await _page(deck, "/identity/projects", 1)
    assert re.search(r'<nav aria-label="Main">.*href="/dashboard/identity/users"', listed, re.S)
    admin_project = await _by_name(deck, "projects", "admin")
    assert f'id="project-{admin_project["id"]}"' in listed

    # Create, then the same name again: the identity API's 409 message at the form.
    await _post(deck, "/identity/projects", name="web", description="the web tier",
                enabled="on")
    web = await _by_name(deck, "projects", "web")
    assert (web["description"], web["enabled"]) == ("the web tier", True)
    taken = await _post(deck, "/identity/projects", 409, name="web", enabled="on")
    message = re.search(r'id="create-error">([^<]+)<', taken)
    assert message and "web" in message.group(1), taken[-3000:]

    # A user, with a password that never comes back in a page.
    await _post(deck, "/identity/users", name="carol", password="carol-secret-pw-1",
                email="carol@example.org", default_project_id=web["id"], enabled="on")
    carol = await _by_name(deck, "users", "carol")
    assert (carol["email"], carol["default_project_id"]) == ("carol@example.org", web["id"])
    users = await _page(deck, "/identity/users", 2)
    row = re.search(rf'<tr id="user-{carol["id"]}">.*?</tr>', users, re.S)
    assert row and ">web<" in row.group(0) and "enabled" in row.group(0)
    assert "carol-secret-pw-1" not in users

    # Assign a role on the project, see it on the project's and the user's pages, unassign.
    member = await _by_name(deck, "roles", "member")
    project_page = await _page(deck, f"/identity/projects/{web['id']}", 4)
    assert "No user has a role on this project." in project_page
    assert f'action="/dashboard/identity/projects/{web["id"]}"' in project_page  # the edit
    await _post(deck, f"/identity/projects/{web['id']}/roles/assign", user=carol["id"],
                role=member["id"])
    granted = (await deck.api.get(f"/identity/v3/projects/{web['id']}/users/{carol['id']}"
                                  f"/roles/{member['id']}", headers=deck.admin()))
    assert granted.status_code == 204
    project_page = await _page(deck, f"/identity/projects/{web['id']}", 4)
    assert re.search(rf'id="grant-{carol["id"]}-{member["id"]}">.*?carol', project_page)
    user_page = await _page(deck, f"/identity/users/{carol['id']}", 3)
    assert re.search(r'<th scope="row"><a [^>]+>web</a></th>\s*<td data-label="Role">member',
                     user_page), user_page[-3000:]
    # (Carol can log in to her project now.)
    await _logout(deck)
    assert (await deck.login("carol", "carol-secret-pw-1")).status_code == 303
    await _logout(deck)
    assert (await deck.login()).status_code == 303
    await _post(deck, f"/identity/projects/{web['id']}/roles/unassign", user=carol["id"],
                role=member["id"])
    assignments = await _identity(deck, f"/role_assignments?scope.project.id={web['id']}")
    assert assignments["role_assignments"] == []
    # Unassigning what is not there: the API's 404 at the top of the page.
    gone = await _post(deck, f"/identity/projects/{web['id']}/roles/unassign", 404,
                       user=carol["id"], role=member["id"])
    assert 'id="page-error"' in gone

    # Edit: a new name and description; the user's edit keeps what was not given.
    await _post(deck, f"/identity/projects/{web['id']}", name="web-2", description="renamed",
                enabled="on")
    web = (await _identity(deck, f"/projects/{web['id']}"))["project"]
    assert (web["name"], web["description"]) == ("web-2", "renamed")
    await _post(deck, f"/identity/users/{carol['id']}", name="carol", email="c@example.org",
                default_project_id=web["id"], enabled="on")
    carol = (await _identity(deck, f"/users/{carol['id']}"))["user"]
    assert carol["email"] == "c@example.org" and carol["enabled"] is True

    # Disable and enable from the lists; then delete.
    await _post(deck, f"/identity/projects/{web['id']}/disable")
    assert (await _identity(deck, f"/projects/{web['id']}"))["project"]["enabled"] is False
    listed = await _page(deck, "/identity/projects", 1)
    row = re.search(rf'<tr id="project-{web["id"]}">.*?</tr>', listed, re.S)
    assert row and "disabled" in row.group(0) and "Enable project web-2" in row.group(0)
    await _post(deck, f"/identity/projects/{web['id']}/enable")
    assert (await _identity(deck, f"/projects/{web['id']}"))["project"]["enabled"] is True
    await _post(deck, f"/identity/users/{carol['id']}/disable")
    assert (await _identity(deck, f"/users/{carol['id']}"))["user"]["enabled"] is False
    await _post(deck, f"/identity/users/{carol['id']}/delete")
    await _post(deck, f"/identity/projects/{web['id']}/delete")
    names = {p["name"] for p in (await _identity(deck, "/projects"))["projects"]}
    assert "web-2" not in names
    assert "carol" not in {u["name"] for u in (await _identity(deck, "/users"))["users"]}
    # One already gone: the identity API's 404 said atop the list, not a 500.
    gone = await _post(deck, f"/identity/projects/{web['id']}/delete", 404)
    assert 'id="page-error"' in gone


async def _logout(deck: Deck) -> None:
    await deck.browser.post("/dashboard/logout", data={"csrf_token": await deck.csrf()})


async def test_the_hosts_page_shows_hypervisors_services_and_agents_in_one_round(
        deck: Deck) -> None:
    assert (await deck.login()).status_code == 303
    page = await _page(deck, "/admin/hosts", 3)
    hypervisors = re.search(r'<table id="hypervisors">.*?</table>', page, re.S)
    assert hypervisors and re.search(
        r'<th scope="row">node</th>\s*<td data-label="State"><span class="state state-up">up',
        hypervisors.group(0)), page[-4000:]
    services = re.search(r'<table id="services">.*?</table>', page, re.S)
    assert services and "nova-compute" in services.group(0) and "enabled" in services.group(0)
    # This cloud runs no network agents: the section says so.
    assert 'id="agents-empty"' in page
    assert 'role="alert"' not in page


async def test_a_member_sees_no_admin_entries_and_the_apis_refuse_the_pages(
        deck: Deck) -> None:
    admin = deck.admin()
    project = (await deck.api.post("/identity/v3/projects", headers=admin, json={
        "project": {"name": "team"}})).json()["project"]
    user = (await deck.api.post("/identity/v3/users", headers=admin, json={"user": {
        "name": "dave", "password": "dave-pw-123456",
        "default_project_id": project["id"]}})).json()["user"]
    member = await _by_name(deck, "roles", "member")
    granted = await deck.api.put(f"/identity/v3/projects/{project['id']}/users/{user['id']}"
                                 f"/roles/{member['id']}", headers=admin)
    assert granted.status_code == 204
    assert (await deck.login("dave", "dave-pw-123456")).status_code == 303

    instances = (await deck.browser.get("/dashboard/instances")).text
    assert "/dashboard/identity/projects" not in instances
    assert "/dashboard/admin/hosts" not in instances
    admin_project = await _by_name(deck, "projects", "admin")
    admin_user = await _by_name(deck, "users", "admin")
    for path in ("/identity/projects", "/identity/users",
                 f"/identity/projects/{admin_project['id']}",
                 f"/identity/users/{admin_user['id']}", "/admin/hosts"):
        refused = await deck.browser.get(f"/dashboard{path}")
        assert refused.status_code == 403, (path, refused.text[-2000:])
        banner = re.search(r'<p class="banner" role="alert">([^<]+)<', refused.text)
        # The API's own message (identity: Keystone's; compute: Nova's policy text).
        assert banner and ("not authorized" in banner.group(1).lower()
                           or "policy" in banner.group(1).lower()), (path, refused.text)
    # Their own project the identity API shows them, not who else has roles on it (said
    # in a banner), nor may they change it.
    own = await deck.browser.get(f"/dashboard/identity/projects/{project['id']}")
    assert own.status_code == 200 and '<p class="banner" role="alert">' in own.text
    assert 'id="assignments' not in own.text
    edit = await _post(deck, f"/identity/projects/{project['id']}", 403, name="ours",
                       enabled="on")
    assert 'id="edit-error"' in edit
    assert (await _identity(deck, f"/projects/{project['id']}"))["project"]["name"] == "team"
    # Nor can a change be made: the identity API refuses it, said at the form.
    refused_create = await _post(deck, "/identity/projects", 403, name="mine", enabled="on")
    assert "mine" not in {p["name"] for p in (await _identity(deck, "/projects"))["projects"]}
    assert '<p class="banner" role="alert">' in refused_create
