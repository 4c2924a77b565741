"""What identity refuses, and how: status codes and Keystone's error body."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from stratus.identity.tokens import TokenPayload, new_audit_id

from .conftest import ADMIN_PASSWORD, Cloud, assert_error, password_auth, project_scope

MIB = 1024 * 1024


async def test_bad_credentials_scopes_and_methods(cloud: Cloud) -> None:
    wrong = await cloud.authenticate(password_auth(
        name="admin", domain={"name": "Default"}, password="not-the-password"))
    message = assert_error(wrong, 401)
    assert wrong.json()["error"]["title"] == "Unauthorized"
    assert "X-Subject-Token" not in wrong.headers
    no_password_user = await cloud.create_user()
    for body in (
        password_auth(name="nobody", domain={"name": "Default"}, password="whatever"),
        password_auth(user_id="0" * 32, password="whatever"),
        password_auth(name="admin", domain={"name": "NoSuchDomain"}, password=ADMIN_PASSWORD),
        password_auth(name="admin", domain={"id": "nosuchdomain"}, password=ADMIN_PASSWORD),
        password_auth(user_id=cloud.admin_user_id, password=ADMIN_PASSWORD.upper()),
        password_auth(user_id=no_password_user["id"], password=""),
    ):
        response = await cloud.authenticate(body)
        # Nothing tells an unknown user from a wrong password.
        assert assert_error(response, 401) == message, body
    # The right password still works, whatever the failures before.
    await cloud.issue(password_auth(user_id=cloud.admin_user_id, password=ADMIN_PASSWORD))

    # Scopes and methods.
    good = password_auth(user_id=cloud.admin_user_id, password=ADMIN_PASSWORD)
    # Unknown or unusable scope targets are 401 (Keystone's answer), never 404.
    for scope in ({"project": {"id": "0" * 32}},
                  {"project": {"name": "admin", "domain": {"name": "NoSuchDomain"}}},
                  {"domain": {"id": "nosuchdomain"}}):
        assert_error(await cloud.authenticate({"auth": {**good["auth"], "scope": scope}}), 401)
    unsupported = {"auth": {"identity": {"methods": ["totp"], "totp": None}}}
    assert_error(await cloud.authenticate(unsupported), 400)
    assert_error(await cloud.authenticate({"auth": {"identity": {"methods": ["totp"]}}}), 401)
    # A token method with a token that is not one.
    assert_error(await cloud.authenticate({"auth": {"identity": {
        "methods": ["token"], "token": {"id": "garbage"}}}}), 401)


async def test_malformed_and_mistyped_requests_are_400(cloud: Cloud) -> None:
    secret = cloud.new_password()
    user = {"user": {"id": cloud.admin_user_id, "password": secret}}
    bad_auth_bodies: list[Any] = [
        {},
        {"auth": {}},
        {"auth": {"identity": {"methods": [], "password": user}}},
        {"auth": {"identity": {"methods": "password", "password": user}}},
        {"auth": {"identity": {"methods": ["password"]}}},
        {"auth": {"identity": {"methods": ["password"],
                               "password": {"user": {"id": cloud.admin_user_id,
                                                     "password": 12345}}}}},
        {"auth": {"identity": {"methods": ["password"],
                               "password": {"user": {"name": "admin", "password": secret}}}}},
        {"auth": {"identity": {"methods": ["password"], "password": user},
                  "scope": {"galaxy": {}}}},
        {"auth": {"identity": {"methods": ["password"], "password": user},
                  "scope": {"project": {"id": cloud.admin_project_id},
                            "domain": {"id": "default"}}}},
        {"auth": {"identity": {"methods": ["password"], "password": user},
                  "scope": {"system": {"all": False}}}},
        {"auth": {"identity": {"methods": ["password"], "password": user},
                  "scope": {"project": {"name": "admin"}}}},
        {"auth": {"identity": {"methods": ["password"], "password": user}, "extra": 1}},
        {"auth": {"identity": {"methods": ["password"], "password": user}}, "extra": 1},
        ["auth"],
    ]
    for body in bad_auth_bodies:
        response = await cloud.client.post("/v3/auth/tokens", json=body)
        assert_error(response, 400)
        assert response.json()["error"]["title"] == "Bad Request"

    for raw in (b'{"auth": {', b"", b"not json", b'{"auth": {"identity": }}'):
        response = await cloud.client.post(
            "/v3/auth/tokens", content=raw, headers={"Content-Type": "application/json"})
        assert_error(response, 400)

    # Resource bodies are just as strict about types (and never echo a password back).
    for path, body in (
        ("/v3/users", {"user": {"name": "u", "enabled": "yes", "password": secret}}),
        ("/v3/users", {"user": {"name": "u", "password": 1234}}),
        ("/v3/users", {"user": {"name": 7}}),
        ("/v3/users", {"user": {"name": ""}}),
        ("/v3/projects", {"project": {"name": "p", "enabled": 1}}),
        ("/v3/projects", {"project": {"name": "p", "tags": "a,b"}}),
        ("/v3/domains", {"domain": "d"}),
        ("/v3/roles", {"role": {}}),
        ("/v3/groups", {"group": {"name": ["g"]}}),
    ):
        response = await cloud.client.post(path, json=body, headers=cloud.admin)
        assert_error(response, 400)
    response = await cloud.client.patch(f"/v3/users/{cloud.admin_user_id}", headers=cloud.admin,
                                        json={"user": {"enabled": "no"}})
    assert_error(response, 400)
    response = await cloud.client.post(f"/v3/users/{cloud.admin_user_id}/password",
                                       headers=cloud.admin,
                                       json={"user": {"password": secret}})
    assert_error(response, 400)
    for query in ("?enabled=maybe", "?enabled=2"):
        assert_error(await cloud.client.get(f"/v3/projects{query}", headers=cloud.admin), 400)
    # None of it changed anything.
    users = (await cloud.get("/v3/users", name="u"))["users"]
    assert users == []
    assert (await cloud.get(f"/v3/users/{cloud.admin_user_id}"))["user"]["enabled"] is True


async def test_bodies_over_one_mebibyte_are_413(cloud: Cloud) -> None:
    big = b'{"auth": "' + b"x" * MIB + b'"}'
    response = await cloud.client.post("/v3/auth/tokens", content=big,
                                       headers={"Content-Type": "application/json"})
    assert response.request.headers["Content-Length"] == str(len(big))
    assert_error(response, 413)
    response = await cloud.client.post("/v3/projects", content=big,
                                       headers={**cloud.admin, "Content-Type": "application/json"})
    assert_error(response, 413)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"project": {"name": "chunky", "description": "'
        for _ in range(17):
            yield b"y" * (64 * 1024)
        yield b'"}}'

    response = await cloud.client.post("/v3/projects", content=chunks(),
                                       headers={**cloud.admin,
                                                "Content-Type": "application/json"})
    assert "Content-Length" not in response.request.headers
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert_error(response, 413)
    assert (await cloud.get("/v3/projects", name="chunky"))["projects"] == []

    # Just under the limit is read and judged on its content, chunked or not.
    description = "z" * (MIB - 200)

    async def small_chunks() -> AsyncIterator[bytes]:
        data = f'{{"project": {{"name": "fits", "description": "{description}"}}}}'.encode()
        for start in range(0, len(data), 64 * 1024):
            yield data[start:start + 64 * 1024]

    response = await cloud.client.post("/v3/projects", content=small_chunks(),
                                        headers={**cloud.admin,
                                                 "Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    assert len(response.json()["project"]["description"]) == MIB - 200


def _payload(cloud: Cloud, *, expires_in: float, lifetime: float = 3600) -> TokenPayload:
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(seconds=expires_in)
    return TokenPayload(user_id=cloud.admin_user_id, methods=["password"], expires_at=expires,
                        issued_at=expires - dt.timedelta(seconds=lifetime),
                        audit_ids=[new_audit_id()], project_id=cloud.admin_project_id)


async def test_expired_tokens_are_rejected(cloud: Cloud) -> None:
    formatter = cloud.runtime.formatter
    # Control: a token crafted the same way but still valid is accepted...
    valid = formatter.encode(_payload(cloud, expires_in=600))
    assert (await cloud.validate(valid)).status_code == 200
    assert (await cloud.client.get("/v3/auth/catalog",
                                   headers={"X-Auth-Token": valid})).status_code == 200
    # ...so only the expiry makes this one fail.
    expired = formatter.encode(_payload(cloud, expires_in=-60))
    assert_error(await cloud.validate(expired), 404)
    head = await cloud.client.head("/v3/auth/tokens",
                                   headers={**cloud.admin, "X-Subject-Token": expired})
    assert head.status_code == 404
    assert_error(await cloud.client.get("/v3/auth/catalog",
                                        headers={"X-Auth-Token": expired}), 401)
    assert_error(await cloud.client.get("/v3/users", headers={"X-Auth-Token": expired}), 401)
    assert_error(await cloud.authenticate({"auth": {"identity": {
        "methods": ["token"], "token": {"id": expired}}}}), 401)
    # Within the allow-expired window a service may still look at it...
    response = await cloud.validate(expired, query="?allow_expired=1")
    assert response.status_code == 200
    expires_at = dt.datetime.fromisoformat(response.json()["token"]["expires_at"].replace(
        "Z", "+00:00"))
    assert expires_at < dt.datetime.now(dt.UTC)
    # ...and a valid service token lets the user's expired token finish its work.
    with_service = await cloud.client.get("/v3/auth/catalog", headers={
        "X-Auth-Token": expired, "X-Service-Token": cloud.admin_token})
    assert with_service.status_code == 200
    # Past the window it is gone for good.
    window = cloud.settings.identity.allow_expired_window
    ancient = formatter.encode(_payload(cloud, expires_in=-(window + 60)))
    assert_error(await cloud.validate(ancient, query="?allow_expired=1"), 404)


async def test_member_policy(cloud: Cloud) -> None:
    member = await cloud.member()
    me = member.user["id"]
    headers = member.headers

    async def denied(method: str, path: str, **kwargs: Any) -> None:
        response = await cloud.client.request(method, path, headers=headers, **kwargs)
        assert_error(response, 403)
        assert response.json()["error"]["title"] == "Forbidden"

    await denied("GET", "/v3/users")
    await denied("GET", f"/v3/users/{cloud.admin_user_id}")
    await denied("PATCH", f"/v3/users/{me}", json={"user": {"enabled": True}})
    await denied("POST", "/v3/projects", json={"project": {"name": "mine"}})
    await denied("GET", "/v3/projects")
    await denied("GET", f"/v3/projects/{cloud.admin_project_id}")
    await denied("GET", "/v3/domains")
    await denied("GET", "/v3/roles")
    await denied("GET", "/v3/role_assignments")
    await denied("PUT", f"/v3/projects/{member.project['id']}/users/{me}/roles/"
                        f"{cloud.roles['admin']}")
    await denied("GET", f"/v3/users/{cloud.admin_user_id}/projects")
    await denied("POST", f"/v3/users/{cloud.admin_user_id}/password",
                 json={"user": {"password": "x", "original_password": ADMIN_PASSWORD}})

    own = await cloud.client.get(f"/v3/users/{me}", headers=headers)
    assert own.status_code == 200
    assert own.json()["user"]["id"] == me
    assert "password" not in own.json()["user"]
    project = await cloud.client.get(f"/v3/projects/{member.project['id']}", headers=headers)
    assert project.status_code == 200
    projects = await cloud.client.get(f"/v3/users/{me}/projects", headers=headers)
    assert [p["id"] for p in projects.json()["projects"]] == [member.project["id"]]
    mine = await cloud.client.get("/v3/role_assignments", params={"user.id": me},
                                  headers=headers)
    assert mine.status_code == 200
    assert {a["role"]["id"] for a in mine.json()["role_assignments"]} == {cloud.roles["member"]}
    # The member still cannot scope to a project it holds no role on.
    assert_error(await cloud.authenticate(password_auth(
        user_id=me, password=member.password, scope=project_scope(cloud.admin_project_id))), 401)
