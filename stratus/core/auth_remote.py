"""Token validation over REST, for APIs that run outside identity's process (split mode).

Kept apart from ``stratus.core.auth`` so the all-in-one process never imports an HTTP client
it does not use.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

import httpx

from stratus.core.auth import parse_timestamp
from stratus.core.exceptions import ServiceUnavailable, Unauthorized
from stratus.core.http import service_http_client

LOG = logging.getLogger(__name__)


class RemoteTokenValidator:
    """Validates tokens against identity's REST API (split mode)."""

    def __init__(self, identity_url: str, *, username: str, password: str, project: str,
                 domain: str = "Default", client: httpx.AsyncClient | None = None) -> None:
        self.identity_url = identity_url.rstrip("/")
        self._credentials = {"username": username, "password": password,
                             "project": project, "domain": domain}
        self._client = client or service_http_client()
        self._own_token: str | None = None
        self._own_expiry = 0.0
        self._lock = asyncio.Lock()

    async def _service_token(self, refresh: bool = False) -> str:
        async with self._lock:
            if self._own_token and not refresh and time.monotonic() < self._own_expiry:
                return self._own_token
            c = self._credentials
            body = {"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": c["username"], "domain": {"name": c["domain"]},
                    "password": c["password"]}}},
                "scope": {"project": {"name": c["project"], "domain": {"name": c["domain"]}}},
            }}
            try:
                response = await self._client.post(
                    f"{self.identity_url}/auth/tokens", json=body, params={"nocatalog": "1"})
            except httpx.HTTPError as exc:
                raise ServiceUnavailable("Identity service is unreachable.") from exc
            if response.status_code != 201:
                LOG.error("service credentials rejected by identity (status %s)",
                          response.status_code)
                raise ServiceUnavailable("This service cannot authenticate to identity.")
            expires = parse_timestamp(response.json()["token"]["expires_at"])
            lifetime = (expires - dt.datetime.now(dt.UTC)).total_seconds()
            self._own_token = response.headers["X-Subject-Token"]
            self._own_expiry = time.monotonic() + max(0.0, lifetime - 60)
            return self._own_token

    async def validate(self, token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        params = {"allow_expired": "1"} if allow_expired else {}
        for attempt in range(2):
            own = await self._service_token(refresh=attempt > 0)
            try:
                response = await self._client.get(
                    f"{self.identity_url}/auth/tokens",
                    headers={"X-Auth-Token": own, "X-Subject-Token": token},
                    params=params,
                )
            except httpx.HTTPError as exc:
                raise ServiceUnavailable("Identity service is unreachable.") from exc
            if response.status_code == 200:
                body: dict[str, Any] = response.json()["token"]
                return body
            if response.status_code == 401 and attempt == 0:
                continue  # our own token expired or was revoked: get a new one
            if response.status_code in (401, 403, 404):
                break
            raise ServiceUnavailable(f"Identity answered {response.status_code}.")
        raise Unauthorized("The request you have made requires authentication.")

    async def aclose(self) -> None:
        await self._client.aclose()
