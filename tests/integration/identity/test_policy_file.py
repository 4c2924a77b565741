"""An operator's policy file overrides identity's in-code defaults."""

from __future__ import annotations

from pathlib import Path

import httpx

from stratus.core.config import Settings
from stratus.stack import Stack
from stratus.units import root_app, run_bootstrap
from tests.integration.identity.conftest import (
    ADMIN_PASSWORD,
    BASE_URL,
    PUBLIC_URL,
    assert_error,
    password_auth,
)


async def test_policy_file_lets_readers_list_users_and_stops_admins_deleting(
        tmp_path: Path, db_url: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text('"identity:list_users": "role:reader"\n"identity:delete_user": "!"\n')
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url=PUBLIC_URL,
                        admin_password=ADMIN_PASSWORD, policy_file=policy,
                        identity={"bcrypt_rounds": 4})
    stack = Stack(settings)
    try:
        await run_bootstrap(stack)
        app = await root_app(stack, ["identity-api"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=BASE_URL) as client:
            async def token(name: str, password: str, project: str) -> dict[str, str]:
                response = await client.post("/v3/auth/tokens", json=password_auth(
                    name=name, password=password,
                    scope={"project": {"name": project, "domain": {"id": "default"}}}))
                assert response.status_code == 201, response.text
                return {"X-Auth-Token": response.headers["X-Subject-Token"]}

            admin = await token("admin", ADMIN_PASSWORD, "admin")
            user = (await client.post("/v3/users", headers=admin, json={"user": {
                "name": "rita", "password": "rita-pw-1234"}})).json()["user"]
            project = (await client.post("/v3/projects", headers=admin, json={"project": {
                "name": "readers"}})).json()["project"]
            roles = {r["name"]: r["id"] for r in
                     (await client.get("/v3/roles", headers=admin)).json()["roles"]}
            grant = await client.put(
                f"/v3/projects/{project['id']}/users/{user['id']}/roles/{roles['reader']}",
                headers=admin)
            assert grant.status_code == 204
            reader = await token("rita", "rita-pw-1234", "readers")

            listed = await client.get("/v3/users", headers=reader)
            assert listed.status_code == 200, listed.text
            assert "rita" in {u["name"] for u in listed.json()["users"]}
            # Untouched rules keep their defaults.
            assert_error(await client.get("/v3/projects", headers=reader), 403)
            # "!" denies even the admin.
            assert_error(await client.delete(f"/v3/users/{user['id']}", headers=admin), 403)
    finally:
        await stack.aclose()
