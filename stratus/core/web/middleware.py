"""ASGI middleware every API runs behind.

``RequestMiddleware`` gives each request its ``req-<uuid>`` id (echoed in
``x-openstack-request-id``), opens its span, logs one line per request, records it in the
process's metrics (by route template, never the raw path), and turns any
unhandled exception into a 500 in the API's error style (a database too busy to lend a
connection within its pool timeout into a 503 with ``Retry-After``: the client may retry).
``BodySizeLimitMiddleware`` refuses bodies larger than the configured limit with a 413,
whether or not they are chunked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stratus.core import metrics, tracing
from stratus.core.context import (
    current_instance,
    generate_request_id,
    is_request_id,
    reset_instance,
    reset_request_id,
    set_instance,
    set_request_id,
)
from stratus.core.db import BUSY_ERRORS, database_unreachable
from stratus.core.web.errors import ErrorStyle

LOG = logging.getLogger("stratus.web")

#: Seconds a client told the service is busy should wait before retrying.
BUSY_RETRY_AFTER = 2

REQUEST_ID_HEADER = b"x-openstack-request-id"

#: Methods a metric names; any other a client sends is counted as ``other``.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _TraceHeaders(dict[str, str]):
    """The ASGI headers as the propagator reads them (``traceparent``, ``tracestate``)."""

    def __init__(self, headers: dict[bytes, bytes]) -> None:
        super().__init__((k.decode("latin-1"), headers[k].decode("latin-1"))
                         for k in (b"traceparent", b"tracestate") if k in headers)


def route_template(scope: Scope, outer: object = None) -> str:
    """The template of the route that took the request (``/v2.1/servers/{server_id}``), or
    ``unmatched``: a metric label, so never the raw path with its ids. ``outer``: the route
    the scope held when the request reached this app (the mount of the app itself)."""
    route = scope.get("route")
    if route is outer:
        return metrics.UNMATCHED_ROUTE
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else metrics.UNMATCHED_ROUTE


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, style: ErrorStyle, service: str,
                 extra_request_id_headers: Iterable[str] = ()) -> None:
        self.app = app
        self.style = style
        self.service = service
        self.extra_headers = [h.lower().encode() for h in extra_request_id_headers]
        self.in_progress = metrics.API_IN_PROGRESS.labels(service)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = generate_request_id()
        incoming = headers.get(REQUEST_ID_HEADER, b"").decode("latin-1")
        global_request_id = incoming if is_request_id(incoming) else None
        scope.setdefault("state", {})
        scope["state"]["request_id"] = request_id
        scope["state"]["global_request_id"] = global_request_id
        token = set_request_id(request_id)
        instance_token = set_instance(None)
        outer_route = scope.get("route")
        method = scope["method"]
        path = scope["path"]
        started = time.perf_counter()
        status_holder = {"status": 500, "sent": False}
        id_headers = [(REQUEST_ID_HEADER, request_id.encode())] + [
            (h, request_id.encode()) for h in self.extra_headers
        ]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["sent"] = True
                message["headers"] = list(message.get("headers", [])) + id_headers
            await send(message)

        self.in_progress.inc()
        # A caller's W3C trace context (another service's, or a client's): this request's
        # spans join its trace.
        parent = (otel_context.attach(propagate.extract(_TraceHeaders(headers)))
                  if b"traceparent" in headers else None)
        try:
            with tracing.span(
                f"{self.service} {method}",
                kind=SpanKind.SERVER,
                **{"http.method": method, "http.target": path,
                   "openstack.global_request_id": global_request_id},
            ) as current:
                try:
                    await self.app(scope, receive, send_with_id)
                except BUSY_ERRORS as exc:
                    LOG.warning("busy: %s %s: %s", method, path, exc)
                    current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                    if status_holder["sent"]:
                        raise
                    response = self.style.response(
                        503, "The service is too busy to take this request now; retry "
                             "it shortly.", headers={"Retry-After": str(BUSY_RETRY_AFTER)})
                    await response(scope, receive, send_with_id)
                except Exception as exc:
                    current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                    # A database restart or outage is not a bug: the client retries.
                    unreachable = database_unreachable(exc)
                    if unreachable:
                        LOG.warning("database unreachable: %s %s: %s", method, path,
                                    type(exc).__name__)
                    else:
                        LOG.exception("unhandled error in %s %s", method, path)
                    if status_holder["sent"]:
                        raise
                    response = self.style.response(
                        503, "The database is unreachable; retry the request shortly.",
                        headers={"Retry-After": str(BUSY_RETRY_AFTER)},
                    ) if unreachable else self.style.response(
                        500, "An unexpected error prevented the server from fulfilling "
                             "your request.")
                    await response(scope, receive, send_with_id)
                finally:
                    status = status_holder["status"]
                    elapsed = time.perf_counter() - started
                    current.set_attribute("http.status_code", status)
                    template = route_template(scope, outer_route)
                    current.set_attribute("http.route", template)
                    instance = current_instance()
                    if instance is not None:  # named by the route or the handler
                        current.set_attribute(tracing.INSTANCE_ATTRIBUTE, instance)
                    metrics.child(metrics.API_REQUESTS, self.service,
                                  method if method in _METHODS else "other", template,
                                  str(status)).observe(elapsed)
                    # Inside the span, so the line carries its trace id. Its arguments are
                    # made only when the line is logged at all.
                    if LOG.isEnabledFor(logging.INFO):
                        LOG.info("%s %s status: %s time: %.4f%s", method, path, status,
                                 elapsed, f" global: {global_request_id}"
                                 if global_request_id else "")
        finally:
            if parent is not None:
                otel_context.detach(parent)
            self.in_progress.dec()
            reset_instance(instance_token)
            reset_request_id(token)


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limit: int, style: ErrorStyle,
                 exempt_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.limit = limit
        self.style = style
        self.exempt = tuple(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.exempt and scope["path"].endswith(self.exempt)):
            await self.app(scope, receive, send)
            return
        message = f"Request is too large. The limit is {self.limit} bytes."
        for name, value in scope.get("headers") or []:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await self.style.response(413, message)(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, message)
            return msg

        await self.app(scope, limited_receive, send)


#: Names the process of a pool that answered (``stratus serve --workers``).
WORKER_HEADER = b"x-stratus-worker"


class WorkerHeaderMiddleware:
    """Adds ``X-Stratus-Worker: <index>/<pid>`` to every response of one worker of a pool
    sharing a port, so an operator (and the tests) can tell which process answered and
    whose ``/metrics`` a scrape read."""

    def __init__(self, app: ASGIApp, *, value: str) -> None:
        self.app = app
        self.header = (WORKER_HEADER, value.encode("latin-1"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_named)
