"""Token validation over REST, for APIs that run outside identity's process (split mode).

Kept apart from ``stratus.core.auth`` so the all-in-one process never imports an HTTP client
it does not use.
"""

from __future__ import annotations

from typing import Any

import httpx

from stratus.core.clients.base import KeystoneAuth
from stratus.core.exceptions import ServiceUnavailable, Unauthorized
from stratus.core.http import service_http_client
from stratus.core.service_auth import ServiceAuth


class RemoteTokenValidator:
    """Validates tokens against identity's REST API (split mode)."""

    def __init__(self, identity_url: str, *, username: str, password: str, project: str,
                 domain: str = "Default", client: httpx.AsyncClient | None = None) -> None:
        self.identity_url = identity_url.rstrip("/")
        self._client = client or service_http_client()
        self._auth = ServiceAuth(identity_url, username=username, password=password,
                                 project=project, domain=domain, client=self._client,
                                 with_catalog=False)

    async def validate(self, token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        params = {"allow_expired": "1"} if allow_expired else {}
        # Our own token goes alone; an expired or revoked one is fetched again once on a 401.
        auth = KeystoneAuth(service=self._auth, service_header=False)
        try:
            response = await self._client.get(f"{self.identity_url}/auth/tokens",
                                              headers={"X-Subject-Token": token},
                                              params=params, auth=auth)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable("Identity service is unreachable.") from exc
        if response.status_code == 200:
            body: dict[str, Any] = response.json()["token"]
            return body
        if response.status_code in (401, 403, 404):
            raise Unauthorized("The request you have made requires authentication.")
        raise ServiceUnavailable(f"Identity answered {response.status_code}.")

    async def aclose(self) -> None:
        await self._client.aclose()
