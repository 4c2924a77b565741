"""The app factory every API uses: request ids, error bodies, body limits, logs and spans."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

from stratus.core.context import is_request_id
from stratus.core.exceptions import Conflict, NotFound
from stratus.core.logging import RequestIdFilter
from stratus.core.web import ErrorStyle, create_app

LIMIT = 1024
SECRET = "db password is hunter2"
route_log = logging.getLogger("tests.web.route")


class Widget(BaseModel):
    name: str
    size: int


def build_router() -> APIRouter:
    router = APIRouter()

    @router.post("/widgets", status_code=201)
    async def create_widget(widget: Widget) -> dict[str, object]:
        route_log.info("creating widget %s", widget.name)
        return {"widget": widget.model_dump()}

    @router.get("/widgets/{widget_id}")
    async def get_widget(widget_id: str) -> dict[str, object]:
        route_log.info("looking up widget %s", widget_id)
        raise NotFound(f"Widget {widget_id} could not be found.")

    @router.put("/widgets/{widget_id}")
    async def update_widget(widget_id: str) -> dict[str, object]:
        raise Conflict(f"Widget {widget_id} is busy.")

    @router.get("/boom")
    async def boom() -> dict[str, object]:
        raise RuntimeError(SECRET)

    @router.get("/ids")
    async def ids(request: Request) -> dict[str, object]:
        return {"request_id": request.state.request_id,
                "global_request_id": request.state.global_request_id}

    return router


def make_app(style: ErrorStyle = ErrorStyle.IDENTITY) -> FastAPI:
    return create_app(service="test", style=style, routers=[build_router()], max_body_size=LIMIT)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = make_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as c:
        yield c


def client_for(style: ErrorStyle) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(style)),
                             base_url="http://test")


def request_id_of(response: httpx.Response) -> str:
    value = response.headers.get("x-openstack-request-id")
    assert value is not None, f"no request id on {response.status_code} {response.request.url}"
    assert is_request_id(value), value
    return value


# Request ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("POST", "/widgets", {"name": "a", "size": 1}, 201),
    ("GET", "/widgets/w1", None, 404),
    ("PUT", "/widgets/w1", None, 409),
    ("GET", "/boom", None, 500),
    ("GET", "/no/such/route", None, 404),
    ("DELETE", "/widgets", None, 405),
    ("POST", "/widgets", {"name": "a", "size": "big"}, 400),
])
async def test_every_response_has_a_request_id(client: httpx.AsyncClient, method: str, path: str,
                                               body: object, status: int) -> None:
    response = await client.request(method, path, json=body)
    assert response.status_code == status
    request_id_of(response)


async def test_request_ids_are_unique(client: httpx.AsyncClient) -> None:
    ids = {request_id_of(await client.get("/ids")) for _ in range(5)}
    assert len(ids) == 5


async def test_request_id_header_matches_request_state(client: httpx.AsyncClient) -> None:
    response = await client.get("/ids")
    assert response.json()["request_id"] == request_id_of(response)


async def test_valid_incoming_request_id_becomes_global_request_id(
        client: httpx.AsyncClient) -> None:
    incoming = f"req-{uuid.uuid4()}"
    response = await client.get("/ids", headers={"X-OpenStack-Request-ID": incoming})
    body = response.json()
    assert body["global_request_id"] == incoming
    # the caller's id is recorded, never adopted as this request's own id
    assert body["request_id"] != incoming
    assert request_id_of(response) == body["request_id"]


@pytest.mark.parametrize("incoming", [
    "req-not-a-uuid",
    "0b5e1f7c-3a7d-4c1e-9d2b-6f0a8e4c2d11",  # a bare uuid, without the req- prefix
    "abc",
    "req-0b5e1f7c-3a7d-4c1e-9d2b-6f0a8e4c2d11; DROP TABLE",
])
async def test_invalid_incoming_request_id_is_ignored(client: httpx.AsyncClient,
                                                      incoming: str) -> None:
    response = await client.get("/ids", headers={"X-OpenStack-Request-ID": incoming})
    assert response.json()["global_request_id"] is None
    assert request_id_of(response) != incoming


# Error bodies -----------------------------------------------------------------------------


async def test_identity_style_errors() -> None:
    async with client_for(ErrorStyle.IDENTITY) as c:
        r = await c.get("/widgets/w1")
        assert r.status_code == 404
        assert r.json() == {"error": {"code": 404, "title": "Not Found",
                                      "message": "Widget w1 could not be found."}}
        r = await c.get("/no/such/route")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == 404
        assert r.json()["error"]["message"] == "The resource could not be found."
        r = await c.delete("/widgets")
        assert r.status_code == 405
        assert r.json()["error"] == {"code": 405, "title": "Method Not Allowed",
                                     "message": "Method Not Allowed"}
        assert "POST" in r.headers["allow"]
        r = await c.put("/widgets/w1")
        assert r.status_code == 409
        assert r.json()["error"]["title"] == "Conflict"


async def test_compute_style_errors() -> None:
    async with client_for(ErrorStyle.COMPUTE) as c:
        r = await c.get("/widgets/w1")
        assert r.status_code == 404
        assert r.json() == {"itemNotFound": {"message": "Widget w1 could not be found.",
                                             "code": 404}}
        r = await c.get("/no/such/route")
        assert r.status_code == 404
        assert set(r.json()) == {"itemNotFound"}
        r = await c.delete("/widgets")
        assert r.status_code == 405
        assert r.json()["badMethod"]["code"] == 405
        r = await c.put("/widgets/w1")
        assert r.json() == {"conflictingRequest": {"message": "Widget w1 is busy.", "code": 409}}
        r = await c.get("/boom")
        assert r.status_code == 500
        assert r.json()["computeFault"]["code"] == 500


async def test_network_style_errors() -> None:
    async with client_for(ErrorStyle.NETWORK) as c:
        r = await c.get("/widgets/w1")
        assert r.status_code == 404
        assert r.json() == {"NeutronError": {"type": "NotFound",
                                             "message": "Widget w1 could not be found.",
                                             "detail": ""}}
        r = await c.get("/no/such/route")
        assert r.status_code == 404
        assert r.json()["NeutronError"]["message"] == "The resource could not be found."
        r = await c.delete("/widgets")
        assert r.status_code == 405
        assert r.json()["NeutronError"]["type"] == "MethodNotAllowed"
        r = await c.put("/widgets/w1")
        assert r.json()["NeutronError"]["type"] == "Conflict"


@pytest.mark.parametrize(("style", "key"), [
    (ErrorStyle.IDENTITY, "error"),
    (ErrorStyle.COMPUTE, "badRequest"),
    (ErrorStyle.NETWORK, "NeutronError"),
])
async def test_malformed_json_is_400_in_style(style: ErrorStyle, key: str) -> None:
    async with client_for(style) as c:
        r = await c.post("/widgets", content=b'{"name": "a", "size":',
                         headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    body = r.json()
    assert list(body) == [key]
    assert "not valid JSON" in body[key]["message"]
    request_id_of(r)


@pytest.mark.parametrize(("style", "key"), [
    (ErrorStyle.IDENTITY, "error"),
    (ErrorStyle.COMPUTE, "badRequest"),
    (ErrorStyle.NETWORK, "NeutronError"),
])
async def test_wrong_types_are_400_in_style(style: ErrorStyle, key: str) -> None:
    async with client_for(style) as c:
        r = await c.post("/widgets", json={"name": "a", "size": "big"})
        assert r.status_code == 400
        body = r.json()
        assert list(body) == [key]
        assert "size" in body[key]["message"]
        r = await c.post("/widgets", json={"name": "a"})
        assert r.status_code == 400
        assert "size" in r.json()[key]["message"]
        r = await c.post("/widgets", json=["not", "an", "object"])
        assert r.status_code == 400
        assert list(r.json()) == [key]


async def test_valid_body_is_accepted(client: httpx.AsyncClient) -> None:
    r = await client.post("/widgets", json={"name": "a", "size": 3})
    assert r.status_code == 201
    assert r.json() == {"widget": {"name": "a", "size": 3}}


# Body size limit --------------------------------------------------------------------------


def oversized_payload() -> bytes:
    payload = json.dumps({"name": "x" * (LIMIT * 2), "size": 1}).encode()
    assert len(payload) > LIMIT
    return payload


async def test_body_over_limit_with_content_length_is_413(client: httpx.AsyncClient) -> None:
    payload = oversized_payload()
    r = await client.post("/widgets", content=payload,
                          headers={"Content-Type": "application/json"})
    assert r.request.headers["content-length"] == str(len(payload))
    assert r.status_code == 413
    assert str(LIMIT) in r.json()["error"]["message"]
    request_id_of(r)


async def test_declared_oversize_is_refused_before_reading(client: httpx.AsyncClient) -> None:
    """With Content-Length over the limit, the body is not read at all, on any route."""
    payload = oversized_payload()
    consumed: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        consumed.append(len(payload))
        yield payload

    r = await client.request("GET", "/ids", content=chunks(),
                             headers={"Content-Length": str(len(payload))})
    assert r.status_code == 413
    assert consumed == []
    request_id_of(r)


async def test_body_at_limit_is_accepted(client: httpx.AsyncClient) -> None:
    base = json.dumps({"name": "", "size": 1}).encode()
    payload = json.dumps({"name": "x" * (LIMIT - len(base)), "size": 1}).encode()
    assert len(payload) == LIMIT
    r = await client.post("/widgets", content=payload,
                          headers={"Content-Type": "application/json"})
    assert r.status_code == 201


@pytest.mark.parametrize(("style", "key"), [
    (ErrorStyle.IDENTITY, "error"),
    (ErrorStyle.COMPUTE, "overLimit"),
    (ErrorStyle.NETWORK, "NeutronError"),
])
async def test_chunked_body_over_limit_is_413(style: ErrorStyle, key: str) -> None:
    payload = oversized_payload()
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 256):
            sent.append(start)
            yield payload[start:start + 256]

    async with client_for(style) as c:
        r = await c.post("/widgets", content=chunks(),
                         headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert r.status_code == 413
    # reading stopped once the limit was passed: the rest of the stream was never pulled
    assert len(sent) < len(range(0, len(payload), 256))
    assert list(r.json()) == [key]
    assert str(LIMIT) in json.dumps(r.json())
    request_id_of(r)


async def test_chunked_body_under_limit_is_accepted(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": '
        yield b'"small", "size": 2}'

    r = await client.post("/widgets", content=chunks(),
                          headers={"Content-Type": "application/json"})
    assert r.status_code == 201
    assert r.json()["widget"]["name"] == "small"


async def test_lying_content_length_cannot_pass_the_limit(client: httpx.AsyncClient) -> None:
    """A small declared length does not let a bigger streamed body through."""
    payload = oversized_payload()

    async def chunks() -> AsyncIterator[bytes]:
        yield payload

    r = await client.post("/widgets", content=chunks(),
                          headers={"Content-Type": "application/json", "Content-Length": "10"})
    assert r.status_code == 413


# Unexpected errors ------------------------------------------------------------------------


async def test_unhandled_error_is_500_without_leaking(client: httpx.AsyncClient,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="stratus.web"):
        r = await client.get("/boom")
    assert r.status_code == 500
    assert SECRET not in r.text
    assert "RuntimeError" not in r.text
    assert r.json()["error"]["code"] == 500
    assert r.json()["error"]["title"] == "Internal Server Error"
    request_id_of(r)
    # ...but the operator's log has it, with the traceback
    errors = [rec.exc_info[1] for rec in caplog.records
              if rec.name == "stratus.web" and rec.exc_info]
    assert errors and SECRET in str(errors[0])


# Logs and spans ---------------------------------------------------------------------------


@pytest.fixture
def request_id_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    flt = RequestIdFilter()
    caplog.handler.addFilter(flt)
    caplog.set_level(logging.INFO)
    yield caplog
    caplog.handler.removeFilter(flt)


async def test_log_lines_carry_the_request_id(client: httpx.AsyncClient,
                                              request_id_logs: pytest.LogCaptureFixture) -> None:
    logging.getLogger("tests.web").info("before any request")
    first = await client.post("/widgets", json={"name": "alpha", "size": 1})
    second = await client.get("/widgets/beta")
    logging.getLogger("tests.web").info("after the requests")

    ids = {rec.getMessage(): getattr(rec, "request_id", None) for rec in request_id_logs.records}
    assert ids["before any request"] == "-"
    assert ids["after the requests"] == "-"
    assert ids["creating widget alpha"] == request_id_of(first)
    assert ids["looking up widget beta"] == request_id_of(second)
    access = [rec for rec in request_id_logs.records if rec.name == "stratus.web"]
    assert [getattr(rec, "request_id", None) for rec in access] == [
        request_id_of(first), request_id_of(second)]
    assert "POST /widgets status: 201" in access[0].getMessage()
    assert "GET /widgets/beta status: 404" in access[1].getMessage()


async def test_one_server_span_per_request(client: httpx.AsyncClient,
                                           span_exporter: InMemorySpanExporter) -> None:
    incoming = f"req-{uuid.uuid4()}"
    responses = [
        await client.post("/widgets", json={"name": "a", "size": 1}),
        await client.get("/widgets/w1", headers={"X-OpenStack-Request-ID": incoming}),
        await client.get("/boom"),
    ]
    spans = [s for s in span_exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(spans) == len(responses)
    for span, response in zip(spans, responses, strict=True):
        assert span.attributes is not None
        assert span.attributes["openstack.request_id"] == request_id_of(response)
        assert span.attributes["http.status_code"] == response.status_code
        assert span.attributes["http.method"] == response.request.method
        assert span.attributes["http.target"] == response.request.url.path
        assert span.name == f"test {response.request.method}"
    assert spans[1].attributes is not None
    assert spans[1].attributes["openstack.global_request_id"] == incoming
    assert "openstack.global_request_id" not in (spans[0].attributes or {})
    assert spans[2].status.status_code is StatusCode.ERROR


async def test_a_database_out_of_connections_is_503_with_retry_after(tmp_path: Path) -> None:
    """Every pooled connection held past the pool timeout: the client is told to retry
    (503 + Retry-After in the API's error style), not that the server broke."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'busy.db'}",
                                 poolclass=AsyncAdaptedQueuePool, pool_size=1,
                                 max_overflow=0, pool_timeout=0.05)
    router = APIRouter()

    @router.get("/rows")
    async def rows() -> dict[str, object]:
        async with engine.connect() as conn:
            return {"one": (await conn.execute(text("SELECT 1"))).scalar()}

    app = create_app(service="test", style=ErrorStyle.COMPUTE, routers=[router],
                     max_body_size=LIMIT)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test") as c:
            assert (await c.get("/rows")).json() == {"one": 1}
            async with engine.connect():  # the pool's only connection, held
                r = await c.get("/rows")
            assert r.status_code == 503
            assert r.headers["Retry-After"].isdigit()
            ((_, fault),) = r.json().items()  # Nova's {"<fault name>": {...}}
            assert fault["code"] == 503 and "retry" in fault["message"]
            request_id_of(r)
            assert (await c.get("/rows")).status_code == 200  # and it recovers
    finally:
        await engine.dispose()


async def test_a_database_that_went_away_is_503_with_retry_after(tmp_path: Path) -> None:
    """A database restarting or down (connection refused, sessions ended by its shutdown)
    is an outage the client should wait out (503 + Retry-After), not a server bug (500);
    any other error still is one."""
    import asyncpg
    from sqlalchemy.exc import DBAPIError

    router = APIRouter()
    failure: list[BaseException] = []

    @router.get("/rows")
    async def rows() -> dict[str, object]:
        raise failure[0]

    wrapped = DBAPIError("SELECT 1", None, asyncpg.exceptions.CannotConnectNowError(
        "the database system is shutting down"))
    app = create_app(service="test", style=ErrorStyle.COMPUTE, routers=[router],
                     max_body_size=LIMIT)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as c:
        for failed in (ConnectionRefusedError(111, "Connect call failed"), wrapped):
            failure[:] = [failed]
            r = await c.get("/rows")
            assert r.status_code == 503, failed
            assert r.headers["Retry-After"].isdigit()
            ((_, fault),) = r.json().items()
            assert fault["code"] == 503 and "database is unreachable" in fault["message"]
        failure[:] = [ValueError("a bug")]
        assert (await c.get("/rows")).status_code == 500


def test_the_api_root_is_the_url_the_client_reached_cut_to_the_mount() -> None:
    from starlette.requests import Request

    from stratus.core.web.app import api_root

    def root(scheme: str, host: bytes | None, server: tuple[str, int] | None,
             root_path: str) -> str:
        headers = [(b"accept", b"*/*")] + ([(b"host", host)] if host is not None else [])
        return api_root(Request({"type": "http", "scheme": scheme, "server": server,
                                 "path": f"{root_path}/v2.1/servers", "root_path": root_path,
                                 "query_string": b"a=1", "headers": headers}))

    for _ in range(2):  # made, then as kept
        assert root("http", b"h:8080", ("10.0.0.1", 80), "/compute") == "http://h:8080/compute"
        assert root("https", b"h:8080", ("10.0.0.1", 80), "/compute") == \
            "https://h:8080/compute"
        assert root("http", b"other", ("10.0.0.1", 80), "/compute") == "http://other/compute"
        assert root("http", None, ("10.0.0.1", 8774), "/compute") == \
            "http://10.0.0.1:8774/compute"
        assert root("http", None, ("10.0.0.1", 80), "") == "http://10.0.0.1"
        assert root("http", b"h:8080", ("10.0.0.1", 80), "/image") == "http://h:8080/image"
