"""Outgoing service HTTP: the request id travels along and each call records a CLIENT span."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import stratus.core.http
from stratus.core.context import generate_request_id, reset_request_id, set_request_id
from stratus.core.http import client_verify, service_http_client
from stratus.core.tls import ensure_certificates


class Recorder:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json={"ok": True})


@pytest.fixture
def request_id() -> Iterator[str]:
    value = generate_request_id()
    token = set_request_id(value)
    yield value
    reset_request_id(token)


async def test_request_id_is_sent(request_id: str, span_exporter: InMemorySpanExporter) -> None:
    recorder = Recorder()
    async with service_http_client(transport=httpx.MockTransport(recorder)) as client:
        response = await client.get("http://image.test/v2/images/abc?limit=5")
    assert response.status_code == 200
    assert len(recorder.requests) == 1
    assert recorder.requests[0].headers["x-openstack-request-id"] == request_id

    spans = span_exporter.get_finished_spans()
    client_spans = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(client_spans) == 1
    span = client_spans[0]
    assert span.name == "HTTP GET"
    assert span.attributes is not None
    assert span.attributes["openstack.request_id"] == request_id
    assert span.attributes["http.method"] == "GET"
    assert span.attributes["http.status_code"] == 200
    # the query string (which may hold markers or filters) is left out of the span
    assert span.attributes["http.url"] == "http://image.test/v2/images/abc"


async def test_one_span_per_call(request_id: str, span_exporter: InMemorySpanExporter) -> None:
    recorder = Recorder(status=404)
    async with service_http_client(transport=httpx.MockTransport(recorder)) as client:
        await client.post("http://network.test/v2.0/ports", json={"port": {}})
        await client.delete("http://network.test/v2.0/ports/p1")
    spans = [s for s in span_exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert [s.name for s in spans] == ["HTTP POST", "HTTP DELETE"]
    assert all(s.attributes and s.attributes["http.status_code"] == 404 for s in spans)
    assert all(r.headers["x-openstack-request-id"] == request_id for r in recorder.requests)


async def test_explicit_request_id_header_is_kept(request_id: str) -> None:
    recorder = Recorder()
    other = generate_request_id()
    async with service_http_client(transport=httpx.MockTransport(recorder)) as client:
        await client.get("http://x.test/", headers={"X-OpenStack-Request-ID": other})
    assert recorder.requests[0].headers.get_list("x-openstack-request-id") == [other]


async def test_no_request_id_outside_a_request(span_exporter: InMemorySpanExporter) -> None:
    recorder = Recorder()
    token = set_request_id(None)
    try:
        async with service_http_client(transport=httpx.MockTransport(recorder)) as client:
            await client.get("http://x.test/")
    finally:
        reset_request_id(token)
    assert "x-openstack-request-id" not in recorder.requests[0].headers
    spans = [s for s in span_exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert len(spans) == 1
    assert "openstack.request_id" not in (spans[0].attributes or {})


async def test_transport_error_still_ends_the_span(request_id: str,
                                                    span_exporter: InMemorySpanExporter) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with service_http_client(transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://down.test/")
    spans = [s for s in span_exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert len(spans) == 1
    assert not spans[0].status.is_ok


async def _serve_200(ssl_context: ssl.SSLContext | None = None) -> asyncio.Server:
    """A loopback HTTP(S) server answering every request 200 with an empty body."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0, ssl=ssl_context)


async def test_plain_http_loads_no_authorities(monkeypatch: pytest.MonkeyPatch) -> None:
    """The system's authorities (~1.8 MB) wait for the first HTTPS call: a process calling
    only over plain HTTP never loads them."""
    def refuse() -> ssl.SSLContext:
        raise AssertionError("authorities loaded for a plain HTTP call")

    monkeypatch.setattr(stratus.core.http, "default_verify", refuse)
    server = await _serve_200()
    port = server.sockets[0].getsockname()[1]
    async with server, service_http_client() as client:
        assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 200


async def test_https_still_verifies_the_server(tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path, ["127.0.0.1"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    server = await _serve_200(context)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    async with server:
        async with service_http_client(verify=client_verify(files.ca)) as client:
            assert (await client.get(url)).status_code == 200
        async with service_http_client() as client:  # the system's: not this cloud's CA
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(url)
