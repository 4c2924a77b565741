"""Split mode: identity in its own process, another API validating tokens over REST."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends

from stratus.core.auth import CachingValidator, require_context
from stratus.core.auth_remote import RemoteTokenValidator
from stratus.core.context import RequestContext
from stratus.core.web import ErrorStyle, create_app
from stratus.identity.fernet import KeyRepository
from stratus.identity.tokens import TokenFormatter, TokenPayload, new_audit_id
from tests.e2e.cloud import BIN, Cloud, base_env, free_port

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "split-mode-admin-pw"


@pytest.fixture
def identity(tmp_path: Path) -> Iterator[Cloud]:
    data_dir = tmp_path / "identity"
    port = free_port()
    env = base_env(STRATUS_ADMIN_PASSWORD=ADMIN_PASSWORD)
    subprocess.run([str(BIN / "stratus"), "bootstrap", "--data-dir", str(data_dir),
                    "--port", str(port)], env=env, check=True, capture_output=True)
    cloud = Cloud(data_dir, port, env, args=["serve", "identity-api"])
    cloud.start()
    try:
        yield cloud
    finally:
        cloud.stop()


def whoami_app(identity_url: str) -> Any:
    """A stand-in for another unit's API: one route that needs a valid token."""
    router = APIRouter()

    @router.get("/whoami")
    async def whoami(context: RequestContext = Depends(require_context)) -> dict[str, Any]:
        return {"user_id": context.user_id, "project_id": context.project_id,
                "roles": sorted(context.roles), "service_roles": context.service_roles,
                "request_id": context.request_id}

    remote = RemoteTokenValidator(identity_url, username="admin", password=ADMIN_PASSWORD,
                                  project="admin")
    # No caching here, so revocation is seen at once; caching is tested on its own.
    validator = CachingValidator(remote, ttl=0)
    return create_app(service="compute", style=ErrorStyle.COMPUTE, routers=[router],
                      state={"token_validator": validator})


@pytest.fixture
async def api(identity: Cloud) -> AsyncIterator[httpx.AsyncClient]:
    app = whoami_app(identity.auth_url)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://compute") as client:
        yield client
    await app.state.token_validator.inner.aclose()


async def password_token(identity: Cloud) -> tuple[str, dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{identity.auth_url}/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"], response.json()["token"]


async def test_remote_validation_follows_identity(identity: Cloud,
                                                  api: httpx.AsyncClient) -> None:
    token, body = await password_token(identity)

    response = await api.get("/whoami", headers={"X-Auth-Token": token})
    assert response.status_code == 200, response.text
    me = response.json()
    assert me["user_id"] == body["user"]["id"]
    assert me["project_id"] == body["project"]["id"]
    assert me["roles"] == ["admin", "member", "reader"]
    # The validation call carried our request id: identity logged it as the global id.
    assert f"global: {me['request_id']}" in identity.log()

    missing = await api.get("/whoami")
    assert missing.status_code == 401
    assert missing.json()["unauthorized"]["code"] == 401
    garbage = await api.get("/whoami", headers={"X-Auth-Token": "not-a-token"})
    assert garbage.status_code == 401

    async with httpx.AsyncClient() as client:
        revoke = await client.delete(f"{identity.auth_url}/auth/tokens",
                                     headers={"X-Auth-Token": token, "X-Subject-Token": token})
    assert revoke.status_code == 204
    assert (await api.get("/whoami", headers={"X-Auth-Token": token})).status_code == 401


async def test_service_token_admits_an_expired_user_token(identity: Cloud,
                                                          api: httpx.AsyncClient) -> None:
    service_token, body = await password_token(identity)
    keys = KeyRepository(identity.data_dir / "fernet-keys")
    now = dt.datetime.now(dt.UTC)
    expired = TokenFormatter(keys).encode(TokenPayload(
        user_id=body["user"]["id"], methods=["password"], project_id=body["project"]["id"],
        issued_at=now - dt.timedelta(hours=2), expires_at=now - dt.timedelta(hours=1),
        audit_ids=[new_audit_id()]))

    alone = await api.get("/whoami", headers={"X-Auth-Token": expired})
    assert alone.status_code == 401

    helped = await api.get("/whoami", headers={"X-Auth-Token": expired,
                                               "X-Service-Token": service_token})
    assert helped.status_code == 200, helped.text
    assert helped.json()["service_roles"] == ["admin", "member", "reader"]

    bad_service = await api.get("/whoami", headers={"X-Auth-Token": service_token,
                                                    "X-Service-Token": "forged"})
    assert bad_service.status_code == 401


async def test_identity_down_is_a_clear_503(identity: Cloud, api: httpx.AsyncClient) -> None:
    token, _ = await password_token(identity)
    assert identity.stop() == 0
    response = await api.get("/whoami", headers={"X-Auth-Token": token})
    assert response.status_code == 503
    assert "Identity service is unreachable" in response.json()["serviceUnavailable"]["message"]
