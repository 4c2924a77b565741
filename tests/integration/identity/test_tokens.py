"""Issuing, validating, checking and revoking tokens: ``/v3/auth/tokens`` and friends."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from .conftest import (
    ADMIN_PASSWORD,
    Cloud,
    assert_error,
    password_auth,
    project_scope,
)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
AUDIT_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
IDENTITY_URL = "http://test/identity/v3"


def parse(value: str) -> dt.datetime:
    assert TIMESTAMP.match(value), value
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def role_names(body: dict[str, Any]) -> list[str]:
    return sorted(r["name"] for r in body["roles"])


def assert_times(body: dict[str, Any], lifetime: int = 3600) -> None:
    issued, expires = parse(body["issued_at"]), parse(body["expires_at"])
    now = dt.datetime.now(dt.UTC)
    assert abs((issued - now).total_seconds()) < 60
    assert (expires - issued).total_seconds() == pytest.approx(lifetime, abs=1)


async def assert_validates_identically(cloud: Cloud, token: str, body: dict[str, Any]) -> None:
    """``GET /v3/auth/tokens`` answers exactly the body ``POST`` gave (Tempest compares dicts)."""
    response = await cloud.validate(token)
    assert response.status_code == 200, response.text
    assert response.headers["X-Subject-Token"] == token
    assert response.json() == {"token": body}


# Issuing ---------------------------------------------------------------------------------


async def test_admin_token_shape_and_nocatalog(cloud: Cloud) -> None:
    body = cloud.admin_body
    assert body["methods"] == ["password"]
    assert body["user"] == {"id": cloud.admin_user_id, "name": "admin",
                            "domain": {"id": "default", "name": "Default"},
                            "password_expires_at": None}
    assert body["project"]["name"] == "admin"
    assert body["project"]["domain"] == {"id": "default", "name": "Default"}
    assert body["is_domain"] is False
    # admin is granted alone; bootstrap's implied roles add member and reader.
    assert role_names(body) == ["admin", "member", "reader"]
    assert all(set(r) == {"id", "name"} for r in body["roles"])
    assert_times(body)
    assert len(body["audit_ids"]) == 1 and AUDIT_ID.match(body["audit_ids"][0])
    (identity,) = [s for s in body["catalog"] if s["type"] == "identity"]
    assert identity["name"] == "keystone"
    assert sorted(e["interface"] for e in identity["endpoints"]) == ["admin", "internal", "public"]
    for endpoint in identity["endpoints"]:
        assert endpoint["url"] == IDENTITY_URL
        assert endpoint["region"] == endpoint["region_id"] == "RegionOne"
        assert endpoint["id"]
    assert "domain" not in body and "system" not in body
    await assert_validates_identically(cloud, cloud.admin_token, body)

    # ?nocatalog leaves the catalog out, on issue and on validation.
    body = password_auth(user_id=cloud.admin_user_id, password=ADMIN_PASSWORD,
                         scope=project_scope(cloud.admin_project_id))
    for query in ("?nocatalog", "?nocatalog=1", "?nocatalog=true"):
        token, token_body = await cloud.issue(body, query=query)
        assert "catalog" not in token_body
        assert role_names(token_body) == ["admin", "member", "reader"]
        response = await cloud.validate(token, query="?nocatalog")
        assert response.json() == {"token": token_body}
        with_catalog = (await cloud.validate(token)).json()["token"]
        assert with_catalog["catalog"] == cloud.admin_body["catalog"]
    _, token_body = await cloud.issue(body, query="?nocatalog=false")
    assert token_body["catalog"]


async def test_password_and_project_scope_variants(cloud: Cloud) -> None:
    domain = await cloud.post("/v3/domains", {"domain": {"name": "Elsewhere"}})
    domain_id = domain["domain"]["id"]
    project = await cloud.create_project("shared-name", domain_id=domain_id)
    # A same-named project in Default must not be picked for the other domain.
    decoy = await cloud.create_project("shared-name")
    password = cloud.new_password()
    user = await cloud.create_user("alice", password=password, domain_id=domain_id)
    await cloud.grant(project["id"], user["id"], "reader")
    await cloud.grant(decoy["id"], user["id"], "member")
    users: list[dict[str, Any]] = [
        {"user_id": user["id"]},
        {"name": "alice", "domain": {"id": domain_id}},
        {"name": "alice", "domain": {"name": "Elsewhere"}},
    ]
    scopes: list[dict[str, Any]] = [
        {"project": {"id": project["id"]}},
        {"project": {"name": "shared-name", "domain": {"id": domain_id}}},
        {"project": {"name": "shared-name", "domain": {"name": "Elsewhere"}}},
    ]
    for who in users:
        for scope in scopes:
            token, body = await cloud.issue(password_auth(password=password, scope=scope, **who))
            assert body["user"]["id"] == user["id"]
            assert body["user"]["domain"] == {"id": domain_id, "name": "Elsewhere"}
            assert body["project"] == {"id": project["id"], "name": "shared-name",
                                       "domain": {"id": domain_id, "name": "Elsewhere"}}
            assert role_names(body) == ["reader"]
            assert body["catalog"]
            await assert_validates_identically(cloud, token, body)
    # The same name in Default is the decoy, where alice is a member.
    _, body = await cloud.issue(password_auth(password=password, user_id=user["id"], scope={
        "project": {"name": "shared-name", "domain": {"id": "default"}}}))
    assert body["project"]["id"] == decoy["id"]
    assert role_names(body) == ["member", "reader"]


async def test_domain_scope(cloud: Cloud) -> None:
    password = cloud.new_password()
    user = await cloud.create_user(password=password)
    # No role on the domain yet: no domain-scoped token.
    no_role = await cloud.authenticate(password_auth(
        user_id=user["id"], password=password, scope={"domain": {"id": "default"}}))
    assert_error(no_role, 401)
    await cloud.put(f"/v3/domains/default/users/{user['id']}/roles/{cloud.roles['member']}")
    for scope in ({"domain": {"id": "default"}}, {"domain": {"name": "Default"}}):
        token, body = await cloud.issue(password_auth(user_id=user["id"], password=password,
                                                      scope=scope))
        assert body["domain"] == {"id": "default", "name": "Default"}
        assert "project" not in body and "system" not in body and "is_domain" not in body
        assert role_names(body) == ["member", "reader"]
        assert body["catalog"]
        await assert_validates_identically(cloud, token, body)
    domains = await cloud.client.get("/v3/auth/domains", headers={"X-Auth-Token": token})
    assert [d["id"] for d in domains.json()["domains"]] == ["default"]


async def test_bootstrap_admin_logs_in_domain_scoped(cloud: Cloud) -> None:
    """As on DevStack, bootstrap makes admin an admin of the Default domain: Horizon logs
    in domain-scoped first, by user name and domain name."""
    for scope in ({"domain": {"id": "default"}}, {"domain": {"name": "Default"}}):
        token, body = await cloud.issue(password_auth(
            name="admin", domain={"name": "Default"}, password=ADMIN_PASSWORD, scope=scope))
        assert body["domain"] == {"id": "default", "name": "Default"}
        assert "project" not in body and "system" not in body
        assert role_names(body) == ["admin", "member", "reader"]
        await assert_validates_identically(cloud, token, body)
    domains = await cloud.client.get("/v3/auth/domains", headers={"X-Auth-Token": token})
    assert [d["name"] for d in domains.json()["domains"]] == ["Default"]
    # The domain-scoped admin may manage the domain's users.
    users = await cloud.client.get("/v3/users", params={"domain_id": "default"},
                                   headers={"X-Auth-Token": token})
    assert users.status_code == 200, users.text
    assert "admin" in {u["name"] for u in users.json()["users"]}


async def test_system_scope(cloud: Cloud) -> None:
    token, body = await cloud.issue(password_auth(
        user_id=cloud.admin_user_id, password=ADMIN_PASSWORD, scope={"system": {"all": True}}))
    assert body["system"] == {"all": True}
    assert "project" not in body and "domain" not in body
    assert role_names(body) == ["admin", "member", "reader"]
    assert body["catalog"]
    await assert_validates_identically(cloud, token, body)
    system = await cloud.client.get("/v3/auth/system", headers={"X-Auth-Token": token})
    assert system.status_code == 200
    assert system.json()["system"] == [{"all": True}]
    # Somebody without a system role gets no system-scoped token and an empty list.
    member = await cloud.member()
    denied = await cloud.authenticate(password_auth(
        user_id=member.user["id"], password=member.password, scope={"system": {"all": True}}))
    assert_error(denied, 401)
    system = await cloud.client.get("/v3/auth/system", headers=member.headers)
    assert system.json()["system"] == []


async def test_unscoped_tokens_carry_no_project_roles_or_catalog(cloud: Cloud) -> None:
    password = cloud.new_password()
    user = await cloud.create_user(password=password)
    token, body = await cloud.issue(password_auth(user_id=user["id"], password=password))
    assert set(body) == {"methods", "user", "audit_ids", "expires_at", "issued_at"}
    assert_times(body)
    await assert_validates_identically(cloud, token, body)
    # admin has a default project, so no scope means that project; "unscoped" means none.
    _, default_scoped = await cloud.issue(password_auth(user_id=cloud.admin_user_id,
                                                        password=ADMIN_PASSWORD))
    assert default_scoped["project"]["id"] == cloud.admin_project_id
    token, unscoped = await cloud.issue(password_auth(
        user_id=cloud.admin_user_id, password=ADMIN_PASSWORD, scope="unscoped"))
    for key in ("project", "roles", "catalog", "domain", "system"):
        assert key not in unscoped
    await assert_validates_identically(cloud, token, unscoped)


# Validating, checking, revoking ----------------------------------------------------------


async def test_head_get_delete_token_lifecycle(cloud: Cloud) -> None:
    member = await cloud.member()
    subject = {"X-Subject-Token": member.token}
    # A user may validate its own token; the admin may validate anybody's.
    for caller in (member.headers, cloud.admin):
        head = await cloud.client.head("/v3/auth/tokens", headers={**caller, **subject})
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["X-Subject-Token"] == member.token
        got = await cloud.client.get("/v3/auth/tokens", headers={**caller, **subject})
        assert got.json() == {"token": member.body}
    # Another non-admin may not.
    other = await cloud.member()
    assert_error(await cloud.client.get("/v3/auth/tokens",
                                        headers={**other.headers, **subject}), 403)
    assert_error(await cloud.client.delete("/v3/auth/tokens",
                                           headers={**other.headers, **subject}), 403)

    deleted = await cloud.client.delete("/v3/auth/tokens", headers={**cloud.admin, **subject})
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_error(await cloud.validate(member.token), 404)
    head = await cloud.client.head("/v3/auth/tokens", headers={**cloud.admin, **subject})
    assert head.status_code == 404
    assert_error(await cloud.client.get(f"/v3/users/{member.user['id']}",
                                        headers=member.headers), 401)
    assert_error(await cloud.client.delete("/v3/auth/tokens",
                                           headers={**cloud.admin, **subject}), 404)
    # Only that token: a new one for the same user works.
    _, fresh = await cloud.issue(password_auth(user_id=member.user["id"],
                                               password=member.password))
    assert fresh["user"]["id"] == member.user["id"]

    # A user may revoke its own token.
    member = await cloud.member()
    response = await cloud.client.delete(
        "/v3/auth/tokens", headers={**member.headers, "X-Subject-Token": member.token})
    assert response.status_code == 204
    assert_error(await cloud.client.get("/v3/auth/catalog", headers=member.headers), 401)
    # No subject token, no caller token, or a subject that is no token at all.
    assert_error(await cloud.client.get("/v3/auth/tokens", headers=cloud.admin), 400)
    assert_error(await cloud.client.get(
        "/v3/auth/tokens", headers={"X-Subject-Token": cloud.admin_token}), 401)
    assert_error(await cloud.validate("not-a-token"), 404)
    assert_error(await cloud.validate(cloud.admin_token[:-4] + "AAAA"), 404)


async def test_rescoping_keeps_expiry_and_audit_chain(cloud: Cloud) -> None:
    member = await cloud.member()
    unscoped_token, unscoped = await cloud.issue(password_auth(
        user_id=member.user["id"], password=member.password, scope="unscoped"))
    assert "project" not in unscoped
    rescope = {"auth": {"identity": {"methods": ["token"], "token": {"id": unscoped_token}},
                        "scope": project_scope(member.project["id"])}}
    token, body = await cloud.issue(rescope)
    assert body["project"]["id"] == member.project["id"]
    assert role_names(body) == ["member", "reader"]
    assert body["expires_at"] == unscoped["expires_at"]
    assert len(body["audit_ids"]) == 2
    assert body["audit_ids"][1] == unscoped["audit_ids"][0]
    assert body["audit_ids"][0] != unscoped["audit_ids"][0]
    assert sorted(body["methods"]) == ["password", "token"]
    assert parse(body["issued_at"]) >= parse(unscoped["issued_at"])
    await assert_validates_identically(cloud, token, body)
    # Rescoping the rescoped token keeps the chain of the original, not of the middle one.
    again = {"auth": {"identity": {"methods": ["token"], "token": {"id": token}},
                      "scope": project_scope(member.project["id"])}}
    token2, body2 = await cloud.issue(again)
    assert body2["audit_ids"][1] == unscoped["audit_ids"][0]
    assert body2["expires_at"] == unscoped["expires_at"]
    await assert_validates_identically(cloud, token2, body2)
    # No rescoping into a project the user holds no role on.
    denied = await cloud.authenticate({"auth": {
        "identity": {"methods": ["token"], "token": {"id": unscoped_token}},
        "scope": project_scope(cloud.admin_project_id)}})
    assert_error(denied, 401)


async def test_auth_catalog_projects_domains(cloud: Cloud) -> None:
    member = await cloud.member()
    catalog = await cloud.client.get("/v3/auth/catalog", headers=member.headers)
    assert catalog.status_code == 200
    assert catalog.json()["catalog"] == member.body["catalog"]
    assert catalog.json()["links"]["self"] == "http://test/identity/v3/auth/catalog"

    # A second project through a group; a disabled one is not listed.
    second = await cloud.create_project()
    hidden = await cloud.create_project()
    group = (await cloud.post("/v3/groups", {"group": {"name": "g"}}))["group"]
    await cloud.put(f"/v3/groups/{group['id']}/users/{member.user['id']}")
    await cloud.put(f"/v3/projects/{second['id']}/groups/{group['id']}/roles/"
                    f"{cloud.roles['reader']}")
    await cloud.grant(hidden["id"], member.user["id"], "member")
    response = await cloud.client.patch(f"/v3/projects/{hidden['id']}", headers=cloud.admin,
                                        json={"project": {"enabled": False}})
    assert response.status_code == 200
    projects = await cloud.client.get("/v3/auth/projects", headers=member.headers)
    assert projects.status_code == 200
    assert sorted(p["id"] for p in projects.json()["projects"]) == sorted(
        [member.project["id"], second["id"]])
    domains = await cloud.client.get("/v3/auth/domains", headers=member.headers)
    assert domains.json()["domains"] == []
    admin_projects = await cloud.client.get("/v3/auth/projects", headers=cloud.admin)
    assert [p["name"] for p in admin_projects.json()["projects"]] == ["admin"]
    for path in ("/v3/auth/catalog", "/v3/auth/projects", "/v3/auth/domains",
                 "/v3/auth/system"):
        assert_error(await cloud.client.get(path), 401)
