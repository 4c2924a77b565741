"""Tokens die when what they stand for changes: disable, password, roles, deletion, caches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from stratus.core.auth import CachingValidator
from stratus.core.exceptions import NotFound

from .conftest import Cloud, Member, assert_error, password_auth, project_scope


async def assert_dead(cloud: Cloud, token: str) -> None:
    """The token neither validates (404) nor authenticates a request (401)."""
    assert_error(await cloud.validate(token), 404)
    assert_error(await cloud.client.get("/v3/auth/catalog",
                                        headers={"X-Auth-Token": token}), 401)


async def assert_alive(cloud: Cloud, token: str) -> None:
    assert (await cloud.validate(token)).status_code == 200
    response = await cloud.client.get("/v3/auth/catalog", headers={"X-Auth-Token": token})
    assert response.status_code == 200, response.text


async def patch(cloud: Cloud, path: str, body: dict[str, object]) -> None:
    response = await cloud.client.patch(path, json=body, headers=cloud.admin)
    assert response.status_code == 200, response.text


async def test_disabled_user(cloud: Cloud) -> None:
    member = await cloud.member()
    bystander = await cloud.member()
    await assert_alive(cloud, member.token)
    await patch(cloud, f"/v3/users/{member.user['id']}", {"user": {"enabled": False}})
    await assert_dead(cloud, member.token)
    await assert_alive(cloud, bystander.token)
    for scope in (None, project_scope(member.project["id"])):
        assert_error(await cloud.authenticate(password_auth(
            user_id=member.user["id"], password=member.password, scope=scope)), 401)
    users = (await cloud.get("/v3/users", enabled="false"))["users"]
    assert [u["id"] for u in users] == [member.user["id"]]
    # Enabling the user again lets it log in, but the old token stays revoked.
    await patch(cloud, f"/v3/users/{member.user['id']}", {"user": {"enabled": True}})
    await cloud.issue(password_auth(user_id=member.user["id"], password=member.password,
                                    scope=project_scope(member.project["id"])))
    await assert_dead(cloud, member.token)


async def test_disabled_project(cloud: Cloud) -> None:
    member = await cloud.member()
    other_project = await cloud.create_project()
    await cloud.grant(other_project["id"], member.user["id"], "member")
    other_token, other_body = await cloud.issue(password_auth(
        user_id=member.user["id"], password=member.password,
        scope=project_scope(other_project["id"])))
    unscoped_token, _ = await cloud.issue(password_auth(
        user_id=member.user["id"], password=member.password, scope="unscoped"))

    await patch(cloud, f"/v3/projects/{member.project['id']}", {"project": {"enabled": False}})
    await assert_dead(cloud, member.token)
    assert_error(await cloud.authenticate(password_auth(
        user_id=member.user["id"], password=member.password,
        scope=project_scope(member.project["id"]))), 401)
    assert_error(await cloud.authenticate({"auth": {
        "identity": {"methods": ["token"], "token": {"id": unscoped_token}},
        "scope": project_scope(member.project["id"])}}), 401)
    # The user's other project and its unscoped token are untouched.
    await assert_alive(cloud, other_token)
    assert other_body["project"]["id"] == other_project["id"]
    assert (await cloud.validate(unscoped_token)).status_code == 200
    projects = await cloud.client.get("/v3/auth/projects",
                                      headers={"X-Auth-Token": unscoped_token})
    assert [p["id"] for p in projects.json()["projects"]] == [other_project["id"]]
    disabled = (await cloud.get("/v3/projects", enabled="false"))["projects"]
    assert [p["id"] for p in disabled] == [member.project["id"]]
    # Enabled again: new tokens, but the revoked one stays dead.
    await patch(cloud, f"/v3/projects/{member.project['id']}", {"project": {"enabled": True}})
    await cloud.issue(password_auth(user_id=member.user["id"], password=member.password,
                                    scope=project_scope(member.project["id"])))
    await assert_dead(cloud, member.token)


async def test_disabled_domain(cloud: Cloud) -> None:
    domain = (await cloud.post("/v3/domains", {"domain": {"name": "Doomed"}}))["domain"]
    project = await cloud.create_project(domain_id=domain["id"])
    inside_password = cloud.new_password()
    inside = await cloud.create_user(password=inside_password, domain_id=domain["id"])
    await cloud.grant(project["id"], inside["id"], "member")
    await cloud.put(f"/v3/domains/{domain['id']}/users/{inside['id']}/roles/"
                    f"{cloud.roles['admin']}")
    # A Default-domain user working in a project of the doomed domain.
    visitor = await cloud.member()
    await cloud.grant(project["id"], visitor.user["id"], "reader")

    inside_project_token, _ = await cloud.issue(password_auth(
        user_id=inside["id"], password=inside_password, scope=project_scope(project["id"])))
    inside_domain_token, _ = await cloud.issue(password_auth(
        user_id=inside["id"], password=inside_password, scope={"domain": {"id": domain["id"]}}))
    inside_unscoped, _ = await cloud.issue(password_auth(
        user_id=inside["id"], password=inside_password, scope="unscoped"))
    visitor_token, _ = await cloud.issue(password_auth(
        user_id=visitor.user["id"], password=visitor.password,
        scope=project_scope(project["id"])))

    await patch(cloud, f"/v3/domains/{domain['id']}", {"domain": {"enabled": False}})
    for token in (inside_project_token, inside_domain_token, inside_unscoped, visitor_token):
        await assert_dead(cloud, token)
    # The visitor's token for its own project is not affected.
    await assert_alive(cloud, visitor.token)
    for scope in ("unscoped", project_scope(project["id"]), {"domain": {"id": domain["id"]}}):
        assert_error(await cloud.authenticate(password_auth(
            user_id=inside["id"], password=inside_password, scope=scope)), 401)
    assert_error(await cloud.authenticate(password_auth(
        user_id=visitor.user["id"], password=visitor.password,
        scope=project_scope(project["id"]))), 401)
    await cloud.issue(password_auth(user_id=visitor.user["id"], password=visitor.password,
                                    scope=project_scope(visitor.project["id"])))


async def test_own_password_change(cloud: Cloud) -> None:
    member = await cloud.member()
    second_token, _ = await cloud.issue(password_auth(
        user_id=member.user["id"], password=member.password, scope="unscoped"))
    new_password = cloud.new_password()
    path = f"/v3/users/{member.user['id']}/password"
    wrong = await cloud.client.post(path, headers=member.headers, json={"user": {
        "original_password": "not-it", "password": new_password}})
    assert_error(wrong, 401)
    await assert_alive(cloud, member.token)
    await cloud.issue(password_auth(user_id=member.user["id"], password=member.password))

    changed = await cloud.client.post(path, headers=member.headers, json={"user": {
        "original_password": member.password, "password": new_password}})
    assert changed.status_code == 204
    assert changed.content == b""
    await assert_dead(cloud, member.token)
    await assert_dead(cloud, second_token)
    assert_error(await cloud.authenticate(password_auth(
        user_id=member.user["id"], password=member.password)), 401)
    token, _ = await cloud.issue(password_auth(
        user_id=member.user["id"], password=new_password,
        scope=project_scope(member.project["id"])))
    await assert_alive(cloud, token)
    await assert_alive(cloud, cloud.admin_token)


async def test_admin_password_reset_and_user_delete(cloud: Cloud) -> None:
    member = await cloud.member()
    new_password = cloud.new_password()
    response = await cloud.client.patch(f"/v3/users/{member.user['id']}", headers=cloud.admin,
                                        json={"user": {"password": new_password}})
    assert response.status_code == 200
    assert "password" not in response.json()["user"]
    await assert_dead(cloud, member.token)
    assert_error(await cloud.authenticate(password_auth(
        user_id=member.user["id"], password=member.password)), 401)
    # Renaming does not revoke; the new password logs in under the new name.
    token, body = await cloud.issue(password_auth(
        user_id=member.user["id"], password=new_password,
        scope=project_scope(member.project["id"])))
    await patch(cloud, f"/v3/users/{member.user['id']}", {"user": {"name": "renamed"}})
    await assert_alive(cloud, token)
    renamed = (await cloud.validate(token)).json()["token"]
    assert renamed["user"]["name"] == "renamed"
    assert {k: v for k, v in renamed.items() if k != "user"} == {
        k: v for k, v in body.items() if k != "user"}
    await cloud.issue(password_auth(name="renamed", domain={"id": "default"},
                                    password=new_password))

    await cloud.delete(f"/v3/users/{member.user['id']}")
    await assert_dead(cloud, token)
    assert_error(await cloud.authenticate(password_auth(
        user_id=member.user["id"], password=new_password)), 401)
    assert_error(await cloud.client.get(f"/v3/users/{member.user['id']}",
                                        headers=cloud.admin), 404)
    assert_error(await cloud.client.delete(f"/v3/users/{member.user['id']}",
                                           headers=cloud.admin), 404)


async def test_role_and_membership_removal(cloud: Cloud) -> None:
    member = await cloud.member()
    await cloud.grant(member.project["id"], member.user["id"], "reader")
    other = await cloud.create_project()
    await cloud.grant(other["id"], member.user["id"], "member")
    other_token, _ = await cloud.issue(password_auth(
        user_id=member.user["id"], password=member.password, scope=project_scope(other["id"])))

    await cloud.delete(f"/v3/projects/{member.project['id']}/users/{member.user['id']}/roles/"
                       f"{cloud.roles['member']}")
    # Still a reader there, yet the token that carried "member" is revoked...
    await assert_dead(cloud, member.token)
    # ...while the token for the other project lives on.
    await assert_alive(cloud, other_token)
    _, body = await cloud.issue(password_auth(
        user_id=member.user["id"], password=member.password,
        scope=project_scope(member.project["id"])))
    assert [r["name"] for r in body["roles"]] == ["reader"]

    # Roles held through a group end with the membership.
    project = await cloud.create_project()
    password = cloud.new_password()
    user = await cloud.create_user(password=password)
    group = (await cloud.post("/v3/groups", {"group": {"name": "crew"}}))["group"]
    await cloud.put(f"/v3/projects/{project['id']}/groups/{group['id']}/roles/"
                    f"{cloud.roles['member']}")
    await cloud.put(f"/v3/groups/{group['id']}/users/{user['id']}")
    token, body = await cloud.issue(password_auth(user_id=user["id"], password=password,
                                                  scope=project_scope(project["id"])))
    assert sorted(r["name"] for r in body["roles"]) == ["member", "reader"]
    await assert_alive(cloud, token)
    await cloud.delete(f"/v3/groups/{group['id']}/users/{user['id']}")
    await assert_dead(cloud, token)
    assert_error(await cloud.authenticate(password_auth(
        user_id=user["id"], password=password, scope=project_scope(project["id"]))), 401)


# The validation cache in front of the runtime ----------------------------------------------


async def cache_token(cloud: Cloud, token: str) -> None:
    """Validate through ``require_context`` twice: the second time from the cache."""
    headers = {"X-Auth-Token": token}
    assert (await cloud.client.get("/v3/auth/catalog", headers=headers)).status_code == 200
    hits = cloud.validator.hits
    assert (await cloud.client.get("/v3/auth/catalog", headers=headers)).status_code == 200
    assert cloud.validator.hits == hits + 1, "the token was not served from the cache"


async def test_cache_is_flushed_by_revocations(cloud: Cloud) -> None:
    assert cloud.validator in [getattr(f, "__self__", None)
                               for f in cloud.runtime.revocation_listeners]
    member = await cloud.member()
    # A cache nobody tells about revocations, to show what the real one would otherwise do.
    unsubscribed = CachingValidator(cloud.runtime)
    assert (await unsubscribed.validate(member.token))["user"]["id"] == member.user["id"]
    await cache_token(cloud, member.token)

    response = await cloud.client.delete(
        "/v3/auth/tokens", headers={**cloud.admin, "X-Subject-Token": member.token})
    assert response.status_code == 204
    misses = cloud.validator.misses
    assert_error(await cloud.client.get("/v3/auth/catalog", headers=member.headers), 401)
    assert cloud.validator.misses == misses + 1
    with pytest.raises(NotFound):
        await cloud.validator.validate(member.token)
    # The stale cache still believes in the token: flushing is what made the difference.
    assert (await unsubscribed.validate(member.token))["user"]["id"] == member.user["id"]

    # Every other change that revokes flushes the cache as well.
    actions: list[Callable[[Cloud, Member], Awaitable[None]]] = [
        _disable_user, _disable_project, _change_password, _remove_role, _delete_project]
    for action in actions:
        member = await cloud.member()
        await cache_token(cloud, member.token)
        await action(cloud, member)
        response = await cloud.client.get("/v3/auth/catalog", headers=member.headers)
        assert response.status_code == 401, action.__name__


async def _disable_user(cloud: Cloud, member: Member) -> None:
    await patch(cloud, f"/v3/users/{member.user['id']}", {"user": {"enabled": False}})


async def _disable_project(cloud: Cloud, member: Member) -> None:
    await patch(cloud, f"/v3/projects/{member.project['id']}", {"project": {"enabled": False}})


async def _change_password(cloud: Cloud, member: Member) -> None:
    response = await cloud.client.post(
        f"/v3/users/{member.user['id']}/password", headers=member.headers,
        json={"user": {"original_password": member.password, "password": cloud.new_password()}})
    assert response.status_code == 204


async def _remove_role(cloud: Cloud, member: Member) -> None:
    await cloud.delete(f"/v3/projects/{member.project['id']}/users/{member.user['id']}/roles/"
                       f"{cloud.roles['member']}")


async def _delete_project(cloud: Cloud, member: Member) -> None:
    await cloud.delete(f"/v3/projects/{member.project['id']}")


async def test_cache_is_flushed_after_the_revocation_commits(cloud: Cloud) -> None:
    """A request that validates while the revocation is still uncommitted must not keep
    the token alive in the cache once it commits."""
    member = await cloud.member()
    await cache_token(cloud, member.token)
    async with cloud.runtime.service() as svc:
        await svc.auth.revoke(member.token)
        # Not committed yet: a concurrent request still sees (and caches) a valid token.
        response = await cloud.client.get("/v3/auth/catalog", headers=member.headers)
        assert response.status_code == 200
    assert_error(await cloud.client.get("/v3/auth/catalog", headers=member.headers), 401)
    assert_error(await cloud.validate(member.token), 404)
