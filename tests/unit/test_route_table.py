"""An API app's route table (``stratus.core.web.routing``): the route FastAPI's own dispatch
would pick, with the same scope and answer, for every route of every API and for the
requests no route takes (404, 405 in the API's error format)."""

from __future__ import annotations

import re
from typing import Any

import fastapi.routing
import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from starlette.types import Message, Scope

from stratus.core.web import ErrorStyle, create_app
from stratus.core.web.routing import RouteTable


def _answer(request: Request, name: str) -> dict[str, Any]:
    return {"route": name, "params": dict(request.path_params),
            "template": request.scope["route"].path_format}


def _routers() -> list[APIRouter]:
    """Routes whose order matters: a literal segment before a parameter and after one, the
    same path's methods in different routers, a path parameter that takes slashes, an int
    parameter, one path with a method only a later router takes."""
    first = APIRouter(prefix="/v1")

    @first.get("/things/detail")
    async def detail(request: Request) -> dict[str, Any]:
        return _answer(request, "detail")

    @first.get("/things/{thing_id}")
    async def show(request: Request, thing_id: str) -> dict[str, Any]:
        return _answer(request, "show")

    @first.post("/things/{thing_id}/action")
    async def action(request: Request, thing_id: str) -> dict[str, Any]:
        return _answer(request, "action")

    @first.get("/numbers/{number:int}")
    async def number(request: Request, number: int) -> dict[str, Any]:
        return _answer(request, "number")

    second = APIRouter()

    @second.delete("/v1/things/{thing_id}")
    async def delete(request: Request, thing_id: str) -> dict[str, Any]:
        return _answer(request, "delete")

    @second.get("/v1/things/shadowed")
    async def shadowed(request: Request) -> dict[str, Any]:
        return _answer(request, "shadowed")  # never: /v1/things/{thing_id} comes first

    @second.api_route("/v1/files/{rest:path}", methods=["GET", "PUT"])
    async def files(request: Request, rest: str) -> dict[str, Any]:
        return _answer(request, "files")

    @second.post("/v1/things/detail")
    async def post_detail(request: Request) -> dict[str, Any]:
        return _answer(request, "post_detail")

    return [first, second]


def _apps(style: ErrorStyle) -> list[FastAPI]:
    """The same API twice: with the route table, and routed by FastAPI alone."""
    table = create_app(service="test", style=style, routers=_routers())
    assert isinstance(table.router.middleware_stack, RouteTable)
    table.router.middleware_stack.requests_before_table = 0
    plain = create_app(service="test", style=style, routers=_routers())
    plain.router.middleware_stack = plain.router.app
    return [table, plain]


REQUESTS = [
    ("GET", "/v1/things/detail"), ("POST", "/v1/things/detail"), ("GET", "/v1/things/t1"),
    ("DELETE", "/v1/things/t1"), ("GET", "/v1/things/shadowed"), ("PUT", "/v1/things/t1"),
    ("POST", "/v1/things/t1/action"), ("GET", "/v1/things/t1/action"),
    ("GET", "/v1/numbers/42"), ("GET", "/v1/numbers/forty-two"), ("GET", "/v1/files/a/b/c"),
    ("PUT", "/v1/files/a%2Fb"), ("PATCH", "/v1/files/x"), ("GET", "/v1/things/t1/"),
    ("GET", "/v1/things/a%0Ab"), ("GET", "/v1/things/t1%0A"), ("GET", "/nowhere"),
    ("OPTIONS", "/v1/things/t1"), ("BREW", "/v1/things/t1"), ("GET", "/"),
]


@pytest.mark.parametrize("style", [ErrorStyle.COMPUTE, ErrorStyle.IDENTITY,
                                   ErrorStyle.NETWORK])
@pytest.mark.parametrize(("method", "path"), REQUESTS)
async def test_answers_as_fastapis_dispatch(style: ErrorStyle, method: str, path: str) -> None:
    answers = []
    for app in _apps(style):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t") as client:
            reply = await client.request(method, path)
        answers.append((reply.status_code, reply.headers.get("allow"), reply.json()))
    assert answers[0] == answers[1]


async def test_the_first_route_in_order_that_takes_path_and_method_answers() -> None:
    app = _apps(ErrorStyle.COMPUTE)[0]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        shadowed = await client.get("/v1/things/shadowed")
        deleted = await client.delete("/v1/things/t1")
        posted = await client.post("/v1/things/detail")
        files = await client.get("/v1/files/a/b/c")
        number = await client.get("/v1/numbers/42")
        wrong_method = await client.put("/v1/things/t1")
    assert shadowed.json() == {"route": "show", "params": {"thing_id": "shadowed"},
                               "template": "/v1/things/{thing_id}"}
    assert deleted.json()["route"] == "delete"
    assert posted.json()["route"] == "post_detail"
    assert files.json()["params"] == {"rest": "a/b/c"}
    assert number.json()["params"] == {"number": 42}
    assert wrong_method.status_code == 405
    assert wrong_method.json()["badMethod"]["code"] == 405


def _every_api() -> dict[str, FastAPI]:
    """Every API app as its unit makes it (the routes; their state is not needed here)."""
    from stratus.compute.api import create_compute_app
    from stratus.compute.api.placement import create_placement_app
    from stratus.identity.api import create_identity_app
    from stratus.image.api import create_image_app
    from stratus.network.api import create_network_app
    from stratus.volume.api import create_volume_app

    return {name: _made_without_state(factory) for name, factory in (
        ("compute", create_compute_app), ("identity", create_identity_app),
        ("image", create_image_app), ("network", create_network_app),
        ("volume", create_volume_app), ("placement", create_placement_app))}


def _made_without_state(factory: Any) -> FastAPI:
    """An API app made by its factory with stand-ins for the runtime it only keeps."""
    import inspect

    class _Anything:
        def __getattr__(self, name: str) -> Any:
            return _Anything()

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return _Anything()

    arguments = {name: _Anything() for name in inspect.signature(factory).parameters}
    app: FastAPI = factory(**arguments)
    return app


def _every_route(app: FastAPI) -> list[Any]:
    """Every route of the app with its path and methods as included (FastAPI 0.16x keeps
    an included router as one route of the app's; ``iter_route_contexts`` unfolds it)."""
    unfold = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(unfold(app.routes)) if unfold is not None else list(app.routes)


def _sample_path(template: str) -> str:
    return re.sub(r"\{(\w+)(:(\w+))?\}",
                  lambda m: "7" if m.group(3) in ("int", "float") else f"x-{m.group(1)}",
                  template)


async def _dispatch(dispatch: Any, method: str, path: str) -> dict[str, Any]:
    """What a dispatch put in the scope before the handler ran (the handler may fail here:
    the app has no runtime)."""
    scope: Scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
                    "root_path": "", "headers": [], "query_string": b"", "app": None}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: Message) -> None:
        return None

    try:
        await dispatch(scope, receive, send)
    except Exception:
        pass
    return {key: scope.get(key) for key in ("route", "endpoint", "path_params")}


async def test_every_route_of_every_api_is_the_one_fastapi_picks() -> None:
    checked = 0
    for name, app in _every_api().items():
        table = app.router.middleware_stack
        assert isinstance(table, RouteTable), name
        assert table.table() is not None, f"{name}: no table built"
        for route in _every_route(app):
            template = getattr(route, "path_format", None)
            if template is None:
                continue
            path = _sample_path(template)
            for method in sorted(getattr(route, "methods", None) or {"GET"}):
                matched = table.match({"type": "http", "method": method, "path": path,
                                       "root_path": ""})
                assert matched is not None, f"{name}: {method} {path}"
                ours = await _dispatch(table, method, path)
                theirs = await _dispatch(table.fallback, method, path)
                assert ours == theirs, f"{name}: {method} {path}"
                checked += 1
    assert checked > 200


async def test_the_table_is_built_only_after_the_first_requests() -> None:
    """An app that answered a few requests keeps FastAPI's own dispatch (and memory)."""
    app = create_app(service="test", style=ErrorStyle.COMPUTE, routers=_routers())
    table = app.router.middleware_stack
    assert isinstance(table, RouteTable)
    table.requests_before_table = 2
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        for _ in range(2):
            assert (await client.get("/v1/things/t1")).json()["route"] == "show"
            assert table._table is None
        assert (await client.get("/v1/things/t1")).json()["route"] == "show"
    assert table._table is not None
