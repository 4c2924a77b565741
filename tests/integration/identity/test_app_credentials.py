"""Application credentials: a secret shown once, a project, and only the roles delegated."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .conftest import Cloud, Member, assert_error, project_scope


def app_cred_auth(secret: str, *, cred_id: str | None = None, name: str | None = None,
                  user: dict[str, Any] | None = None,
                  scope: dict[str, Any] | None = None) -> dict[str, Any]:
    credential: dict[str, Any] = {"secret": secret}
    if cred_id is not None:
        credential["id"] = cred_id
    if name is not None:
        credential["name"] = name
    if user is not None:
        credential["user"] = user
    auth: dict[str, Any] = {"identity": {"methods": ["application_credential"],
                                         "application_credential": credential}}
    if scope is not None:
        auth["scope"] = scope
    return {"auth": auth}


async def create(cloud: Cloud, member: Member, status: int = 201,
                 **fields: Any) -> dict[str, Any]:
    response = await cloud.client.post(
        f"/v3/users/{member.user['id']}/application_credentials", headers=member.headers,
        json={"application_credential": fields})
    if status != 201:
        assert_error(response, status)
        return {}
    assert response.status_code == 201, response.text
    cred: dict[str, Any] = response.json()["application_credential"]
    secret = cred["secret"]
    assert isinstance(secret, str) and len(secret) >= 16
    # Shown once: from here on no response may contain it.
    cloud.client.secrets.add(secret)
    return cred


async def test_create_show_list_and_log_in(cloud: Cloud) -> None:
    member = await cloud.member()
    uid = member.user["id"]
    base = f"/v3/users/{uid}/application_credentials"
    cred = await create(cloud, member, name="ci", description="for CI",
                        roles=[{"name": "reader"}])
    secret = cred.pop("secret")
    assert cred["name"] == "ci" and cred["description"] == "for CI"
    assert cred["user_id"] == uid and cred["project_id"] == member.project["id"]
    assert cred["roles"] == [{"id": cloud.roles["reader"], "name": "reader", "domain_id": None}]
    assert cred["unrestricted"] is False and cred["expires_at"] is None
    assert cred["links"]["self"] == f"http://test/identity{base}/{cred['id']}"

    shown = await cloud.client.get(f"{base}/{cred['id']}", headers=member.headers)
    assert shown.status_code == 200
    assert shown.json()["application_credential"] == cred  # the same, minus the secret
    listed = await cloud.client.get(base, headers=member.headers)
    assert listed.json()["application_credentials"] == [cred]
    by_name = await cloud.client.get(base, params={"name": "ci"}, headers=member.headers)
    assert [c["id"] for c in by_name.json()["application_credentials"]] == [cred["id"]]
    none = await cloud.client.get(base, params={"name": "cd"}, headers=member.headers)
    assert none.json()["application_credentials"] == []
    # The admin may look too (still no secret); other users may not.
    assert (await cloud.get(f"{base}/{cred['id']}"))["application_credential"] == cred
    other = await cloud.member()
    assert_error(await cloud.client.get(base, headers=other.headers), 403)
    assert_error(await cloud.client.get(f"{base}/{cred['id']}", headers=other.headers), 403)

    # Log in by id, by name and user id, by name and user name plus domain.
    for auth in (app_cred_auth(secret, cred_id=cred["id"]),
                 app_cred_auth(secret, name="ci", user={"id": uid}),
                 app_cred_auth(secret, name="ci", user={"name": member.user["name"],
                                                        "domain": {"name": "Default"}}),
                 app_cred_auth(secret, cred_id=cred["id"],
                               scope=project_scope(member.project["id"]))):
        token, body = await cloud.issue(auth)
        assert body["methods"] == ["application_credential"]
        assert body["user"]["id"] == uid
        assert body["project"]["id"] == member.project["id"]
        # Only the delegated role, although the user holds member (and so reader) there.
        assert [r["name"] for r in body["roles"]] == ["reader"]
        assert body["application_credential"] == {"id": cred["id"], "name": "ci",
                                                  "restricted": True}
        assert body["catalog"]
        validated = await cloud.validate(token)
        assert validated.json() == {"token": body}

    # Without roles given, the credential gets every role of the creating token.
    everything = await create(cloud, member, name="all")
    assert sorted(r["name"] for r in everything["roles"]) == ["member", "reader"]
    _, body = await cloud.issue(app_cred_auth(everything["secret"], cred_id=everything["id"]))
    assert sorted(r["name"] for r in body["roles"]) == ["member", "reader"]
    # A secret of the user's choosing works the same (shown once, like a generated one).
    chosen = "Chosen-app-cred-secret-51f0c2"
    own = await create(cloud, member, name="own", secret=chosen)
    assert own["secret"] == chosen
    await cloud.issue(app_cred_auth(chosen, cred_id=own["id"]))
    expiring = await create(cloud, member, name="soon", expires_at="2999-01-01T00:00:00Z")
    assert expiring["expires_at"] == "2999-01-01T00:00:00.000000Z"
    _, body = await cloud.issue(app_cred_auth(expiring["secret"], cred_id=expiring["id"]))
    assert body["expires_at"] < "2999-01-01"


async def test_limits_rescoping_deletion_and_expiry(cloud: Cloud) -> None:
    member = await cloud.member()
    base = f"/v3/users/{member.user['id']}/application_credentials"
    cred = await create(cloud, member, name="bot", roles=[{"id": cloud.roles["member"]}])
    secret = cred["secret"]

    # Roles the user does not hold cannot be delegated; names are unique per user.
    await create(cloud, member, 403, name="greedy", roles=[{"name": "admin"}])
    await create(cloud, member, 409, name="bot")
    await create(cloud, member, 400, name="past", expires_at="2001-01-01T00:00:00Z")
    await create(cloud, member, 400, name="bad", unrestricted="yes")
    # Only the user itself creates them, and only with a project-scoped token.
    other = await cloud.member()
    assert_error(await cloud.client.post(base, headers=other.headers, json={
        "application_credential": {"name": "theirs"}}), 403)
    assert_error(await cloud.client.post(base, headers=cloud.admin, json={
        "application_credential": {"name": "admins"}}), 403)

    assert_error(await cloud.authenticate(app_cred_auth("wrong", cred_id=cred["id"])), 401)
    assert_error(await cloud.authenticate(app_cred_auth(secret, cred_id="0" * 32)), 401)
    assert_error(await cloud.authenticate(app_cred_auth(secret, name="bot",
                                                        user={"id": other.user["id"]})), 401)
    # Bound to its project: no other project, no domain or system scope.
    elsewhere = await cloud.create_project()
    await cloud.grant(elsewhere["id"], member.user["id"], "member")
    for scope in (project_scope(elsewhere["id"]), {"domain": {"id": "default"}},
                  {"system": {"all": True}}):
        assert_error(await cloud.authenticate(app_cred_auth(secret, cred_id=cred["id"],
                                                            scope=scope)), 401)

    token, body = await cloud.issue(app_cred_auth(secret, cred_id=cred["id"]))
    # As in Keystone: the delegated roles the user still holds, nothing implied added.
    assert [r["name"] for r in body["roles"]] == ["member"]
    # A token made from an application credential cannot be rescoped or used to make more.
    for scope in (project_scope(member.project["id"]), project_scope(elsewhere["id"])):
        assert_error(await cloud.authenticate({"auth": {
            "identity": {"methods": ["token"], "token": {"id": token}}, "scope": scope}}), 401)
    assert_error(await cloud.client.post(base, headers={"X-Auth-Token": token}, json={
        "application_credential": {"name": "child"}}), 403)
    assert (await cloud.client.get("/v3/auth/catalog",
                                   headers={"X-Auth-Token": token})).status_code == 200

    response = await cloud.client.delete(f"{base}/{cred['id']}", headers=member.headers)
    assert response.status_code == 204
    assert_error(await cloud.client.get(f"{base}/{cred['id']}", headers=member.headers), 404)
    assert_error(await cloud.client.delete(f"{base}/{cred['id']}", headers=member.headers), 404)
    assert_error(await cloud.authenticate(app_cred_auth(secret, cred_id=cred["id"])), 401)
    assert_error(await cloud.validate(token), 404)
    assert_error(await cloud.client.get("/v3/auth/catalog",
                                        headers={"X-Auth-Token": token}), 401)
    # The user's own password tokens are untouched.
    assert (await cloud.validate(member.token)).status_code == 200

    # Deleting the user takes its credentials along.
    second = await create(cloud, member, name="second")
    await cloud.delete(f"/v3/users/{member.user['id']}")
    assert_error(await cloud.authenticate(app_cred_auth(second["secret"],
                                                        cred_id=second["id"])), 401)


    # An expired credential neither logs in nor keeps its tokens.
    member = await cloud.member()
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)).isoformat()
    cred = await create(cloud, member, name="brief", expires_at=soon)
    token, body = await cloud.issue(app_cred_auth(cred["secret"], cred_id=cred["id"]))
    # The token expires with its credential, not an hour later.
    assert body["expires_at"] <= cred["expires_at"]
    # Push the credential's expiry into the past, as time passing would.
    async with cloud.runtime.service() as svc:
        row = await svc.app_credentials.get(cred["id"])
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    assert_error(await cloud.authenticate(app_cred_auth(cred["secret"], cred_id=cred["id"])),
                 401)
    assert_error(await cloud.validate(token), 404)
