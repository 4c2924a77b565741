"""The root app's dispatch to the units' mounts (``stratus.units._PrefixRouter``): by a dict
lookup of the first path segment, with the same child scope, and the same answers as
Starlette's route list for everything else."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from stratus.core.context import generate_request_id, reset_request_id, set_request_id
from stratus.network.notify import system_context
from stratus.units import _mount, _PrefixRouter


def _unit(name: str) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = {"unit": name, "path": scope["path"], "root_path": scope["root_path"],
                "route": getattr(scope.get("route"), "path", None)}
        await JSONResponse(body)(scope, receive, send)
    return app


async def _index(_: Request) -> PlainTextResponse:
    return PlainTextResponse("index")


def _roots() -> list[Starlette]:
    """The same routes behind the prefix router and behind Starlette's own."""
    def routes() -> list[Any]:
        return [Route("/", _index), Route("/metrics", _index),
                _mount("/network", _unit("network")), _mount("/image", _unit("image")),
                _mount("/network", _unit("shadowed"))]
    fast = Starlette()
    fast.router = _PrefixRouter(routes())
    return [fast, Starlette(routes=routes())]


@pytest.mark.parametrize("path", [
    "/network/v2.0/ports", "/image/v2/images", "/network/", "/network/a%0Ab",
    "/", "/metrics", "/network", "/nowhere/x", "/networks/x", "/v2.0/ports", "//x",
])
async def test_answers_as_starlettes_route_list(path: str) -> None:
    answers = []
    for root in _roots():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=root),
                                     base_url="http://t", follow_redirects=False) as client:
            reply = await client.get(path)
            answers.append((reply.status_code, reply.headers.get("location"), reply.text))
    assert answers[0] == answers[1]


async def test_a_units_request_reaches_its_mount_with_the_child_scope() -> None:
    fast, _ = _roots()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fast),
                                 base_url="http://t") as client:
        reply = await client.get("/network/v2.0/ports")
    assert reply.json() == {"unit": "network", "path": "/network/v2.0/ports",
                            "root_path": "/network", "route": "/network"}
    assert set(fast.router.by_segment) == {"network", "image"}  # type: ignore[attr-defined]


def test_network_notices_carry_the_requests_id() -> None:
    request_id = generate_request_id()
    token = set_request_id(request_id)
    try:
        assert system_context().request_id == request_id
    finally:
        reset_request_id(token)
    outside = system_context().request_id
    assert outside.startswith("req-") and outside != request_id
    assert system_context().roles == ["service"]
