"""Domains, projects, users and groups: create, read, filter, update, delete."""

from __future__ import annotations

from typing import Any

from .conftest import Cloud, assert_error, password_auth, project_scope


def ids(items: list[dict[str, Any]]) -> list[str]:
    return sorted(item["id"] for item in items)


async def test_domains(cloud: Cloud) -> None:
    created = await cloud.client.post("/v3/domains", headers=cloud.admin, json={
        "domain": {"name": "Acme", "description": "d", "colour": "blue"}})
    assert created.status_code == 201
    domain = created.json()["domain"]
    assert domain["name"] == "Acme" and domain["enabled"] is True
    assert domain["description"] == "d"
    assert domain["colour"] == "blue"  # Keystone keeps extra attributes
    assert domain["links"]["self"] == f"http://test/identity/v3/domains/{domain['id']}"
    assert (await cloud.get(f"/v3/domains/{domain['id']}"))["domain"] == domain

    listed = await cloud.get("/v3/domains")
    assert sorted(d["name"] for d in listed["domains"]) == ["Acme", "Default"]
    assert listed["links"]["self"] == "http://test/identity/v3/domains"
    assert ids((await cloud.get("/v3/domains", name="Acme"))["domains"]) == [domain["id"]]
    assert (await cloud.get("/v3/domains", name="Nope"))["domains"] == []
    assert_error(await cloud.client.post("/v3/domains", headers=cloud.admin,
                                         json={"domain": {"name": "Acme"}}), 409)

    project = await cloud.create_project(domain_id=domain["id"])
    # Three levels deep, so deleting the domain has to go leaves first.
    child = await cloud.create_project(domain_id=domain["id"], parent_id=project["id"])
    grandchild = await cloud.create_project(domain_id=domain["id"], parent_id=child["id"])
    user = await cloud.create_user(domain_id=domain["id"])
    group = (await cloud.post("/v3/groups", {"group": {"name": "g", "domain_id": domain["id"]}}))
    await cloud.put(f"/v3/projects/{grandchild['id']}/users/{user['id']}/roles/"
                    f"{cloud.roles['member']}")
    assert_error(await cloud.client.delete(f"/v3/domains/{domain['id']}",
                                           headers=cloud.admin), 403)
    response = await cloud.client.patch(f"/v3/domains/{domain['id']}", headers=cloud.admin,
                                        json={"domain": {"enabled": False, "name": "Acme2"}})
    assert response.status_code == 200
    assert response.json()["domain"]["enabled"] is False
    assert response.json()["domain"]["name"] == "Acme2"
    assert ids((await cloud.get("/v3/domains", enabled="false"))["domains"]) == [domain["id"]]
    await cloud.delete(f"/v3/domains/{domain['id']}")
    # Deleting a domain takes its projects and users with it.
    for path in (f"/v3/domains/{domain['id']}", f"/v3/projects/{project['id']}",
                 f"/v3/projects/{child['id']}", f"/v3/projects/{grandchild['id']}",
                 f"/v3/users/{user['id']}", f"/v3/groups/{group['group']['id']}"):
        assert_error(await cloud.client.get(path, headers=cloud.admin), 404)
    assert_error(await cloud.client.delete(f"/v3/domains/{domain['id']}",
                                           headers=cloud.admin), 404)
    # The Default domain cannot be deleted while enabled either.
    assert_error(await cloud.client.delete("/v3/domains/default", headers=cloud.admin), 403)


async def test_projects(cloud: Cloud) -> None:
    other = (await cloud.post("/v3/domains", {"domain": {"name": "Other"}}))["domain"]
    parent = await cloud.create_project("parent", description="top", tags=["a", "b"])
    assert parent["domain_id"] == "default"
    assert parent["parent_id"] == "default"  # a top-level project's parent is its domain
    assert parent["is_domain"] is False
    assert parent["description"] == "top" and parent["tags"] == ["a", "b"]
    assert parent["enabled"] is True
    child = await cloud.create_project("child", parent_id=parent["id"])
    assert child["parent_id"] == parent["id"]
    assert child["domain_id"] == "default"
    elsewhere = await cloud.create_project("parent", domain_id=other["id"])
    off = await cloud.create_project("off", enabled=False)

    duplicate = await cloud.client.post("/v3/projects", headers=cloud.admin,
                                        json={"project": {"name": "parent"}})
    assert "Duplicate" in assert_error(duplicate, 409)
    # Same name, other domain is fine (done above); a parent in another domain is not.
    assert_error(await cloud.client.post("/v3/projects", headers=cloud.admin, json={
        "project": {"name": "x", "domain_id": other["id"], "parent_id": parent["id"]}}), 400)
    assert_error(await cloud.client.post("/v3/projects", headers=cloud.admin, json={
        "project": {"name": "x", "domain_id": "nosuchdomain"}}), 404)

    everything = ids((await cloud.get("/v3/projects"))["projects"])
    assert set(everything) >= {parent["id"], child["id"], elsewhere["id"], off["id"],
                               cloud.admin_project_id}
    assert ids((await cloud.get("/v3/projects", name="parent"))["projects"]) == sorted(
        [parent["id"], elsewhere["id"]])
    assert ids((await cloud.get("/v3/projects", domain_id=other["id"]))["projects"]) == [
        elsewhere["id"]]
    assert ids((await cloud.get("/v3/projects", name="parent",
                                domain_id="default"))["projects"]) == [parent["id"]]
    assert ids((await cloud.get("/v3/projects", enabled="false"))["projects"]) == [off["id"]]
    assert off["id"] not in ids((await cloud.get("/v3/projects", enabled="true"))["projects"])
    assert ids((await cloud.get("/v3/projects", parent_id=parent["id"]))["projects"]) == [
        child["id"]]

    updated = await cloud.client.patch(f"/v3/projects/{child['id']}", headers=cloud.admin,
                                       json={"project": {"name": "kid", "description": "new",
                                                         "tags": ["t"]}})
    assert updated.status_code == 200
    assert updated.json()["project"]["name"] == "kid"
    fetched = (await cloud.get(f"/v3/projects/{child['id']}"))["project"]
    assert fetched == updated.json()["project"]
    assert fetched["description"] == "new" and fetched["tags"] == ["t"]
    assert_error(await cloud.client.patch(f"/v3/projects/{child['id']}", headers=cloud.admin,
                                          json={"project": {"name": "parent"}}), 409)
    assert_error(await cloud.client.patch(f"/v3/projects/{child['id']}", headers=cloud.admin,
                                          json={"project": {"domain_id": other["id"]}}), 400)

    # A project with sub-projects cannot go first.
    assert_error(await cloud.client.delete(f"/v3/projects/{parent['id']}",
                                           headers=cloud.admin), 403)
    await cloud.delete(f"/v3/projects/{child['id']}")
    await cloud.delete(f"/v3/projects/{parent['id']}")
    assert_error(await cloud.client.get(f"/v3/projects/{parent['id']}", headers=cloud.admin), 404)
    assert_error(await cloud.client.delete(f"/v3/projects/{parent['id']}",
                                           headers=cloud.admin), 404)


async def test_users(cloud: Cloud) -> None:
    other = (await cloud.post("/v3/domains", {"domain": {"name": "Other"}}))["domain"]
    project = await cloud.create_project()
    password = cloud.new_password()
    created = await cloud.client.post("/v3/users", headers=cloud.admin, json={"user": {
        "name": "bob", "password": password, "default_project_id": project["id"],
        "description": "Bob", "email": "bob@example.org"}})
    assert created.status_code == 201
    bob = created.json()["user"]
    assert bob["name"] == "bob" and bob["domain_id"] == "default" and bob["enabled"] is True
    assert bob["default_project_id"] == project["id"]
    assert bob["email"] == "bob@example.org"
    assert bob["password_expires_at"] is None
    assert "password" not in bob and "password_hash" not in bob
    assert bob["links"]["self"] == f"http://test/identity/v3/users/{bob['id']}"
    assert (await cloud.get(f"/v3/users/{bob['id']}"))["user"] == bob
    other_bob = await cloud.create_user("bob", domain_id=other["id"])
    await cloud.create_user("carol", enabled=False)

    assert_error(await cloud.client.post("/v3/users", headers=cloud.admin,
                                         json={"user": {"name": "bob"}}), 409)
    assert ids((await cloud.get("/v3/users", name="bob"))["users"]) == sorted(
        [bob["id"], other_bob["id"]])
    assert ids((await cloud.get("/v3/users", name="bob", domain_id="default"))["users"]) == [
        bob["id"]]
    assert ids((await cloud.get("/v3/users", domain_id=other["id"]))["users"]) == [
        other_bob["id"]]
    assert [u["name"] for u in (await cloud.get("/v3/users", enabled="false"))["users"]] == [
        "carol"]
    assert (await cloud.get("/v3/users", name="nobody"))["users"] == []
    names = [u["name"] for u in (await cloud.get("/v3/users"))["users"]]
    assert sorted(names) == ["admin", "bob", "bob", "carol"]

    # Without a grant on the default project a login with no scope is unscoped...
    _, body = await cloud.issue(password_auth(user_id=bob["id"], password=password))
    assert "project" not in body
    # ...and with one it is scoped to that project.
    await cloud.grant(project["id"], bob["id"], "reader")
    _, body = await cloud.issue(password_auth(name="bob", domain={"id": "default"},
                                              password=password))
    assert body["project"]["id"] == project["id"]

    response = await cloud.client.patch(f"/v3/users/{bob['id']}", headers=cloud.admin,
                                        json={"user": {"description": "B.", "email": None}})
    assert response.status_code == 200
    assert response.json()["user"]["description"] == "B."
    assert_error(await cloud.client.patch(f"/v3/users/{bob['id']}", headers=cloud.admin,
                                          json={"user": {"name": "carol"}}), 409)
    assert_error(await cloud.client.get("/v3/users/nosuchuser", headers=cloud.admin), 404)
    await cloud.delete(f"/v3/users/{bob['id']}")
    assert bob["id"] not in ids((await cloud.get("/v3/users"))["users"])


async def test_groups_and_membership(cloud: Cloud) -> None:
    project = await cloud.create_project()
    password = cloud.new_password()
    user = await cloud.create_user(password=password)
    bystander = await cloud.create_user()
    created = await cloud.client.post("/v3/groups", headers=cloud.admin,
                                      json={"group": {"name": "ops", "description": "Ops"}})
    assert created.status_code == 201
    group = created.json()["group"]
    assert group["domain_id"] == "default" and group["description"] == "Ops"
    assert (await cloud.get(f"/v3/groups/{group['id']}"))["group"] == group
    await cloud.post("/v3/groups", {"group": {"name": "devs"}})
    assert_error(await cloud.client.post("/v3/groups", headers=cloud.admin,
                                         json={"group": {"name": "ops"}}), 409)
    assert ids((await cloud.get("/v3/groups", name="ops"))["groups"]) == [group["id"]]
    assert len((await cloud.get("/v3/groups"))["groups"]) == 2

    member_path = f"/v3/groups/{group['id']}/users/{user['id']}"
    assert (await cloud.client.head(member_path, headers=cloud.admin)).status_code == 404
    assert_error(await cloud.client.get(member_path, headers=cloud.admin), 404)
    await cloud.put(member_path)
    await cloud.put(member_path)  # idempotent
    head = await cloud.client.head(member_path, headers=cloud.admin)
    assert head.status_code == 204 and head.content == b""
    assert (await cloud.client.get(member_path, headers=cloud.admin)).status_code == 204
    members = await cloud.get(f"/v3/groups/{group['id']}/users")
    assert ids(members["users"]) == [user["id"]]
    groups_of_user = await cloud.get(f"/v3/users/{user['id']}/groups")
    assert ids(groups_of_user["groups"]) == [group["id"]]
    assert (await cloud.get(f"/v3/users/{bystander['id']}/groups"))["groups"] == []
    assert_error(await cloud.client.put(f"/v3/groups/{group['id']}/users/nosuchuser",
                                        headers=cloud.admin), 404)

    # Roles through the group show up in the member's token.
    await cloud.put(f"/v3/projects/{project['id']}/groups/{group['id']}/roles/"
                    f"{cloud.roles['member']}")
    _, body = await cloud.issue(password_auth(user_id=user["id"], password=password,
                                              scope=project_scope(project["id"])))
    assert sorted(r["name"] for r in body["roles"]) == ["member", "reader"]

    response = await cloud.client.patch(f"/v3/groups/{group['id']}", headers=cloud.admin,
                                        json={"group": {"name": "sre"}})
    assert response.json()["group"]["name"] == "sre"

    await cloud.delete(member_path)
    assert (await cloud.client.head(member_path, headers=cloud.admin)).status_code == 404
    assert_error(await cloud.client.delete(member_path, headers=cloud.admin), 404)
    assert (await cloud.get(f"/v3/groups/{group['id']}/users"))["users"] == []
    assert_error(await cloud.authenticate(password_auth(
        user_id=user["id"], password=password, scope=project_scope(project["id"]))), 401)

    await cloud.put(member_path)
    await cloud.delete(f"/v3/groups/{group['id']}")
    assert_error(await cloud.client.get(f"/v3/groups/{group['id']}", headers=cloud.admin), 404)
    assert (await cloud.get(f"/v3/users/{user['id']}/groups"))["groups"] == []
    assert_error(await cloud.authenticate(password_auth(
        user_id=user["id"], password=password, scope=project_scope(project["id"]))), 401)
