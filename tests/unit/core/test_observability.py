"""Metrics and JSON log lines: what an API request and a bus message record, and how.

Metrics live in the process's one registry, shared by every test of this process: each test
names its own service or topic and reads the values it moved.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from stratus.core.bus import (
    MessagingTimeout,
    RemoteError,
    RPCClient,
    RPCServer,
    Target,
    get_transport,
)
from stratus.core.context import RequestContext, reset_instance, set_instance
from stratus.core.exceptions import NotFound
from stratus.core.metrics import metrics_endpoint
from stratus.core.tracing import span
from stratus.core.web import ErrorStyle, create_app
from tests.json_logs import json_lines_to

LOG = logging.getLogger("tests.observability")


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def build_router() -> APIRouter:
    router = APIRouter()

    @router.get("/servers/{server_id}")
    async def show(server_id: str) -> dict[str, Any]:
        LOG.info("showing %s", server_id)
        if server_id.startswith("missing"):
            raise NotFound(f"Server {server_id} could not be found.")
        return {"server": {"id": server_id}}

    @router.post("/servers", status_code=202)
    async def create() -> dict[str, Any]:
        return {}

    return router


@pytest.fixture
def service() -> str:
    return f"svc{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client(service: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API mounted as ``root_app`` mounts units, beside the process's ``/metrics``."""
    api = create_app(service=service, style=ErrorStyle.COMPUTE, routers=[build_router()])
    root = Starlette(routes=[Route("/metrics", metrics_endpoint), Mount("/compute", app=api)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=root),
                                 base_url="http://test") as c:
        yield c


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def samples(exposition: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples called ``name`` in an exposition, read with prometheus-client's parser."""
    return [(dict(s.labels), s.value) for family in text_string_to_metric_families(exposition)
            for s in family.samples if s.name == name]


async def test_api_requests_are_counted_by_route_template_never_raw_path(
        client: httpx.AsyncClient, service: str) -> None:
    server_id = str(uuid.uuid4())
    assert (await client.get(f"/compute/servers/{server_id}")).status_code == 200
    assert (await client.get(f"/compute/servers/missing-{server_id}")).status_code == 404
    assert (await client.post("/compute/servers")).status_code == 202
    assert (await client.get(f"/compute/nowhere/{server_id}")).status_code == 404
    assert (await client.delete("/compute/servers")).status_code == 405
    assert (await client.request("X-RANDOM-1", "/compute/servers")).status_code == 405

    text = await scrape(client)
    counts = {(labels["method"], labels["route"], labels["status"]): count
              for labels, count in samples(text, "stratus_api_request_duration_seconds_count")
              if labels["service"] == service}
    assert counts == {("GET", "/servers/{server_id}", "200"): 1.0,
                      ("GET", "/servers/{server_id}", "404"): 1.0,
                      ("POST", "/servers", "202"): 1.0,
                      ("GET", "unmatched", "404"): 1.0,
                      ("DELETE", "/servers", "405"): 1.0,
                      ("other", "/servers", "405"): 1.0}
    assert server_id not in text, "ids never become labels"
    buckets = [labels for labels, _ in samples(text, "stratus_api_request_duration_seconds_bucket")
               if labels["service"] == service and labels["route"] == "/servers"]
    assert {b["le"] for b in buckets} >= {"0.005", "1.0", "+Inf"}
    assert value("stratus_api_requests_in_progress", service=service) == 0


async def test_in_progress_requests_are_gauged(service: str) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    router = APIRouter()

    @router.get("/wait")
    async def wait() -> dict[str, Any]:
        entered.set()
        await release.wait()
        return {}

    api = create_app(service=service, style=ErrorStyle.COMPUTE, routers=[router])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api),
                                 base_url="http://test") as c:
        pending = asyncio.create_task(c.get("/wait"))
        await asyncio.wait_for(entered.wait(), 10)
        assert value("stratus_api_requests_in_progress", service=service) == 1
        release.set()
        assert (await pending).status_code == 200
    assert value("stratus_api_requests_in_progress", service=service) == 0


class Worker:
    METHODS = ("ok", "fail", "hold")

    def __init__(self) -> None:
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.instances: list[str | None] = []

    async def ok(self, ctx: RequestContext, instance_uuid: str) -> int:
        LOG.info("working on it")
        return 1

    async def fail(self, ctx: RequestContext) -> None:
        raise NotFound("nothing here")

    async def hold(self, ctx: RequestContext) -> None:
        self.holding.set()
        await self.release.wait()


@pytest.fixture
async def bus() -> AsyncIterator[tuple[RPCClient, Worker, str]]:
    topic = f"t{uuid.uuid4().hex[:8]}"
    transport = get_transport(f"memory://obs-{uuid.uuid4().hex[:8]}")
    await transport.start()
    worker = Worker()
    server = RPCServer(transport, Target(topic, server="h1"), worker, Worker.METHODS)
    await server.start()
    try:
        yield RPCClient(transport, Target(topic), timeout=5), worker, topic
    finally:
        worker.release.set()
        await server.stop()
        await transport.close()


async def test_bus_sends_handling_and_in_flight_handlers(
        bus: tuple[RPCClient, Worker, str]) -> None:
    client, worker, topic = bus
    ctx = RequestContext(user_id="u", project_id="p")
    assert await client.call(ctx, "ok", instance_uuid="i-1") == 1
    with pytest.raises(RemoteError):
        await client.call(ctx, "fail")
    await client.cast(ctx, "hold")
    await asyncio.wait_for(worker.holding.wait(), 10)
    assert value("stratus_bus_handlers_in_flight", topic=topic) == 1
    worker.release.set()
    await client.call(ctx, "ok", instance_uuid="i-2")  # after the cast, on the same server
    for _ in range(200):
        if value("stratus_bus_handlers_in_flight", topic=topic) == 0:
            break
        await asyncio.sleep(0.01)
    assert value("stratus_bus_handlers_in_flight", topic=topic) == 0

    assert value("stratus_bus_messages_sent_total", kind="call", topic=topic, method="ok") == 2
    assert value("stratus_bus_messages_sent_total", kind="cast", topic=topic,
                 method="hold") == 1
    assert value("stratus_bus_send_errors_total", kind="call", topic=topic,
                 error="remote") == 1
    assert value("stratus_bus_call_duration_seconds_count", topic=topic, method="ok") == 2
    assert value("stratus_bus_messages_handled_total", kind="call", topic=topic,
                 method="fail", outcome="error") == 1
    assert value("stratus_bus_messages_handled_total", kind="call", topic=topic, method="ok",
                 outcome="ok") == 2
    assert value("stratus_bus_messages_handled_total", kind="cast", topic=topic,
                 method="hold", outcome="ok") == 1
    # A method the server does not serve is one label, whatever it was called.
    with pytest.raises(RemoteError):
        await client.call(ctx, "no_such_method_x1")
    assert value("stratus_bus_messages_handled_total", kind="call", topic=topic,
                 method="unknown", outcome="rejected") == 1


async def test_a_call_nobody_answers_counts_as_a_timeout() -> None:
    topic = f"t{uuid.uuid4().hex[:8]}"
    transport = get_transport(f"memory://obs-{uuid.uuid4().hex[:8]}")
    await transport.start()
    try:
        with pytest.raises(MessagingTimeout):
            await RPCClient(transport, Target(topic), timeout=0.2).call(
                RequestContext(user_id="u"), "anything")
    finally:
        await transport.close()
    assert value("stratus_bus_send_errors_total", kind="call", topic=topic,
                 error="timeout") == 1


# JSON log lines ---------------------------------------------------------------------------


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every record of the process, as the JSON handler of ``setup_logging`` writes it."""
    out = io.StringIO()
    with json_lines_to(logging.StreamHandler(out)):
        yield out


def parsed(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_json_line_names_what_is_known(json_lines: io.StringIO,
                                         span_exporter: InMemorySpanExporter) -> None:
    LOG.info("outside")
    token = set_instance("inst-1")
    try:
        with span("work") as current:
            LOG.warning("inside %s", "it")
            try:
                raise ValueError("bad")
            except ValueError:
                LOG.exception("failed")
    finally:
        reset_instance(token)
    outside, inside, failed = parsed(json_lines)
    assert outside["message"] == "outside" and outside["level"] == "INFO"
    assert outside["logger"] == "tests.observability"
    assert not {"request_id", "trace_id", "span_id", "instance_uuid"} & set(outside)
    assert inside["message"] == "inside it"
    assert inside["trace_id"] == format(current.get_span_context().trace_id, "032x")
    assert inside["span_id"] == format(current.get_span_context().span_id, "016x")
    assert inside["instance_uuid"] == "inst-1"
    assert "ValueError: bad" in failed["exception"]
    assert failed["time"].endswith("+00:00")


async def test_api_lines_carry_request_trace_and_server(
        client: httpx.AsyncClient, json_lines: io.StringIO,
        span_exporter: InMemorySpanExporter) -> None:
    server_id = str(uuid.uuid4())
    response = await client.get(f"/compute/servers/{server_id}")
    request_id = response.headers["x-openstack-request-id"]
    lines = [line for line in parsed(json_lines) if line.get("request_id") == request_id]
    assert len(lines) == 2
    assert lines[0]["message"] == f"showing {server_id}"
    assert lines[1]["message"].startswith(f"GET /compute/servers/{server_id} status: 200 ")
    (server_span,) = [s for s in span_exporter.get_finished_spans()
                      if s.attributes and s.attributes.get("openstack.request_id") == request_id
                      and s.attributes.get("http.route")]
    assert server_span.attributes["http.route"] == "/servers/{server_id}"
    for line in lines:
        assert line["instance_uuid"] == server_id
        assert line["trace_id"] == format(server_span.context.trace_id, "032x")


async def test_bus_handler_lines_name_the_instance(bus: tuple[RPCClient, Worker, str],
                                                   json_lines: io.StringIO,
                                                   span_exporter: InMemorySpanExporter) -> None:
    client, _, _ = bus
    ctx = RequestContext(user_id="u", project_id="p")
    await client.call(ctx, "ok", instance_uuid="inst-42")
    (line,) = [line for line in parsed(json_lines) if line["message"] == "working on it"]
    assert line["instance_uuid"] == "inst-42"
    assert line["request_id"] == ctx.request_id
    assert len(line["trace_id"]) == 32
