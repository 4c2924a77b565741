"""The app factory every API uses, so each one answers errors, ids and limits alike."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRouter
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from stratus.core.context import set_instance
from stratus.core.exceptions import StratusError
from stratus.core.web.errors import ErrorStyle
from stratus.core.web.microversions import MicroversionMiddleware, VersionRange
from stratus.core.web.middleware import BodySizeLimitMiddleware, RequestMiddleware
from stratus.core.web.routing import install_route_table

LOG = logging.getLogger(__name__)


#: ``api_root``'s answers by what they depend on; emptied when it holds this many (the Host
#: header is the client's to choose).
_ROOTS: dict[tuple[Any, ...], str] = {}
_ROOTS_KEPT = 256


def api_root(request: Request) -> str:
    """The URL this API is mounted at, as the client reached it (``http://h:8080/identity``).

    Starlette keeps the full path in ``scope["path"]`` and the mount point in
    ``scope["root_path"]``, so the root is the request URL cut back to ``root_path``. That
    depends only on the scheme, the Host header (else the server's address) and the root
    path, so it is made once for each of them (building and cutting the URL cost ~50
    Python calls, on every request whose answer links to itself: every boot's).
    """
    scope = request.scope
    host = None
    for name, value in scope.get("headers") or ():
        if name == b"host":
            host = value
            break
    key = (scope.get("scheme"), host, scope.get("server"), scope.get("root_path", ""))
    root = _ROOTS.get(key)
    if root is None:
        root = str(request.url.replace(path=scope.get("root_path", ""), query=""))
        if len(_ROOTS) >= _ROOTS_KEPT:
            _ROOTS.clear()
        _ROOTS[key] = root
    return root


async def api_root_dependency(request: Request) -> str:
    """``api_root`` as a dependency (``async``: on the event loop, no worker thread)."""
    return api_root(request)


def describe_validation_error(exc: RequestValidationError) -> str:
    """A one-line, human account of what is wrong with the request."""
    parts = []
    for error in exc.errors():
        kind = error.get("type", "")
        location = [str(p) for p in error.get("loc", ()) if p != "body"]
        if kind == "json_invalid":
            return "Malformed request body: the body is not valid JSON."
        where = ".".join(location) or "body"
        parts.append(f"Invalid input for field '{where}': {error.get('msg', 'invalid value')}")
    return "; ".join(parts) or "Invalid request."


async def _name_instance(request: Request) -> None:
    """A request about a server names it for its log lines (``{server_id}`` in the route).
    Async, so it runs in the request's own context rather than a worker thread's copy."""
    server_id = request.path_params.get("server_id")
    if isinstance(server_id, str):
        set_instance(server_id)


def fastapi_options() -> dict[str, Any]:
    """FastAPI's own options we depend on.

    FastAPI 0.16x traces every request natively, with a SERVER span of its own that lacks
    the request id. ``RequestMiddleware`` (the dashboard's ``RequestSpans``) already opens
    the one SERVER span per request, so the native one is turned off where it exists (older
    FastAPI has no such option). Its native metrics and logs are off too: the services
    count requests in their own metrics and log one line each (``RequestMiddleware``), and
    with them on FastAPI asks OpenTelemetry's meter and logger providers on every request.
    """
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


def create_app(
    *,
    service: str,
    style: ErrorStyle,
    routers: Sequence[APIRouter] = (),
    max_body_size: int = 1024 * 1024,
    body_limit_exempt: Iterable[str] = (),
    extra_request_id_headers: Iterable[str] = (),
    versions: VersionRange | None = None,
    state: dict[str, Any] | None = None,
    openapi: bool = False,
    server_routes: bool = True,
) -> FastAPI:
    """Build one API's ASGI app.

    ``style`` decides the error body format for every error the app answers, including
    framework ones (unknown route, wrong method, invalid JSON, body too large).
    ``versions`` turns on microversion negotiation (Compute, Block Storage).
    ``openapi`` serves the API's OpenAPI document at ``/openapi.json`` (``serve_openapi``).
    ``server_routes``: some routes name a server (``{server_id}``), which each such request
    names for its log lines and span; an API without any says False and its requests skip
    that dependency (FastAPI solves it on every request, ~30 Python calls).
    """
    app = FastAPI(
        title=f"Stratus {service}",
        openapi_url="/openapi.json" if openapi else None,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
        dependencies=[Depends(_name_instance)] if server_routes else [],
        **fastapi_options(),
    )
    for key, value in (state or {}).items():
        setattr(app.state, key, value)
    app.state.error_style = style

    @app.exception_handler(StratusError)
    async def _domain_error(_: Request, exc: StratusError) -> Response:
        if exc.status >= 500:
            LOG.error("%s: %s", type(exc).__name__, exc.message)
        return style.response(exc.status, exc.message, title=exc.title,
                              type_name=type(exc).__name__)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        return style.response(400, describe_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed."
        if exc.status_code == 404 and message == "Not Found":
            message = "The resource could not be found."
        return style.response(exc.status_code, message, headers=exc.headers)

    for router in routers:
        app.include_router(router)
    install_route_table(app)

    if versions is not None:
        app.add_middleware(MicroversionMiddleware, versions=versions, style=style)
    app.add_middleware(BodySizeLimitMiddleware, limit=max_body_size, style=style,
                       exempt_paths=tuple(body_limit_exempt))
    app.add_middleware(RequestMiddleware, style=style, service=service,
                       extra_request_id_headers=tuple(extra_request_id_headers))
    return app
