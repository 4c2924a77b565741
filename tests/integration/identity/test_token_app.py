"""``stratus up`` builds only identity's token routes at start (``create_token_app``) and the
rest of the Identity API at its first request for anything else (``EagerRoutes``). A
request a token route's path takes is answered by the token app, whatever its method, so
for each such path and every method the token app must answer as the whole API does."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from stratus.core.web.lazy import EagerRoutes, LazyApp
from stratus.identity.api import create_identity_app, token_routers
from stratus.units import root_app

from .conftest import BASE_URL, Cloud, password_auth

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def token_paths() -> list[str]:
    paths = []
    for router in token_routers():
        for route in router.routes:
            assert isinstance(route, Route)
            assert not route.param_convertors, route.path  # one path per pattern
            paths.append(route.path)
    return sorted(set(paths))


def comparable(response: httpx.Response) -> tuple[object, ...]:
    body: object = response.json() if response.content else None
    if response.status_code < 300 and isinstance(body, dict) and "token" in body:
        body = sorted(body["token"])  # a new token each time: its fields, not their values
    return (response.status_code, response.headers.get("allow"),
            response.headers.get("content-type"), body)


@pytest.mark.parametrize("method", METHODS)
async def test_the_token_app_answers_its_paths_as_the_whole_api(cloud: Cloud,
                                                                 method: str) -> None:
    whole = Starlette(routes=[Mount("/identity", create_identity_app(cloud.runtime,
                                                                     cloud.validator))])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=whole),
                                 base_url=BASE_URL) as reference:
        for path in token_paths():
            # The admin's own token as the subject, except where DELETE would revoke it.
            subject = "not-a-token" if method == "DELETE" else cloud.admin_token
            headers = {**cloud.admin, "X-Subject-Token": subject}
            body = (password_auth(name="admin", password="wrong", domain={"id": "default"})
                    if method in ("POST", "PUT", "PATCH") else None)
            expected = await reference.request(method, path, headers=headers, json=body)
            answer = await cloud.client.request(method, path, headers=headers, json=body)
            assert comparable(answer) == comparable(expected), (method, path)


async def test_identity_is_mounted_as_token_routes_before_the_lazy_whole_api(
        cloud: Cloud) -> None:
    app = await root_app(cloud.stack, ["identity-api"])
    identity = next(route.app for route in app.routes if getattr(route, "path", "")
                    == "/identity")
    assert isinstance(identity, EagerRoutes)
    assert isinstance(identity.rest, LazyApp) and not identity.rest.built
    for path in token_paths():
        assert identity.takes(path)
    for path in ("/v3/users", "/v3/auth", "/v3/auth/tokens/extra", "/v3/projects",
                 "/openapi.json"):
        assert not identity.takes(path)
