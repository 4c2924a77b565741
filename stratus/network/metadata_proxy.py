"""The metadata proxy: 169.254.169.254:80 inside each network's DHCP namespace.

For each guest request it finds the port on that network holding the source address, and
forwards the method, path, query and body to metadata-api (``settings.metadata_url``) with:

* ``X-Forwarded-For``: the guest's address;
* ``X-Instance-ID``: the port's ``device_id``; ``X-Tenant-ID``: the port's ``project_id``;
* ``X-Instance-ID-Signature``: hex HMAC-SHA256 of the instance id, keyed with the shared
  secret, which metadata-api checks.

Headers of those names (and the other proxy headers Neutron uses) sent by the guest are
dropped, so a guest cannot speak for another instance. A source address that no port holds
gets 404; ``GET /`` is passed on without identification, as metadata-api answers it first;
a body over 64 KiB gets 413. Upstream answers come back as Neutron's proxy maps them: 200
with its body and content type; 400, 403, 404, 409, 500, 502, 503 and 504 as they are;
anything else 500; an unreachable metadata-api 503.

Each request is a span (seed steps 52 and 54: the guest's request and its answer) naming
the instance, in the trace of the request that placed the guest's port when the agent knows
it (``parent_of``; see ``stratus.network.agents.dhcp.port_traces``); the call to
metadata-api (step 53) is its child, carrying the trace on. Trace headers a guest sends
are dropped with the proxy's own: a guest cannot write into the cloud's traces.

The listening socket is made by a worker thread that entered the namespace (sockets keep the
namespace they were made in); it is then served by uvicorn in the agent's own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import socket
from collections.abc import Callable, Iterator

import httpx
import uvicorn
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from stratus.core import tracing
from stratus.core.context import reset_instance, set_instance
from stratus.network.agents import linux
from stratus.network.objects import METADATA_ADDRESS, PortInfo

LOG = logging.getLogger(__name__)

METADATA_PORT = 80
#: Largest request body forwarded (metadata-api takes at most a 1020-byte password).
MAX_BODY = 64 * 1024

#: Headers only the proxy may set; dropped from what the guest sends (compared lower-case).
PROXY_HEADERS = frozenset({
    "x-forwarded-for", "x-instance-id", "x-instance-id-signature", "x-tenant-id",
    "x-neutron-network-id", "x-neutron-router-id", "x-ovn-network-id",
    "x-metadata-provider", "x-metadata-provider-signature",
    # The cloud's own request id and trace context: not the guest's to choose.
    "x-openstack-request-id", "traceparent", "tracestate", "baggage",
})
#: Longest path recorded on a span (a guest chooses it).
_MAX_TRACED_PATH = 256
#: Hop-by-hop headers, and those httpx sets for the upstream request itself.
_NOT_FORWARDED = frozenset({
    "host", "connection", "keep-alive", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length",
})
_PASSED_THROUGH = frozenset({200, 400, 403, 404, 409, 500, 502, 503, 504})

#: A guest's source address → the port holding it on the proxy's network, or None.
PortLookup = Callable[[str], PortInfo | None]
#: A guest's port → the trace context its requests join, or None.
TraceParent = Callable[[PortInfo | None], Context | None]


def sign_instance_id(secret: str, instance_id: str) -> str:
    """Lower-case hex HMAC-SHA256 of ``instance_id`` keyed with ``secret`` (both UTF-8)."""
    return hmac.new(secret.encode(), instance_id.encode(), hashlib.sha256).hexdigest()


class ProxyApp:
    """The ASGI app of one network's proxy."""

    def __init__(self, network_id: str, lookup: PortLookup, upstream: str, secret: str,
                 client: httpx.AsyncClient, *, parent_of: TraceParent | None = None) -> None:
        self.network_id = network_id
        self.parent_of = parent_of
        self.lookup = lookup
        self.upstream = upstream.rstrip("/")
        self.secret = secret
        self.client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    def _headers(self, request: Request) -> dict[str, str]:
        return {k: v for k, v in request.headers.items()
                if k not in PROXY_HEADERS and k not in _NOT_FORWARDED}

    async def handle(self, request: Request) -> Response:
        source = request.client.host if request.client else ""
        port = self.lookup(source)
        instance = port.device_id if port is not None and port.device_id else None
        token = set_instance(instance)  # on the span of the call to metadata-api too
        try:
            with tracing.span(
                    f"metadata-proxy {request.method}", SpanKind.SERVER,
                    parent=self.parent_of(port) if self.parent_of is not None else None,
                    step="52,54", **{
                        "http.method": request.method,
                        "http.target": request.url.path[:_MAX_TRACED_PATH],
                        tracing.SOURCE_ATTRIBUTE: "guest",
                        tracing.UNIT_ATTRIBUTE: "metadata-proxy",
                        "stratus.port_id": port.id if port is not None else None,
                        "stratus.network_id": self.network_id}) as current:
                response = await self._handle(request, source, port)
                current.set_attribute("http.status_code", response.status_code)
                if response.status_code >= 500:
                    current.set_status(Status(StatusCode.ERROR))
                return response
        finally:
            reset_instance(token)

    async def _handle(self, request: Request, source: str, port: PortInfo | None) -> Response:
        headers = self._headers(request)
        headers["X-Forwarded-For"] = source
        if request.url.path != "/":
            if port is None or not port.device_id:
                LOG.info("metadata request from %s on network %s: no port holds that address",
                         source, self.network_id)
                return PlainTextResponse("The resource could not be found.", 404)
            headers["X-Instance-ID"] = port.device_id
            headers["X-Tenant-ID"] = port.project_id
            headers["X-Instance-ID-Signature"] = sign_instance_id(self.secret, port.device_id)
        elif request.method != "GET":
            return PlainTextResponse("The resource could not be found.", 404)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:  # a guest must not make the agent buffer without end
                return PlainTextResponse("The request body is too large.", 413)
        url = self.upstream + (request.url.path or "/")
        if request.url.query:
            url += "?" + request.url.query
        try:
            upstream = await self.client.request(request.method, url, headers=headers,
                                                  content=bytes(body))
        except httpx.HTTPError as exc:
            LOG.warning("metadata-api at %s unreachable for %s: %s", self.upstream, source,
                        type(exc).__name__)
            return PlainTextResponse("The metadata service is unavailable.", 503)
        if upstream.status_code not in _PASSED_THROUGH:
            LOG.warning("metadata-api answered %d to %s %s", upstream.status_code,
                        request.method, request.url.path)
            return PlainTextResponse("An unknown error has occurred.", 500)
        content_type = upstream.headers.get("content-type", "text/plain")
        return Response(upstream.content, upstream.status_code,
                        headers={"content-type": content_type})


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the agent's process owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen_in(namespace: str, address: str, port: int) -> socket.socket:
    with linux.entered(namespace):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class MetadataProxy:
    """One network's proxy: listening in ``namespace`` on ``address:port`` while running."""

    def __init__(self, namespace: str, app: ProxyApp, *, address: str = METADATA_ADDRESS,
                 port: int = METADATA_PORT) -> None:
        self.namespace = namespace
        self.app = app
        self.address = address
        self.port = port
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self.running:
            return
        sock = await asyncio.to_thread(_listen_in, self.namespace, self.address, self.port)
        config = uvicorn.Config(self.app, log_config=None, lifespan="off", access_log=False,
                                server_header=False, timeout_graceful_shutdown=2)
        server = _Server(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]),
                                         name=f"metadata-proxy-{self.namespace}")
        while not server.started and not self._task.done():  # noqa: ASYNC110 - no event
            await asyncio.sleep(0.005)
        if self._task.done():
            sock.close()
            self._task.result()  # raises what stopped it
        LOG.info("metadata proxy listening on %s:%d in %s", self.address, self.port,
                 self.namespace)

    async def stop(self) -> None:
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        try:
            async with asyncio.timeout(5):
                await task
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        except Exception:
            LOG.exception("metadata proxy of %s ended with an error", self.namespace)
        for sock in server.servers:
            for listener in sock.sockets:
                with contextlib.suppress(OSError):
                    listener.close()
