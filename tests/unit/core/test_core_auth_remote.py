"""Split mode's token validation over REST: its own token refreshed once on a 401."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from stratus.core.auth_remote import RemoteTokenValidator
from stratus.core.exceptions import Unauthorized


class Identity:
    """Issues ``own-1``, ``own-2``, ...; accepts only the newest as the caller's token."""

    def __init__(self) -> None:
        self.issued = 0
        self.checks: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.issued += 1
            expires = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
            return httpx.Response(201, headers={"X-Subject-Token": f"own-{self.issued}"},
                                  json={"token": {"expires_at": expires}})
        self.checks.append(request.headers["x-auth-token"])
        if request.headers["x-auth-token"] != f"own-{self.issued}":
            return httpx.Response(401, json={})
        if request.headers["x-subject-token"] != "user-token":
            return httpx.Response(404, json={})
        return httpx.Response(200, json={"token": {"user": {"id": "u"}}})


def _validator(identity: Identity) -> RemoteTokenValidator:
    client = httpx.AsyncClient(transport=httpx.MockTransport(identity))
    return RemoteTokenValidator("http://identity/v3", username="svc", password="pw",
                                project="service", client=client)


async def test_a_revoked_own_token_is_fetched_again_once() -> None:
    identity = Identity()
    validator = _validator(identity)
    try:
        assert (await validator.validate("user-token"))["user"]["id"] == "u"
        identity.issued += 1  # identity forgets our token (revoked)
        assert (await validator.validate("user-token"))["user"]["id"] == "u"
        assert identity.checks == ["own-1", "own-1", "own-3"]
        with pytest.raises(Unauthorized):
            await validator.validate("someone-else")
    finally:
        await validator.aclose()
