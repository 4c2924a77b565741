"""Token authentication: the validation cache, service tokens, and the request context."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends

from stratus.core import auth
from stratus.core.auth import CachingValidator, authenticate, context_from_token
from stratus.core.context import RequestContext, generate_request_id
from stratus.core.exceptions import NotFound, Unauthorized
from stratus.core.web import ErrorStyle, create_app


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def token_body(user_id: str = "u1", *, expires_in: float = 3600,
               roles: tuple[str, ...] = ("member",), scope: str = "project") -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    body: dict[str, Any] = {
        "user": {"id": user_id, "name": f"name-{user_id}", "domain": {"id": "default"}},
        "roles": [{"id": f"id-{r}", "name": r} for r in roles],
        "issued_at": iso(now),
        "expires_at": iso(now + dt.timedelta(seconds=expires_in)),
        "methods": ["password"],
    }
    if scope == "project":
        body["project"] = {"id": "p1", "name": "demo", "domain": {"id": "d-proj"}}
    elif scope == "domain":
        body["domain"] = {"id": "d1", "name": "Dom"}
    elif scope == "system":
        body["system"] = {"all": True}
    return body


class FakeValidator:
    """Knows a fixed set of tokens and counts every call made to it."""

    def __init__(self, tokens: dict[str, dict[str, Any]] | None = None) -> None:
        self.tokens = dict(tokens or {})
        self.calls: list[tuple[str, bool]] = []

    async def validate(self, token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        self.calls.append((token, allow_expired))
        if token not in self.tokens:
            raise NotFound("Could not find token.")
        body = self.tokens[token]
        expired = auth.parse_timestamp(body["expires_at"]) <= dt.datetime.now(dt.UTC)
        if expired and not allow_expired:
            raise NotFound("Could not find token.")
        return body


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Replaces the cache's monotonic clock (only in stratus.core.auth, not the event loop's)."""
    fake = Clock()
    monkeypatch.setattr(auth, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


# CachingValidator -------------------------------------------------------------------------


async def test_second_call_hits_cache(clock: Clock) -> None:
    inner = FakeValidator({"t1": token_body()})
    cache = CachingValidator(inner, ttl=300, size=10)
    first = await cache.validate("t1")
    second = await cache.validate("t1")
    assert first == second == inner.tokens["t1"]
    assert inner.calls == [("t1", False)]
    assert (cache.hits, cache.misses) == (1, 1)


async def test_allow_expired_is_part_of_the_key(clock: Clock) -> None:
    inner = FakeValidator({"t1": token_body()})
    cache = CachingValidator(inner, ttl=300, size=10)
    await cache.validate("t1")
    await cache.validate("t1", allow_expired=True)
    await cache.validate("t1", allow_expired=True)
    assert inner.calls == [("t1", False), ("t1", True)]


async def test_a_validation_begun_before_an_invalidation_is_not_cached(clock: Clock) -> None:
    """A revocation committed while a validation was reading: its result may be the old
    state, so the cache keeps nothing of it (the next request asks again)."""
    inner = FakeValidator({"t1": token_body()})
    cache = CachingValidator(inner, ttl=300, size=10)
    validate = inner.validate

    async def revoked_meanwhile(token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        body = await validate(token, allow_expired=allow_expired)
        cache.invalidate()  # the revocation's listener, while this answer is on its way
        return body

    inner.validate = revoked_meanwhile  # type: ignore[method-assign]
    await cache.validate("t1")
    inner.validate = validate  # type: ignore[method-assign]
    await cache.validate("t1")
    await cache.validate("t1")
    assert len(inner.calls) == 2


async def test_entry_expires_after_ttl(clock: Clock) -> None:
    inner = FakeValidator({"t1": token_body(expires_in=3600)})
    cache = CachingValidator(inner, ttl=30, size=10)
    await cache.validate("t1")
    clock.now += 29
    await cache.validate("t1")
    assert len(inner.calls) == 1
    clock.now += 2
    await cache.validate("t1")
    assert len(inner.calls) == 2


async def test_entry_never_outlives_token_expiry(clock: Clock) -> None:
    inner = FakeValidator({"t1": token_body(expires_in=10)})
    cache = CachingValidator(inner, ttl=300, size=10)
    await cache.validate("t1")
    clock.now += 9
    await cache.validate("t1")
    assert len(inner.calls) == 1
    clock.now += 2  # 11 s later: past the token's expiry though well within the TTL
    await cache.validate("t1")
    assert len(inner.calls) == 2


async def test_expired_token_body_is_not_cached(clock: Clock) -> None:
    """A body already past its expiry (say, clock skew with identity) is never stored."""
    inner = FakeValidator({"t1": token_body(expires_in=-5)})
    inner.validate = _ignoring_expiry(inner)  # type: ignore[method-assign]
    cache = CachingValidator(inner, ttl=300, size=10)
    await cache.validate("t1")
    await cache.validate("t1")
    assert len(inner.calls) == 2
    assert cache.hits == 0


async def test_allow_expired_entry_is_kept_for_the_ttl(clock: Clock) -> None:
    inner = FakeValidator({"t1": token_body(expires_in=-5)})
    cache = CachingValidator(inner, ttl=30, size=10)
    await cache.validate("t1", allow_expired=True)
    clock.now += 29
    await cache.validate("t1", allow_expired=True)
    assert len(inner.calls) == 1
    clock.now += 2
    await cache.validate("t1", allow_expired=True)
    assert len(inner.calls) == 2


def _ignoring_expiry(inner: FakeValidator) -> Any:
    async def validate(token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        inner.calls.append((token, allow_expired))
        return inner.tokens[token]

    return validate


async def test_failures_are_not_cached(clock: Clock) -> None:
    inner = FakeValidator()
    cache = CachingValidator(inner, ttl=300, size=10)
    for _ in range(2):
        with pytest.raises(NotFound):
            await cache.validate("nope")
    assert len(inner.calls) == 2
    inner.tokens["nope"] = token_body()
    assert (await cache.validate("nope"))["user"]["id"] == "u1"


async def test_size_bound_evicts(clock: Clock) -> None:
    inner = FakeValidator({f"t{i}": token_body(f"u{i}") for i in range(5)})
    cache = CachingValidator(inner, ttl=300, size=2)
    for token in ("t0", "t1", "t2"):
        await cache.validate(token)
    assert len(cache._entries) == 2
    inner.calls.clear()
    await cache.validate("t2")          # newest: still cached
    assert inner.calls == []
    await cache.validate("t0")          # oldest: evicted, so fetched again
    assert inner.calls == [("t0", False)]
    assert len(cache._entries) == 2


async def test_zero_size_or_ttl_disables_caching(clock: Clock) -> None:
    for kwargs in ({"ttl": 300, "size": 0}, {"ttl": 0, "size": 10}):
        inner = FakeValidator({"t1": token_body()})
        cache = CachingValidator(inner, **kwargs)
        await cache.validate("t1")
        await cache.validate("t1")
        assert len(inner.calls) == 2
        assert not cache._entries


async def test_invalidate_clears(clock: Clock) -> None:
    inner = FakeValidator({"t1": token_body(), "t2": token_body("u2")})
    cache = CachingValidator(inner, ttl=300, size=10)
    await cache.validate("t1")
    await cache.validate("t2")
    cache.invalidate()
    await cache.validate("t1")
    await cache.validate("t2")
    assert [token for token, _ in inner.calls] == ["t1", "t2", "t1", "t2"]


# authenticate -----------------------------------------------------------------------------


async def test_authenticate_without_token_is_unauthorized() -> None:
    inner = FakeValidator({"t1": token_body()})
    with pytest.raises(Unauthorized):
        await authenticate(inner, httpx.Headers({}), request_id=generate_request_id())
    with pytest.raises(Unauthorized):
        await authenticate(inner, httpx.Headers({"X-Auth-Token": ""}),
                           request_id=generate_request_id())
    assert inner.calls == []


async def test_authenticate_unknown_token_is_unauthorized() -> None:
    with pytest.raises(Unauthorized):
        await authenticate(FakeValidator(), httpx.Headers({"X-Auth-Token": "bogus"}),
                           request_id=generate_request_id())


async def test_authenticate_builds_context() -> None:
    inner = FakeValidator({"t1": token_body(roles=("member", "reader"))})
    request_id = generate_request_id()
    global_id = generate_request_id()
    context = await authenticate(inner, httpx.Headers({"X-Auth-Token": "t1"}),
                                 request_id=request_id, global_request_id=global_id)
    assert context.user_id == "u1"
    assert context.project_id == "p1"
    assert context.roles == ["member", "reader"]
    assert context.auth_token == "t1"
    assert context.request_id == request_id
    assert context.global_request_id == global_id
    assert context.service_token is None
    assert context.service_roles == []
    assert inner.calls == [("t1", False)]


@pytest.mark.parametrize("service_role", ["service", "admin"])
async def test_service_token_allows_expired_user_token(service_role: str) -> None:
    inner = FakeValidator({
        "user": token_body("u1", expires_in=-60),
        "svc": token_body("nova", roles=(service_role,)),
    })
    headers = httpx.Headers({"X-Auth-Token": "user", "X-Service-Token": "svc"})
    context = await authenticate(inner, headers, request_id=generate_request_id())
    assert ("user", True) in inner.calls
    assert ("svc", False) in inner.calls  # the service token itself must be valid, not expired
    assert context.user_id == "u1"
    assert context.service_roles == [service_role]
    assert context.service_user_id == "nova"
    assert context.service_token == "svc"
    assert context.auth_token == "user"


async def test_expired_user_token_without_service_token_is_unauthorized() -> None:
    inner = FakeValidator({"user": token_body(expires_in=-60)})
    with pytest.raises(Unauthorized):
        await authenticate(inner, httpx.Headers({"X-Auth-Token": "user"}),
                           request_id=generate_request_id())
    assert inner.calls == [("user", False)]


async def test_service_token_without_service_role_does_not_allow_expired() -> None:
    inner = FakeValidator({
        "user": token_body("u1", expires_in=-60),
        "svc": token_body("someone", roles=("member",)),
    })
    headers = httpx.Headers({"X-Auth-Token": "user", "X-Service-Token": "svc"})
    with pytest.raises(Unauthorized):
        await authenticate(inner, headers, request_id=generate_request_id())
    assert ("user", False) in inner.calls
    assert ("user", True) not in inner.calls


async def test_invalid_service_token_is_unauthorized() -> None:
    inner = FakeValidator({"user": token_body()})
    headers = httpx.Headers({"X-Auth-Token": "user", "X-Service-Token": "forged"})
    with pytest.raises(Unauthorized) as info:
        await authenticate(inner, headers, request_id=generate_request_id())
    assert "service token" in info.value.message
    # the user token is not even looked at
    assert inner.calls == [("forged", False)]


async def test_expired_service_token_is_unauthorized() -> None:
    inner = FakeValidator({"user": token_body(),
                           "svc": token_body("nova", roles=("service",), expires_in=-1)})
    headers = httpx.Headers({"X-Auth-Token": "user", "X-Service-Token": "svc"})
    with pytest.raises(Unauthorized):
        await authenticate(inner, headers, request_id=generate_request_id())


# context_from_token -----------------------------------------------------------------------


def test_context_from_project_token() -> None:
    body = token_body(roles=("member", "reader"), scope="project")
    ctx = context_from_token(body, request_id="req-a", global_request_id="req-b")
    assert (ctx.user_id, ctx.user_name, ctx.user_domain_id) == ("u1", "name-u1", "default")
    assert (ctx.project_id, ctx.project_name, ctx.project_domain_id) == ("p1", "demo", "d-proj")
    assert ctx.domain_id is None
    assert ctx.system_scope is None
    assert ctx.roles == ["member", "reader"]
    assert not ctx.is_admin
    assert (ctx.request_id, ctx.global_request_id) == ("req-a", "req-b")
    assert ctx.token is body
    creds = ctx.policy_credentials()
    assert creds["project_id"] == "p1"
    assert creds["roles"] == ["member", "reader"]


def test_context_from_domain_token() -> None:
    ctx = context_from_token(token_body(roles=("admin",), scope="domain"),
                             request_id="req-a", global_request_id=None)
    assert ctx.domain_id == "d1"
    assert ctx.project_id is None
    assert ctx.system_scope is None
    assert ctx.is_admin
    assert ctx.policy_credentials()["is_admin"] is True


def test_context_from_system_token() -> None:
    ctx = context_from_token(token_body(roles=("reader",), scope="system"),
                             request_id="req-a", global_request_id=None)
    assert ctx.system_scope == "all"
    assert ctx.project_id is None
    assert ctx.domain_id is None
    assert ctx.roles == ["reader"]


def test_context_from_unscoped_token() -> None:
    ctx = context_from_token(token_body(roles=(), scope="none"),
                             request_id="req-a", global_request_id=None)
    assert ctx.is_authenticated
    assert ctx.project_id is None and ctx.domain_id is None and ctx.system_scope is None
    assert ctx.roles == []


def test_context_to_dict_has_no_secrets() -> None:
    ctx = context_from_token(token_body(), request_id="req-a", global_request_id=None)
    ctx.auth_token = "secret-token"
    ctx.service_token = "secret-service-token"
    assert "secret" not in repr(ctx.to_dict())
    assert "secret" not in repr(ctx)


# require_context through an app -----------------------------------------------------------


async def test_require_context_in_an_app() -> None:
    router = APIRouter()

    @router.get("/whoami")
    async def whoami(context: RequestContext = Depends(auth.require_context)) -> dict[str, Any]:
        return {"user_id": context.user_id, "request_id": context.request_id,
                "global_request_id": context.global_request_id}

    validator = CachingValidator(FakeValidator({"good": token_body("u7")}))
    app = create_app(service="test", style=ErrorStyle.COMPUTE, routers=[router],
                     state={"token_validator": validator})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as c:
        r = await c.get("/whoami")
        assert r.status_code == 401
        assert r.json()["unauthorized"]["code"] == 401
        r = await c.get("/whoami", headers={"X-Auth-Token": "bad"})
        assert r.status_code == 401
        incoming = generate_request_id()
        r = await c.get("/whoami", headers={"X-Auth-Token": "good",
                                            "X-OpenStack-Request-ID": incoming})
        assert r.status_code == 200
        assert r.json() == {"user_id": "u7",
                            "request_id": r.headers["x-openstack-request-id"],
                            "global_request_id": incoming}
