"""The must-show session of the identity issue, driven by the real ``openstack`` CLI.

One ``stratus up`` per database backend (SQLite, and the machine's PostgreSQL).
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.cloud import Cloud, base_env, free_port, running_cloud, user_env

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path: Path, db_url: str) -> Iterator[Cloud]:
    with running_cloud(tmp_path, db_url) as instance:
        yield instance


def validate(cloud: Cloud, admin_token: str, token: str) -> httpx.Response:
    return httpx.get(f"{cloud.auth_url}/auth/tokens",
                     headers={"X-Auth-Token": admin_token, "X-Subject-Token": token})


# One database is enough for the CLI session; identity on SQLite is the integration tests'.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_identity_session_with_the_real_cli(cloud: Cloud) -> None:
    admin_password = (cloud.data_dir / "admin-password").read_text().strip()
    for private in (cloud.clouds_yaml, cloud.data_dir / "admin-password"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600

    token = cloud.openstack_json("token", "issue")
    assert token["id"] and token["project_id"] and token["user_id"]
    assert token["expires"]

    catalog = cloud.openstack_json("catalog", "list")
    identity = next(entry for entry in catalog if entry["Type"] == "identity")
    public = [e for e in identity["Endpoints"] if e["interface"] == "public"]
    assert [(e["url"], e["region"]) for e in public] == [(cloud.auth_url, "RegionOne")]

    project = cloud.openstack_json("project", "create", "--description", "e2e", "demo")
    assert project["name"] == "demo" and project["domain_id"] == "default"

    user = cloud.openstack_json("user", "create", "--password", "alice-pw-123", "alice")
    assert user["name"] == "alice"
    assert "alice-pw-123" not in str(user) and "$2b$" not in str(user)

    added = cloud.openstack("role", "add", "--project", "demo", "--user", "alice", "member")
    assert added.stdout == ""

    assignments = cloud.openstack_json("role", "assignment", "list", "--names")
    rows = {(a["Role"], a["User"], a["Project"]) for a in assignments}
    assert ("member", "alice@Default", "demo@Default") in rows
    assert ("admin", "admin@Default", "admin@Default") in rows

    alice = user_env(cloud, "alice", "alice-pw-123", "demo")
    alice_token = cloud.openstack_json("token", "issue", cloud=False, env=alice)
    assert alice_token["project_id"] == project["id"]
    assert alice_token["user_id"] == user["id"]

    wrong = cloud.openstack("token", "issue", cloud=False, check=False,
                            env={**alice, "OS_PASSWORD": "wrong"})
    assert wrong.returncode != 0 and "401" in wrong.stderr

    assert validate(cloud, token["id"], alice_token["id"]).status_code == 200
    cloud.openstack("token", "revoke", alice_token["id"])
    assert validate(cloud, token["id"], alice_token["id"]).status_code == 404
    revoked = httpx.get(f"{cloud.auth_url}/auth/catalog",
                        headers={"X-Auth-Token": alice_token["id"]})
    assert revoked.status_code == 401
    assert revoked.json()["error"]["code"] == 401

    credential = cloud.openstack_json("application", "credential", "create", "--description",
                                      "ci", "alice-app", cloud=False, env=alice)
    assert credential["Secret"]
    assert [r["name"] for r in credential["Roles"]] == ["member", "reader"]
    app_env = {"OS_AUTH_URL": cloud.auth_url, "OS_AUTH_TYPE": "v3applicationcredential",
               "OS_APPLICATION_CREDENTIAL_ID": credential["ID"],
               "OS_APPLICATION_CREDENTIAL_SECRET": credential["Secret"],
               "OS_IDENTITY_API_VERSION": "3"}
    app_token = cloud.openstack_json("token", "issue", cloud=False, env=app_env)
    assert app_token["project_id"] == project["id"]
    assert app_token["user_id"] == user["id"]

    listed = cloud.openstack_json("application", "credential", "list", cloud=False, env=alice)
    assert [c["Name"] for c in listed] == ["alice-app"]
    assert "Secret" not in listed[0]

    # A member may not list users; an admin may.
    denied = cloud.openstack("user", "list", cloud=False, env=alice, check=False)
    assert denied.returncode != 0 and "403" in denied.stderr
    names = {u["Name"] for u in cloud.openstack_json("user", "list")}
    assert {"admin", "alice"} <= names

    assert cloud.stop() == 0
    log = cloud.log()
    for secret in (admin_password, "alice-pw-123", credential["Secret"], token["id"]):
        assert secret not in log


def test_restart_keeps_the_cloud(tmp_path: Path) -> None:
    cloud = Cloud(tmp_path / "data", free_port(), base_env())
    cloud.start()
    first = cloud.openstack_json("token", "issue")
    cloud.openstack("project", "create", "kept")
    assert cloud.stop() == 0

    cloud.port = free_port()
    cloud.start()
    try:
        again = cloud.openstack_json("token", "issue")
        assert again["user_id"] == first["user_id"]
        assert "kept" in {p["Name"] for p in cloud.openstack_json("project", "list")}
        # Tokens survive a restart: nothing about them lived in the old process.
        assert validate(cloud, again["id"], first["id"]).status_code == 200
        # The catalog follows the new port.
        catalog = cloud.openstack_json("catalog", "list")
        assert f"127.0.0.1:{cloud.port}/identity/v3" in str(catalog)
    finally:
        assert cloud.stop() == 0
