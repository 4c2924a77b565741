"""Identity admin: projects, users and their role assignments, through Keystone's v3 API
with the session's token.

Contracts:

* Policy stays in the identity API: the pages make the same calls for everyone. A user the
  API refuses (a member: 403) sees the API's own message in place of the table; the nav
  shows these pages to admins only, as a convenience, never as the check.
* Each page is one round of calls: the projects list (1), the users list (users, projects
  to name default projects: 2), a project (the project, its role assignments with names,
  the users and roles to assign: 4), a user (the user, the projects, their assignments: 3).
* Create, edit, enable/disable, delete, assign and unassign are one call each; done, back
  to the page (a 303); refused, the page again with the API's message at the form or row.
* A password given on a form goes into the call's body and nowhere else (no page, no log).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from stratus.dashboard.client import ApiError, gather
from stratus.dashboard.forms import Again, Refusal, items, names, placed, refuse, submit
from stratus.dashboard.web import Page, current, field, form_of, render

router = APIRouter(prefix="/identity")


def _checked(form: dict[str, list[str]], name: str) -> bool:
    return field(form, name) in ("on", "true", "1")


def _refused(request: Request, result: ApiError) -> Response:
    """A page whose main call the API refused (a member's 403): its message, its status."""
    return render(request, "message.html", status_code=result.status,
                  message=result.banner)


# Projects -----------------------------------------------------------------------------------


async def _projects(request: Request, page: Page, *, status_code: int = 200,
                    error: Refusal | None = None, values: dict[str, str] | None = None
                    ) -> Response:
    (projects,) = await gather(page.api.get("identity", "/projects"))
    if isinstance(projects, ApiError):
        return _refused(request, projects)
    rows = sorted(items(projects, "projects"), key=lambda p: (p.get("name") or "", p["id"]))
    return render(request, "identity_projects.html", status_code=status_code, projects=rows,
                  error=placed(error, ["create", *(f"project-{p['id']}" for p in rows)]),
                  values=values or {"enabled": "on"})


@router.get("/projects")
async def projects_page(request: Request, page: Page = Depends(current)) -> Response:
    return await _projects(request, page)


@router.post("/projects")
async def create_project(request: Request, page: Page = Depends(current)) -> Response:
    form = await form_of(request)
    values = {"name": field(form, "name"), "description": field(form, "description"),
              "enabled": field(form, "enabled")}
    again = partial(_projects, request, page, values=values)
    if not values["name"]:
        return await refuse(again, "create", "Give the project a name.")
    return await submit(request, lambda: page.api.post("identity", "/projects", {"project": {
        "name": values["name"], "description": values["description"],
        "enabled": _checked(form, "enabled")}}), where="create", again=again,
        back="/identity/projects")


async def _project(request: Request, page: Page, project_id: str, *, status_code: int = 200,
                   error: Refusal | None = None, values: dict[str, str] | None = None
                   ) -> Response:
    project, assignments, users, roles = await gather(
        page.api.get("identity", f"/projects/{project_id}"),
        page.api.get("identity", "/role_assignments",
                     params={"scope.project.id": project_id, "include_names": "true"}),
        page.api.get("identity", "/users"),
        page.api.get("identity", "/roles"))
    if isinstance(project, ApiError):
        return _refused(request, project)
    granted = sorted((a for a in items(assignments, "role_assignments") if "user" in a),
                     key=lambda a: (a["user"].get("name", ""), a["role"].get("name", "")))
    body = project["project"]
    return render(request, "identity_project.html", status_code=status_code, project=body,
                  assignments=granted, listed=not isinstance(assignments, ApiError),
                  banners=[r.banner for r in (assignments, users, roles)
                           if isinstance(r, ApiError)],
                  users=sorted(items(users, "users"), key=lambda u: u.get("name") or ""),
                  roles=sorted(items(roles, "roles"), key=lambda r: r.get("name") or ""),
                  error=placed(error, ["edit", "assign", *(
                      f"grant-{a['user']['id']}-{a['role']['id']}" for a in granted)]),
                  values=values or {"name": body.get("name") or "",
                                    "description": body.get("description") or "",
                                    "enabled": "on" if body.get("enabled", True) else ""})


@router.get("/projects/{project_id}")
async def project_page(request: Request, project_id: str,
                       page: Page = Depends(current)) -> Response:
    return await _project(request, page, project_id)


@router.post("/projects/{project_id}")
async def edit_project(request: Request, project_id: str,
                       page: Page = Depends(current)) -> Response:
    form = await form_of(request)
    values = {"name": field(form, "name"), "description": field(form, "description"),
              "enabled": field(form, "enabled")}
    again = partial(_project, request, page, project_id, values=values)
    if not values["name"]:
        return await refuse(again, "edit", "Give the project a name.")
    return await submit(request, lambda: page.api.request(
        "identity", "PATCH", f"/projects/{project_id}", json={"project": {
            "name": values["name"], "description": values["description"],
            "enabled": _checked(form, "enabled")}}),
        where="edit", again=again, back=f"/identity/projects/{project_id}")


@router.post("/projects/{project_id}/{state}")
async def toggle_or_delete_project(request: Request, project_id: str, state: str,
                                   page: Page = Depends(current)) -> Response:
    """``enable``, ``disable`` (a PATCH of ``enabled``) or ``delete`` from the list."""
    return await _toggle_or_delete(request, page, "project", project_id, state,
                                   again=partial(_projects, request, page))


@router.post("/projects/{project_id}/roles/{change}")
async def change_grant(request: Request, project_id: str, change: str,
                       page: Page = Depends(current)) -> Response:
    """``assign`` or ``unassign`` the form's role to the form's user on the project."""
    form = await form_of(request)
    user, role = field(form, "user"), field(form, "role")
    again = partial(_project, request, page, project_id)
    where = "assign" if change == "assign" else f"grant-{user}-{role}"
    if change not in ("assign", "unassign"):
        return await refuse(again, "page", f"No change {change!r} of roles.")
    if not user or not role:
        return await refuse(again, where, "Choose a user and a role.")
    return await submit(request, lambda: page.api.request(
        "identity", "PUT" if change == "assign" else "DELETE",
        f"/projects/{project_id}/users/{user}/roles/{role}"),
        where=where, again=again, back=f"/identity/projects/{project_id}")


# Users --------------------------------------------------------------------------------------

USER_FIELDS = ("name", "email", "description", "default_project_id", "enabled")


async def _users(request: Request, page: Page, *, status_code: int = 200,
                 error: Refusal | None = None, values: dict[str, str] | None = None
                 ) -> Response:
    users, projects = await gather(page.api.get("identity", "/users"),
                                   page.api.get("identity", "/projects"))
    if isinstance(users, ApiError):
        return _refused(request, users)
    rows = sorted(items(users, "users"), key=lambda u: (u.get("name") or "", u["id"]))
    return render(request, "identity_users.html", status_code=status_code, users=rows,
                  banners=[projects.banner] if isinstance(projects, ApiError) else [],
                  projects=sorted(items(projects, "projects"),
                                  key=lambda p: p.get("name") or ""),
                  project_names=names(projects, "projects"),
                  error=placed(error, ["create", *(f"user-{u['id']}" for u in rows)]),
                  values=values or {"enabled": "on"})


def _user_body(form: dict[str, list[str]], values: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"name": values["name"], "enabled": _checked(form, "enabled"),
                            "description": values["description"],
                            "default_project_id": values["default_project_id"] or None}
    if values["email"]:
        body["email"] = values["email"]
    password = form.get("password", [""])[0]
    if password:
        body["password"] = password
    return body


@router.get("/users")
async def users_page(request: Request, page: Page = Depends(current)) -> Response:
    return await _users(request, page)


@router.post("/users")
async def create_user(request: Request, page: Page = Depends(current)) -> Response:
    form = await form_of(request)
    values = {key: field(form, key) for key in USER_FIELDS}
    again = partial(_users, request, page, values=values)
    if not values["name"]:
        return await refuse(again, "create", "Give the user a name.")
    return await submit(request, lambda: page.api.post(
        "identity", "/users", {"user": _user_body(form, values)}),
        where="create", again=again, back="/identity/users")


async def _user(request: Request, page: Page, user_id: str, *, status_code: int = 200,
                error: Refusal | None = None, values: dict[str, str] | None = None
                ) -> Response:
    user, projects, assignments = await gather(
        page.api.get("identity", f"/users/{user_id}"),
        page.api.get("identity", "/projects"),
        page.api.get("identity", "/role_assignments",
                     params={"user.id": user_id, "include_names": "true"}))
    if isinstance(user, ApiError):
        return _refused(request, user)
    body = user["user"]
    granted = sorted((a for a in items(assignments, "role_assignments")
                      if "project" in a.get("scope", {})),
                     key=lambda a: (a["scope"]["project"].get("name", ""),
                                    a["role"].get("name", "")))
    return render(request, "identity_user.html", status_code=status_code, user=body,
                  assignments=granted, listed=not isinstance(assignments, ApiError),
                  banners=[r.banner for r in (projects, assignments)
                           if isinstance(r, ApiError)],
                  projects=sorted(items(projects, "projects"),
                                  key=lambda p: p.get("name") or ""),
                  error=placed(error, ["edit"]),
                  values=values or {
                      "name": body.get("name") or "", "email": body.get("email") or "",
                      "description": body.get("description") or "",
                      "default_project_id": body.get("default_project_id") or "",
                      "enabled": "on" if body.get("enabled", True) else ""})


@router.get("/users/{user_id}")
async def user_page(request: Request, user_id: str, page: Page = Depends(current)) -> Response:
    return await _user(request, page, user_id)


@router.post("/users/{user_id}")
async def edit_user(request: Request, user_id: str, page: Page = Depends(current)) -> Response:
    form = await form_of(request)
    values = {key: field(form, key) for key in USER_FIELDS}
    again = partial(_user, request, page, user_id, values=values)
    if not values["name"]:
        return await refuse(again, "edit", "Give the user a name.")
    return await submit(request, lambda: page.api.request(
        "identity", "PATCH", f"/users/{user_id}", json={"user": _user_body(form, values)}),
        where="edit", again=again, back=f"/identity/users/{user_id}")


@router.post("/users/{user_id}/{state}")
async def toggle_or_delete_user(request: Request, user_id: str, state: str,
                                page: Page = Depends(current)) -> Response:
    """``enable``, ``disable`` (a PATCH of ``enabled``) or ``delete`` from the list."""
    return await _toggle_or_delete(request, page, "user", user_id, state,
                                   again=partial(_users, request, page))


async def _toggle_or_delete(request: Request, page: Page, kind: str, item_id: str, state: str,
                            again: Again) -> Response:
    """A list row's ``enable``/``disable``/``delete`` of identity's ``kind`` (``project``
    or ``user``), answered on its list page."""
    where, back, path = f"{kind}-{item_id}", f"/identity/{kind}s", f"/{kind}s/{item_id}"
    if state == "delete":
        return await submit(request, lambda: page.api.request("identity", "DELETE", path),
                            where=where, again=again, back=back)
    if state not in ("enable", "disable"):
        return await refuse(again, "page", f"No action {state!r} on {kind}s.")
    return await submit(request, lambda: page.api.request(
        "identity", "PATCH", path, json={kind: {"enabled": state == "enable"}}),
        where=where, again=again, back=back)
