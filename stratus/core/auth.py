"""Token authentication for every API: ``X-Auth-Token`` in, ``RequestContext`` out.

A ``TokenValidator`` turns a token into its validated body (the same dict identity's
``GET /v3/auth/tokens`` returns under ``token``). In the all-in-one process the validator
calls the identity service directly; in split mode ``RemoteTokenValidator``
(``stratus.core.auth_remote``) asks identity over REST with the service's own token. Either
way ``CachingValidator`` keeps results for at most ``auth.cache_ttl`` seconds and never past
the token's expiry.

``X-Service-Token`` is honoured as keystonemiddleware does: a valid service token carrying
the ``service`` or ``admin`` role lets an expired user token through (within identity's
allow-expired window), so long operations can finish on the user's behalf.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from typing import Any, Protocol

from fastapi import Request

from stratus.core.context import RequestContext
from stratus.core.exceptions import NotFound, Unauthorized

SERVICE_ROLES = frozenset({"service", "admin"})


class TokenValidator(Protocol):
    async def validate(self, token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        """The token body; raises ``Unauthorized`` when the token is not valid."""


def parse_timestamp(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


class CachingValidator:
    """Bounded cache in front of another validator, keyed by token, bounded by expiry."""

    def __init__(self, inner: TokenValidator, *, ttl: float = 300, size: int = 10000) -> None:
        self.inner = inner
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[tuple[str, bool], tuple[float, dict[str, Any]]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        #: Bumped by each ``invalidate``: a validation that began before it (its read may
        #: predate the revocation's commit) is not cached when it ends.
        self._generation = 0

    def invalidate(self) -> None:
        """Forget every cached result (called when identity records a revocation, in this
        process or, over the bus, in another: ``stratus.core.token_caches``)."""
        self._generation += 1
        self._entries.clear()

    async def validate(self, token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        key = (token, allow_expired)
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > now:
                self.hits += 1
                return entry[1]
            del self._entries[key]
        self.misses += 1
        generation = self._generation
        body = await self.inner.validate(token, allow_expired=allow_expired)
        if self.ttl > 0 and self.size > 0 and generation == self._generation:
            lifetime = self.ttl
            if not allow_expired:
                remaining = (parse_timestamp(body["expires_at"]) - dt.datetime.now(dt.UTC))
                lifetime = min(lifetime, remaining.total_seconds())
            if lifetime > 0:
                self._entries[key] = (now + lifetime, body)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return body


def context_from_token(body: dict[str, Any], *, request_id: str,
                       global_request_id: str | None) -> RequestContext:
    user = body.get("user") or {}
    project = body.get("project") or {}
    domain = body.get("domain") or {}
    system = body.get("system") or {}
    return RequestContext(
        request_id=request_id,
        global_request_id=global_request_id,
        user_id=user.get("id"),
        user_name=user.get("name"),
        user_domain_id=(user.get("domain") or {}).get("id"),
        project_id=project.get("id"),
        project_name=project.get("name"),
        project_domain_id=(project.get("domain") or {}).get("id"),
        domain_id=domain.get("id"),
        system_scope="all" if system.get("all") else None,
        roles=[r["name"] for r in body.get("roles") or ()],
        token=body,
    )


async def authenticate(validator: TokenValidator, headers: Any, *, request_id: str,
                       global_request_id: str | None = None) -> RequestContext:
    """Build the caller's context from the request headers, or raise ``Unauthorized``."""
    token = headers.get("x-auth-token")
    if not token:
        raise Unauthorized()
    service_token = headers.get("x-service-token")
    service_body: dict[str, Any] | None = None
    if service_token:
        try:
            service_body = await validator.validate(service_token)
        except (Unauthorized, NotFound) as exc:
            raise Unauthorized("The service token is not valid.") from exc
    service_roles = [r["name"] for r in (service_body or {}).get("roles") or ()]
    allow_expired = bool(SERVICE_ROLES.intersection(service_roles))
    try:
        body = await validator.validate(token, allow_expired=allow_expired)
    except NotFound as exc:
        raise Unauthorized() from exc
    context = context_from_token(body, request_id=request_id,
                                 global_request_id=global_request_id)
    context.auth_token = token
    if service_body is not None:
        context.service_token = service_token
        context.service_roles = service_roles
        context.service_user_id = (service_body.get("user") or {}).get("id")
    return context


async def require_context(request: Request) -> RequestContext:
    """FastAPI dependency: the authenticated caller, from ``app.state.token_validator``."""
    context: RequestContext | None = getattr(request.state, "context", None)
    if context is not None:
        return context
    context = await authenticate(
        request.app.state.token_validator,
        request.headers,
        request_id=request.state.request_id,
        global_request_id=request.state.global_request_id,
    )
    request.state.context = context
    return context
