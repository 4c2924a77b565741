"""A service's own credentials: the token it acts with when it calls another service.

A compute host sends the user's token plus this service token (``X-Service-Token``) to the
network and image services; the network service sends it alone to compute-api's external
events. One token is kept until a minute before it expires, then fetched again; a 401 from
a callee is answered with ``token(refresh=True)`` once (``stratus.core.clients.base.KeystoneAuth``
does that for every client).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

import httpx

from stratus.core.auth import parse_timestamp
from stratus.core.clients.base import catalog_endpoint
from stratus.core.exceptions import ServiceUnavailable

LOG = logging.getLogger(__name__)


class ServiceAuth:
    """Password-authenticates a service user, project-scoped, and caches the token and its
    catalog. Never logs the password or the token."""

    def __init__(self, identity_url: str, *, username: str, password: str, project: str,
                 domain: str = "Default", client: httpx.AsyncClient,
                 with_catalog: bool = True) -> None:
        self.identity_url = identity_url.rstrip("/")
        # A caller that never looks up endpoints spares identity the catalog.
        self._params = {} if with_catalog else {"nocatalog": "1"}
        self._body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": username, "domain": {"name": domain}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": domain}}},
        }}
        self._client = client
        self._token: str | None = None
        self._catalog: list[dict[str, Any]] = []
        self._expiry = 0.0
        self._lock = asyncio.Lock()

    async def token(self, refresh: bool = False) -> str:
        async with self._lock:
            if self._token and not refresh and time.monotonic() < self._expiry:
                return self._token
            try:
                response = await self._client.post(f"{self.identity_url}/auth/tokens",
                                                   json=self._body, params=self._params)
            except httpx.HTTPError as exc:
                raise ServiceUnavailable("Identity service is unreachable.") from exc
            if response.status_code != 201:
                LOG.error("service credentials rejected by identity (status %s)",
                          response.status_code)
                raise ServiceUnavailable("This service cannot authenticate to identity.")
            body = response.json()["token"]
            lifetime = (parse_timestamp(body["expires_at"]) - dt.datetime.now(dt.UTC))
            self._token = response.headers["X-Subject-Token"]
            self._catalog = body.get("catalog") or []
            self._expiry = time.monotonic() + max(0.0, lifetime.total_seconds() - 60)
            return self._token

    async def find_endpoint(self, service_type: str, interface: str = "public") -> str | None:
        """The URL of ``service_type`` in the service token's catalog (no trailing slash),
        or None when the cloud has no such service."""
        await self.token()
        return catalog_endpoint(self._catalog, service_type, interface)

    async def endpoint(self, service_type: str, interface: str = "public") -> str:
        """As ``find_endpoint``, but a missing service is ``ServiceUnavailable``."""
        url = await self.find_endpoint(service_type, interface)
        if url is None:
            raise ServiceUnavailable(f"No {service_type} endpoint in the service catalog.")
        return url
