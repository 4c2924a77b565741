"""Roles, grants on projects, domains and the system, and ``/v3/role_assignments``."""

from __future__ import annotations

from typing import Any

from .conftest import Cloud, assert_error, password_auth, project_scope

API = "http://test/identity/v3"


async def test_roles(cloud: Cloud) -> None:
    assert set(cloud.roles) == {"admin", "member", "reader", "service"}
    created = await cloud.client.post("/v3/roles", headers=cloud.admin, json={
        "role": {"name": "observer", "description": "looks"}})
    assert created.status_code == 201
    role = created.json()["role"]
    assert role["name"] == "observer" and role["description"] == "looks"
    assert role["domain_id"] is None
    assert role["links"]["self"] == f"{API}/roles/{role['id']}"
    assert (await cloud.get(f"/v3/roles/{role['id']}"))["role"] == role
    listed = [r["name"] for r in (await cloud.get("/v3/roles"))["roles"]]
    assert sorted(listed) == ["admin", "member", "observer", "reader", "service"]
    assert [r["id"] for r in (await cloud.get("/v3/roles", name="observer"))["roles"]] == [
        role["id"]]
    assert_error(await cloud.client.post("/v3/roles", headers=cloud.admin,
                                         json={"role": {"name": "observer"}}), 409)
    # A domain-specific role may reuse a global name and is listed per domain.
    scoped = await cloud.post("/v3/roles", {"role": {"name": "observer", "domain_id": "default"}})
    assert scoped["role"]["domain_id"] == "default"
    assert [r["id"] for r in (await cloud.get("/v3/roles", domain_id="default"))["roles"]] == [
        scoped["role"]["id"]]

    response = await cloud.client.patch(f"/v3/roles/{role['id']}", headers=cloud.admin,
                                        json={"role": {"name": "watcher"}})
    assert response.status_code == 200 and response.json()["role"]["name"] == "watcher"
    assert_error(await cloud.client.patch(f"/v3/roles/{role['id']}", headers=cloud.admin,
                                          json={"role": {"name": "admin"}}), 409)

    # A token that rests on the role alone dies with it.
    project = await cloud.create_project()
    password = cloud.new_password()
    user = await cloud.create_user(password=password)
    await cloud.put(f"/v3/projects/{project['id']}/users/{user['id']}/roles/{role['id']}")
    token, body = await cloud.issue(password_auth(user_id=user["id"], password=password,
                                                  scope=project_scope(project["id"])))
    assert [r["name"] for r in body["roles"]] == ["watcher"]
    await cloud.delete(f"/v3/roles/{role['id']}")
    assert_error(await cloud.client.get(f"/v3/roles/{role['id']}", headers=cloud.admin), 404)
    assert_error(await cloud.validate(token), 404)
    assert (await cloud.get("/v3/role_assignments", **{"role.id": role["id"]}))[
        "role_assignments"] == []


async def test_grants_on_every_target_and_actor(cloud: Cloud) -> None:
    project = await cloud.create_project()
    user = await cloud.create_user()
    group = (await cloud.post("/v3/groups", {"group": {"name": "g"}}))["group"]
    role = cloud.roles["reader"]
    cases = [
        (f"/v3/projects/{project['id']}/users/{user['id']}/roles",
         {"user": {"id": user["id"]}, "scope": {"project": {"id": project["id"]}}}),
        (f"/v3/projects/{project['id']}/groups/{group['id']}/roles",
         {"group": {"id": group["id"]}, "scope": {"project": {"id": project["id"]}}}),
        (f"/v3/domains/default/users/{user['id']}/roles",
         {"user": {"id": user["id"]}, "scope": {"domain": {"id": "default"}}}),
        (f"/v3/domains/default/groups/{group['id']}/roles",
         {"group": {"id": group["id"]}, "scope": {"domain": {"id": "default"}}}),
        (f"/v3/system/users/{user['id']}/roles",
         {"user": {"id": user["id"]}, "scope": {"system": {"all": True}}}),
    ]
    for collection, expected in cases:
        one = f"{collection}/{role}"
        assert (await cloud.client.head(one, headers=cloud.admin)).status_code == 404
        assert_error(await cloud.client.get(one, headers=cloud.admin), 404)
        assert (await cloud.get(collection))["roles"] == []
        await cloud.put(one)
        await cloud.put(one)  # granting twice is fine
        head = await cloud.client.head(one, headers=cloud.admin)
        assert head.status_code == 204 and head.content == b""
        assert (await cloud.client.get(one, headers=cloud.admin)).status_code == 204
        listed = await cloud.get(collection)
        assert [r["id"] for r in listed["roles"]] == [role]
        assert listed["links"]["self"] == f"http://test/identity{collection}"
        entries = (await cloud.get("/v3/role_assignments", **{"role.id": role}))[
            "role_assignments"]
        matching = [e for e in entries if {k: e[k] for k in expected} == expected]
        assert len(matching) == 1, (expected, entries)
        assert matching[0]["links"]["assignment"] == f"http://test/identity{one}"
        await cloud.delete(one)
        assert (await cloud.client.head(one, headers=cloud.admin)).status_code == 404
        assert_error(await cloud.client.delete(one, headers=cloud.admin), 404)
        assert (await cloud.get(collection))["roles"] == []

    # Unknown role, actor or target: 404 and nothing granted.
    for path in (f"/v3/projects/{project['id']}/users/{user['id']}/roles/nosuchrole",
                 f"/v3/projects/{project['id']}/users/nosuchuser/roles/{role}",
                 f"/v3/projects/nosuchproject/users/{user['id']}/roles/{role}",
                 f"/v3/domains/nosuchdomain/groups/{group['id']}/roles/{role}"):
        assert_error(await cloud.client.put(path, headers=cloud.admin), 404)
    assert (await cloud.get("/v3/role_assignments", **{"user.id": user["id"]}))[
        "role_assignments"] == []

    # An inherited domain grant reaches the projects, not the domain.
    project = await cloud.create_project()
    password = cloud.new_password()
    user = await cloud.create_user(password=password)
    path = (f"/v3/OS-INHERIT/domains/default/users/{user['id']}/roles/{cloud.roles['member']}"
            "/inherited_to_projects")
    await cloud.put(path)
    assert (await cloud.client.head(path, headers=cloud.admin)).status_code == 204
    _, body = await cloud.issue(password_auth(user_id=user["id"], password=password,
                                              scope=project_scope(project["id"])))
    assert sorted(r["name"] for r in body["roles"]) == ["member", "reader"]
    # Inherited to projects only: not a role on the domain itself.
    assert_error(await cloud.authenticate(password_auth(
        user_id=user["id"], password=password, scope={"domain": {"id": "default"}})), 401)
    direct = (await cloud.get("/v3/role_assignments", **{"user.id": user["id"]}))[
        "role_assignments"]
    assert direct == [{
        "role": {"id": cloud.roles["member"]}, "user": {"id": user["id"]},
        "scope": {"domain": {"id": "default"}, "OS-INHERIT:inherited_to": "projects"},
        "links": {"assignment": f"http://test/identity{path}"}}]
    effective = (await cloud.get("/v3/role_assignments", effective="true",
                                 **{"user.id": user["id"]}))["role_assignments"]
    assert {e["scope"]["project"]["id"] for e in effective} >= {project["id"],
                                                               cloud.admin_project_id}


def shape(entry: dict[str, Any]) -> tuple[str, str, str, str]:
    actor = "user" if "user" in entry else "group"
    (scope_type,) = [k for k in entry["scope"] if k != "OS-INHERIT:inherited_to"]
    scope_id = entry["scope"][scope_type].get("id", "all")
    return entry["role"]["id"], f"{actor}:{entry[actor]['id']}", scope_type, scope_id


async def test_role_assignments_filters_effective_and_names(cloud: Cloud) -> None:
    p1 = await cloud.create_project("p1")
    p2 = await cloud.create_project("p2")
    user = await cloud.create_user("ulla")
    other = await cloud.create_user("otto")
    group = (await cloud.post("/v3/groups", {"group": {"name": "team"}}))["group"]
    await cloud.put(f"/v3/groups/{group['id']}/users/{user['id']}")
    await cloud.grant(p1["id"], user["id"], "member")
    await cloud.grant(p1["id"], other["id"], "reader")
    await cloud.put(f"/v3/projects/{p2['id']}/groups/{group['id']}/roles/"
                    f"{cloud.roles['reader']}")
    await cloud.put(f"/v3/domains/default/users/{user['id']}/roles/{cloud.roles['admin']}")
    member, reader, admin = (cloud.roles[n] for n in ("member", "reader", "admin"))
    u, o, g = f"user:{user['id']}", f"user:{other['id']}", f"group:{group['id']}"

    async def assignments(**params: str) -> list[dict[str, Any]]:
        body = await cloud.get("/v3/role_assignments", **params)
        assert body["links"]["self"] == f"{API}/role_assignments"
        return list(body["role_assignments"])

    by_user = await assignments(**{"user.id": user["id"]})
    assert sorted(map(shape, by_user)) == sorted([
        (member, u, "project", p1["id"]), (admin, u, "domain", "default")])
    by_project = await assignments(**{"scope.project.id": p1["id"]})
    assert sorted(map(shape, by_project)) == sorted([
        (member, u, "project", p1["id"]), (reader, o, "project", p1["id"])])
    by_both = await assignments(**{"scope.project.id": p1["id"], "user.id": other["id"]})
    assert [shape(e) for e in by_both] == [(reader, o, "project", p1["id"])]
    by_group = await assignments(**{"group.id": group["id"]})
    assert [shape(e) for e in by_group] == [(reader, g, "project", p2["id"])]
    by_domain = await assignments(**{"scope.domain.id": "default"})
    # Bootstrap made the cloud's admin an admin of Default too (as DevStack does).
    assert sorted(map(shape, by_domain)) == sorted([
        (admin, u, "domain", "default"),
        (admin, f"user:{cloud.admin_user_id}", "domain", "default")])
    by_role = await assignments(**{"role.id": reader})
    assert sorted(map(shape, by_role)) == sorted([
        (reader, o, "project", p1["id"]), (reader, g, "project", p2["id"])])
    system = await assignments(**{"scope.system": "all"})
    assert [shape(e) for e in system] == [(admin, f"user:{cloud.admin_user_id}", "system", "all")]

    # Effective: the group's grant appears as the user's, with the membership that gives it,
    # and every implied role (admin → member → reader) appears, naming the role implying it.
    effective = await assignments(effective="true", **{"user.id": user["id"]})
    assert sorted(map(shape, effective)) == sorted([
        (member, u, "project", p1["id"]), (reader, u, "project", p1["id"]),
        (admin, u, "domain", "default"), (member, u, "domain", "default"),
        (reader, u, "domain", "default"), (reader, u, "project", p2["id"])])
    (implied_reader,) = [e for e in effective if e["role"]["id"] == reader
                         and e["scope"].get("project", {}).get("id") == p1["id"]]
    assert implied_reader["links"] == {
        "assignment": f"{API}/projects/{p1['id']}/users/{user['id']}/roles/{member}",
        "prior_role": f"{API}/roles/{member}"}
    only_readers = await assignments(effective="true", **{"user.id": user["id"],
                                                          "role.id": reader})
    assert len(only_readers) == 3
    (via_group,) = [e for e in effective if e["scope"].get("project", {}).get("id") == p2["id"]]
    assert via_group["links"] == {
        "assignment": f"{API}/projects/{p2['id']}/groups/{group['id']}/roles/{reader}",
        "membership": f"{API}/groups/{group['id']}/users/{user['id']}"}
    assert "group" not in via_group
    effective_p2 = await assignments(effective="true", **{"scope.project.id": p2["id"]})
    assert [shape(e) for e in effective_p2] == [(reader, u, "project", p2["id"])]
    assert_error(await cloud.client.get("/v3/role_assignments", headers=cloud.admin, params={
        "effective": "true", "group.id": group["id"]}), 400)

    # include_names: every reference carries its name (and its domain's).
    named = await assignments(include_names="true", **{"scope.project.id": p1["id"],
                                                       "user.id": user["id"]})
    assert named == [{
        "role": {"id": member, "name": "member"},
        "user": {"id": user["id"], "name": "ulla",
                 "domain": {"id": "default", "name": "Default"}},
        "scope": {"project": {"id": p1["id"], "name": "p1",
                              "domain": {"id": "default", "name": "Default"}}},
        "links": {"assignment": f"{API}/projects/{p1['id']}/users/{user['id']}/roles/{member}"},
    }]
    named_group = await assignments(include_names="1", **{"group.id": group["id"]})
    assert named_group[0]["group"] == {"id": group["id"], "name": "team",
                                       "domain": {"id": "default", "name": "Default"}}
    named_domain = await assignments(include_names="true", **{"scope.domain.id": "default"})
    assert named_domain[0]["scope"] == {"domain": {"id": "default", "name": "Default"}}
