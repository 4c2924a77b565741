"""The dashboard's ASGI app: its routes, static files and error pages."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from opentelemetry.trace import SpanKind
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stratus.core import tracing
from stratus.core.config import DashboardSettings
from stratus.core.trace_table import DASHBOARD
from stratus.core.web.app import fastapi_options
from stratus.dashboard import (
    floating_ips,
    identity_admin,
    images,
    instances,
    keypairs,
    login,
    networks,
    overview,
    routers,
    security_groups,
    system_admin,
    volumes,
)
from stratus.dashboard.client import SessionExpired
from stratus.dashboard.sessions import Sessions, SessionStore, StoreUnavailable, store_for
from stratus.dashboard.web import (
    HERE,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    CsrfRefused,
    Dashboard,
    LoginRequired,
    base_path,
    clear_cookie,
    csrf_guard,
    dashboard_of,
    is_htmx,
    render,
)


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every answer (pages, fragments, static files)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


class RequestSpans:
    """A server span per page or form request (``dashboard POST``), so the API calls the
    request makes (each a client span carrying the trace, ``core.http``) join its trace: a
    launch's trace starts at the dashboard, not at the compute API. FastAPI's own request
    spans are off, as in the APIs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", ""))
        attributes: dict[str, Any] = {"http.method": method, "http.target": path}
        with tracing.span(f"{DASHBOARD} {method}", SpanKind.SERVER, **attributes) as current:

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    current.set_attribute("http.status_code", message["status"])
                await send(message)

            await self.app(scope, receive, sending)


def _to_login(request: Request) -> Response:
    url = f"{base_path(request)}/login"
    if is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def create_dashboard_app(options: DashboardSettings, http: httpx.AsyncClient,
                         identity_url: str, *, secure: bool = False,
                         store: SessionStore | None = None) -> FastAPI:
    """The dashboard, calling the APIs with ``http``; users log in at ``identity_url``
    (``.../identity/v3``); ``secure``: cookies always ``Secure`` (an https public URL).
    Sessions live in ``store`` (default: the one ``options`` names; its owner closes it)."""
    app = FastAPI(title="Stratus dashboard", docs_url=None, redoc_url=None,
                  openapi_url=None, dependencies=[Depends(csrf_guard)], **fastapi_options())
    app.state.dashboard = Dashboard(
        options=options, sessions=Sessions(store if store is not None else store_for(options),
                                           options.session_idle_timeout),
        http=http, identity_url=identity_url.rstrip("/"), secure=secure)
    app.include_router(login.router)
    app.include_router(instances.router)
    app.include_router(images.router)
    app.include_router(keypairs.router)
    app.include_router(overview.router)
    for pages in (volumes, networks, routers, floating_ips, security_groups, identity_admin,
                  system_admin):
        app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _: Exception) -> Response:
        return _to_login(request)

    @app.exception_handler(SessionExpired)
    async def session_expired(request: Request, _: Exception) -> Response:
        await dashboard_of(request).sessions.end(request.cookies.get(SESSION_COOKIE))
        response = _to_login(request)
        clear_cookie(request, response, SESSION_COOKIE)
        return response

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: Exception) -> Response:
        return render(request, "message.html", status_code=503,
                      message=f"The dashboard's session store is unavailable: {exc}")

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, _: Exception) -> Response:
        return render(request, "message.html", status_code=403,
                      message="This form has expired or did not come from this dashboard. "
                              "Reload the page and try again.")

    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestSpans)
    return app
