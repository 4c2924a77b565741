"""What every dashboard page shares: templates, the session of a request, CSRF, responses.

Contracts:

* ``current`` (a dependency) is the request's ``Page``: its session and ``Api``. Without a
  live session a page answers a redirect to the login page (htmx requests: a 401 with
  ``HX-Redirect``), never the page.
* ``csrf_guard`` runs before every route: a request other than GET/HEAD must bring the
  session's CSRF token (the login form: the pre-login cookie's) in ``X-CSRF-Token`` or the
  form field ``csrf_token`` of an urlencoded body; otherwise 403. It parses that body once
  (``form_of``), without python-multipart: files are never posted through forms (an
  upload is a request's raw body, with the token in the header).
* Every response says ``Cache-Control: no-store`` and forbids framing; pages render with
  autoescaping on.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stratus.core.config import DashboardSettings
from stratus.dashboard.client import Api
from stratus.dashboard.sessions import Session, Sessions

HERE = Path(__file__).parent
SESSION_COOKIE = "stratus_session"
#: Double-submit token of the login form (there is no session yet to hold one).
LOGIN_CSRF_COOKIE = "stratus_login_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Our own scripts and styles only; htmx needs no eval for what the pages use.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'; object-src 'none'",
}

templates = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                               autoescape=True, undefined=jinja2.StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)


@dataclass
class Dashboard:
    """What the routes share: options, sessions, the HTTP client, the identity URL."""

    options: DashboardSettings
    sessions: Sessions
    http: httpx.AsyncClient
    identity_url: str
    #: Mark cookies Secure always (the cloud's public URL is https), besides when the
    #: request itself came over https.
    secure: bool = False


def dashboard_of(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def base_path(request: Request) -> str:
    """Where the dashboard is mounted (``/dashboard``): every link starts with it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def secure_cookies(request: Request) -> bool:
    return dashboard_of(request).secure or request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path=base_path(request) or "/",
                        httponly=True, samesite="lax", secure=secure_cookies(request))


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path=base_path(request) or "/", httponly=True,
                           samesite="lax", secure=secure_cookies(request))


class LoginRequired(Exception):
    """No live session: to the login page."""


class CsrfRefused(Exception):
    """A non-GET request without the right CSRF token."""


@dataclass
class Page:
    """One request of a logged-in user."""

    request: Request
    session: Session
    api: Api

    @property
    def base(self) -> str:
        return base_path(self.request)


async def session_of(request: Request) -> Session | None:
    if not hasattr(request.state, "session"):
        sessions = dashboard_of(request).sessions
        request.state.session = await sessions.get(request.cookies.get(SESSION_COOKIE))
    session: Session | None = request.state.session
    return session


async def current(request: Request) -> Page:
    """The logged-in user's ``Page``; ``LoginRequired`` otherwise."""
    session = await session_of(request)
    if session is None:
        raise LoginRequired()
    dashboard = dashboard_of(request)
    return Page(request, session, Api(dashboard.http, session, dashboard.options.api_timeout))


async def form_of(request: Request) -> dict[str, list[str]]:
    """The request's urlencoded form (parsed once)."""
    if not hasattr(request.state, "form"):
        body = (await request.body()).decode("utf-8", errors="replace")
        request.state.form = parse_qs(body, keep_blank_values=True)
    form: dict[str, list[str]] = request.state.form
    return form


def field(form: dict[str, list[str]], name: str, default: str = "") -> str:
    values = form.get(name)
    return values[0].strip() if values else default


async def csrf_guard(request: Request) -> None:
    """Refuse a non-GET request that does not bring back its CSRF token."""
    if request.method in SAFE_METHODS:
        return
    session = await session_of(request)
    expected = session.csrf if session is not None else request.cookies.get(LOGIN_CSRF_COOKIE)
    given = request.headers.get("X-CSRF-Token")
    if given is None and request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        # Only a form's body is read here: an upload's stays a stream for its route.
        given = field(await form_of(request), "csrf_token") or None
    if not expected or not given or not secrets.compare_digest(expected, given):
        raise CsrfRefused()


def render(request: Request, template: str, status_code: int = 200,
           headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    session: Session | None = getattr(request.state, "session", None)
    defaults: dict[str, Any] = {"nav": None, "banners": []}
    html = templates.get_template(template).render(
        base=base_path(request), session=session, csrf=session.csrf if session else "",
        **{**defaults, **context})
    return HTMLResponse(html, status_code=status_code, headers=headers)


def redirect(request: Request, path: str) -> Response:
    """To ``path`` under the dashboard: a 303, or for htmx an ``HX-Redirect``."""
    url = f"{base_path(request)}{path}"
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)
