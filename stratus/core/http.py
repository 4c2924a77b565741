"""Outgoing HTTP between services: one span per call, request id passed along.

Each call carries ``X-OpenStack-Request-ID`` with the current request id, so the service
called records it as the global request id of its own request, as Nova and Neutron do, and
the W3C trace context of its span, so the service's spans join the caller's trace.
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path
from typing import Any

import httpx
from opentelemetry import propagate
from opentelemetry.trace import SpanKind

from stratus.core import tracing
from stratus.core.context import current_request_id

#: Methods safe to send again when a pooled connection turns out to be closed.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
#: What a keep-alive connection the server closed at the moment we reused it raises.
_STALE_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class TracingTransport(httpx.AsyncBaseTransport):
    """Adds the request id and a span; sends a safe request once more when the server closed
    the pooled connection just as it was reused (a race with its keep-alive timeout)."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None,
                 verify: ssl.SSLContext | bool | None = None) -> None:
        #: Sends every request when given (tests route calls to an app); else HTTP and
        #: HTTPS each get a connection pool of their own, made at their first request.
        self.inner = inner
        self._verify = verify
        self._pools: dict[str, httpx.AsyncHTTPTransport] = {}

    def _sender(self, request: httpx.Request) -> httpx.AsyncBaseTransport:
        if self.inner is not None:
            return self.inner
        scheme = request.url.scheme
        pool = self._pools.get(scheme)
        if pool is None:
            # The authorities (certifi's bundle: ~1.8 MB resident, ~25 ms) are loaded by the
            # first HTTPS request, not by every process that only calls over plain HTTP (an
            # all-in-one without TLS). A plain request never verifies anything.
            verify: ssl.SSLContext | bool = False
            if scheme == "https":
                verify = (default_verify() if self._verify is None or self._verify is True
                          else self._verify)
            pool = self._pools[scheme] = httpx.AsyncHTTPTransport(verify=verify)
        return pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request_id = current_request_id()
        if request_id and "x-openstack-request-id" not in request.headers:
            request.headers["X-OpenStack-Request-ID"] = request_id
        attributes: dict[str, Any] = {"http.method": request.method,
                                      "http.url": str(request.url.copy_with(query=None))}
        with tracing.span(f"HTTP {request.method}", kind=SpanKind.CLIENT,
                          **attributes) as current:
            propagate.inject(request.headers)
            sender = self._sender(request)
            try:
                response = await sender.handle_async_request(request)
            except _STALE_CONNECTION:
                if request.method not in _IDEMPOTENT:
                    raise
                response = await sender.handle_async_request(request)
            current.set_attribute("http.status_code", response.status_code)
            return response

    async def aclose(self) -> None:
        if self.inner is not None:
            await self.inner.aclose()
        for pool in self._pools.values():
            await pool.aclose()


@functools.cache
def default_verify() -> ssl.SSLContext:
    """The authorities httpx trusts for ``verify=True`` (certifi's, or ``SSL_CERT_FILE``'s),
    loaded once per process: httpx loads the whole bundle again for every client made with
    ``verify=True`` (a tenth of a start's CPU went there, a dozen clients at ~25 ms each)."""
    return httpx.create_ssl_context()


def client_verify(ca_file: Path | str | None) -> ssl.SSLContext | bool:
    """What a client of this cloud verifies servers with: the system's authorities and, when
    the cloud has its own CA (``tls.ca_file``), that one too (a service URL may name
    another HTTPS server)."""
    if ca_file is None:
        return default_verify()
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(ca_file))
    return context


def service_http_client(timeout: float = 30.0,
                        transport: httpx.AsyncBaseTransport | None = None,
                        verify: ssl.SSLContext | bool | None = None) -> httpx.AsyncClient:
    """``verify``: what HTTPS servers are checked with (``client_verify``: the cloud's own
    CA when it has one; unset: ``default_verify``)."""
    return httpx.AsyncClient(transport=TracingTransport(transport, verify), timeout=timeout)
