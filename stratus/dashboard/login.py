"""Logging in and out, and switching projects: the identity API with the user's password
or token; the session keeps what the pages need of the token.

Login asks for a token with the password (Keystone scopes it to the user's default project
when there is one), then the projects the user can reach; an unscoped token is rescoped to
the first of them. Only the session's token stays live: the unscoped token of a login and
the token of the project left are revoked once rescoped. Switching projects rescopes the
session's token and starts a new session (a new cookie). Logout revokes the token
(``DELETE /v3/auth/tokens``) and ends the session.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from stratus.dashboard.client import SERVICES, ApiError
from stratus.dashboard.sessions import Session
from stratus.dashboard.web import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Dashboard,
    Page,
    clear_cookie,
    current,
    dashboard_of,
    field,
    form_of,
    redirect,
    render,
    session_of,
    set_cookie,
)

LOG = logging.getLogger(__name__)
router = APIRouter()
IDENTITY = SERVICES["identity"][0]


async def _identity(dashboard: Dashboard, method: str, path: str, *, token: str | None = None,
                    subject: str | None = None, json: Any = None) -> httpx.Response:
    """One call to the identity API at the dashboard's identity URL; a 401 comes back as
    the answer (a wrong password is not an error of the service)."""
    headers = {}
    if token is not None:
        headers["X-Auth-Token"] = token
    if subject is not None:
        headers["X-Subject-Token"] = subject
    try:
        response = await dashboard.http.request(method, f"{dashboard.identity_url}{path}",
                                                 json=json, headers=headers,
                                                 timeout=dashboard.options.api_timeout)
    except httpx.TimeoutException as exc:
        raise ApiError(IDENTITY, 504, f"no answer in {dashboard.options.api_timeout:g} s."
                       ) from exc
    except httpx.HTTPError as exc:
        raise ApiError(IDENTITY, 503, "it is unreachable.") from exc
    if response.status_code >= 500:
        raise ApiError(IDENTITY, response.status_code,
                       f"it answered {response.status_code}.")
    return response


def _expiry(body: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")).timestamp()


def _session(token: str, body: dict[str, Any], projects: list[dict[str, Any]]) -> Session:
    user = body["user"]
    project = body.get("project") or {}
    return Session(
        token=token, expires_at=_expiry(body),
        user={"id": user["id"], "name": user.get("name", ""),
              "domain": (user.get("domain") or {}).get("name", "")},
        project={"id": project.get("id", ""), "name": project.get("name", "")},
        roles=[role["name"] for role in body.get("roles") or []],
        catalog=body.get("catalog") or [],
        projects=sorted(({"id": p["id"], "name": p["name"]} for p in projects),
                        key=lambda p: p["name"]))


async def _projects(dashboard: Dashboard, token: str) -> list[dict[str, Any]]:
    response = await _identity(dashboard, "GET", "/auth/projects", token=token)
    if response.status_code >= 400:
        return []
    projects: list[dict[str, Any]] = response.json().get("projects", [])
    return projects


async def _rescope(dashboard: Dashboard, token: str,
                   project_id: str) -> tuple[str, dict[str, Any]] | None:
    """A token for ``project_id`` from ``token`` (its body), or None when refused."""
    response = await _identity(dashboard, "POST", "/auth/tokens", json={"auth": {
        "identity": {"methods": ["token"], "token": {"id": token}},
        "scope": {"project": {"id": project_id}}}})
    if response.status_code != 201:
        return None
    return response.headers["X-Subject-Token"], response.json()["token"]


async def _revoke(dashboard: Dashboard, token: str) -> None:
    """Revoke ``token``; a failure is logged (without the token) and otherwise ignored: the
    session ends all the same."""
    try:
        response = await _identity(dashboard, "DELETE", "/auth/tokens", token=token,
                                   subject=token)
    except ApiError as exc:
        LOG.warning("Dashboard: a token was not revoked: %s", exc.banner)
        return
    if response.status_code not in (204, 404):
        LOG.warning("Dashboard: a token was not revoked: identity answered %s",
                    response.status_code)


async def _start_session(request: Request, session: Session) -> Response:
    dashboard = dashboard_of(request)
    cookie = await dashboard.sessions.create(session)
    if cookie is None:
        return _login_page(request, "The token the identity service issued has expired.",
                           status_code=401)
    response = redirect(request, "/instances")
    # The browser may keep the cookie as long as the token lives; the session itself ends
    # sooner when left idle (the store forgets it).
    set_cookie(request, response, SESSION_COOKIE, cookie,
               max_age=max(1, int(session.expires_at - time.time())))
    clear_cookie(request, response, LOGIN_CSRF_COOKIE)
    return response


def _login_page(request: Request, error: str | None = None, *, status_code: int = 200,
                values: dict[str, str] | None = None, banner: str | None = None) -> Response:
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", status_code=status_code, error=error,
                      banner=banner, login_csrf=token,
                      values=values or {"domain": "Default", "user": ""})
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
    return response


@router.get("/login")
async def login_page(request: Request) -> Response:
    if await session_of(request) is not None:
        return redirect(request, "/instances")
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    dashboard = dashboard_of(request)
    form = await form_of(request)
    domain, user = field(form, "domain", "Default") or "Default", field(form, "user")
    password = form.get("password", [""])[0]
    values = {"domain": domain, "user": user}
    if not user or not password:
        return _login_page(request, "Give a user name and a password.", status_code=400,
                           values=values)
    try:
        response = await _identity(dashboard, "POST", "/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": domain}, "password": password}}}}})
        if response.status_code != 201:
            return _login_page(request, "The domain, user name or password is wrong.",
                               status_code=401, values=values)
        token, body = response.headers["X-Subject-Token"], response.json()["token"]
        projects = await _projects(dashboard, token)
        if "project" not in body:
            if not projects:
                await _revoke(dashboard, token)
                return _login_page(request, "This user has no role on any project.",
                                   status_code=403, values=values)
            first = min(projects, key=lambda p: p["name"])
            scoped = await _rescope(dashboard, token, first["id"])
            if scoped is None:
                return _login_page(request, f"Could not log in to project {first['name']}.",
                                   status_code=403, values=values)
            # The unscoped token has done its work: only the session's token stays live
            # (revocation names one token's audit id, not its chain).
            await _revoke(dashboard, token)
            token, body = scoped
    except ApiError as exc:
        return _login_page(request, status_code=exc.status, values=values, banner=exc.banner)
    return await _start_session(request, _session(token, body, projects))


@router.post("/project")
async def switch_project(request: Request, page: Page = Depends(current)) -> Response:
    """Rescope to the project chosen: a new token and a new session; the old one ends."""
    dashboard = dashboard_of(request)
    project_id = field(await form_of(request), "project")
    if project_id not in {p["id"] for p in page.session.projects}:
        return render(request, "message.html", status_code=404,
                      message="No such project among yours.")
    try:
        scoped = await _rescope(dashboard, page.session.token, project_id)
    except ApiError as exc:
        return render(request, "message.html", status_code=exc.status, message=exc.banner)
    if scoped is None:
        return render(request, "message.html", status_code=403,
                      message="The identity service refused a token for that project.")
    token, body = scoped
    await _revoke(dashboard, page.session.token)
    await dashboard.sessions.end(request.cookies.get(SESSION_COOKIE))
    return await _start_session(request, _session(token, body, page.session.projects))


@router.post("/logout")
async def logout(request: Request, page: Page = Depends(current)) -> Response:
    dashboard = dashboard_of(request)
    await _revoke(dashboard, page.session.token)
    await dashboard.sessions.end(request.cookies.get(SESSION_COOKIE))
    response = redirect(request, "/login")
    clear_cookie(request, response, SESSION_COOKIE)
    return response
