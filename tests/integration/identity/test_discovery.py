"""Version discovery, request ids, and the response checks every other test relies on."""

from __future__ import annotations

import httpx
import pytest

from .conftest import ADMIN_PASSWORD, Cloud, assert_error, check_response

V3_MEDIA_TYPE = "application/vnd.openstack.identity-v3+json"


async def test_version_discovery_and_request_ids(cloud: Cloud) -> None:
    response = await cloud.client.get("/")
    assert response.status_code == 300
    values = response.json()["versions"]["values"]
    assert [v["id"] for v in values] == ["v3.14"]
    (v3,) = values
    assert v3["status"] == "stable"
    assert v3["links"] == [{"rel": "self", "href": "http://test/identity/v3/"}]
    assert v3["media-types"] == [{"base": "application/json", "type": V3_MEDIA_TYPE}]
    # keystoneauth builds its URLs from the versioned document's self link.
    for path in ("/v3", "/v3/"):
        response = await cloud.client.get(path)
        assert response.status_code == 200
        version = response.json()["version"]
        assert version["id"] == "v3.14"
        assert version["status"] == "stable"
        assert version["links"] == [{"rel": "self", "href": "http://test/identity/v3/"}]
        assert version["media-types"][0]["type"] == V3_MEDIA_TYPE

    # Every answer carries its own request id (the client checks each one); these are
    # the framework's own answers: unknown route, wrong method, no token.
    ids = set()
    for response in (
        await cloud.client.get("/v3/no-such-thing"),
        await cloud.client.put("/v3/auth/catalog", headers=cloud.admin),
        await cloud.client.get("/v3/users"),
        await cloud.client.get("/v3/users", headers=cloud.admin),
        await cloud.client.head("/v3/auth/tokens", headers={
            **cloud.admin, "X-Subject-Token": cloud.admin_token}),
    ):
        request_id = response.headers["x-openstack-request-id"]
        assert request_id.startswith("req-")
        ids.add(request_id)
    assert len(ids) == 5, "request ids must differ per request"
    assert_error(await cloud.client.get("/v3/no-such-thing"), 404)
    assert_error(await cloud.client.put("/v3/auth/catalog", headers=cloud.admin), 405)
    assert_error(await cloud.client.get("/v3/users"), 401)
    assert cloud.client.checked >= 8


def _response(content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("GET", "http://test/identity/v3/users")
    return httpx.Response(200, content=content, request=request,
                          headers=headers if headers is not None
                          else {"x-openstack-request-id": "req-1"})


def test_response_check_catches_leaks_and_missing_request_ids() -> None:
    """The leak check the whole directory relies on really fails when it should."""
    check_response(_response(b'{"user": {"name": "x"}}'), {ADMIN_PASSWORD})
    with pytest.raises(AssertionError, match="bcrypt"):
        check_response(_response(b'{"hash": "$2b$04$abcdefghijklmnopqrstuv"}'), set())
    with pytest.raises(AssertionError, match="leaked"):
        check_response(_response(f'{{"p": "{ADMIN_PASSWORD}"}}'.encode()), {ADMIN_PASSWORD})
    with pytest.raises(AssertionError, match="leaked"):
        check_response(_response(b"{}", {"x-openstack-request-id": "req-1",
                                          "x-debug": ADMIN_PASSWORD}), {ADMIN_PASSWORD})
    with pytest.raises(AssertionError, match="request id"):
        check_response(_response(b"{}", {}), set())
