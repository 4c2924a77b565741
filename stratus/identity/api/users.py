"""``/v3/users`` and ``/v3/groups``, with group membership and the user's own password."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from stratus.core.web import params
from stratus.identity.api import schemas, views
from stratus.identity.api.crud import Resource, add_routes
from stratus.identity.api.deps import BaseURL, CallerDep, Reader, Service

router = APIRouter(prefix="/v3")

Q = Annotated[str | None, Query()]

for _resource in (
    Resource("user", "users", "users", views.user, schemas.UserUpdateBody,
             schemas.UserCreateBody, filters=("name", "domain_id"), bool_filters=("enabled",),
             scoped=True),
    Resource("group", "groups", "users", views.group, schemas.GroupUpdateBody,
             schemas.GroupCreateBody, filters=("name", "domain_id"), scoped=True),
):
    add_routes(router, _resource)


@router.post("/users/{user_id}/password", status_code=204)
async def change_password(user_id: str, body: schemas.PasswordChangeBody, svc: Service,
                          caller: CallerDep) -> Response:
    caller.authorize("identity:change_password", {"user_id": user_id})
    await svc.users.change_password(user_id, body.user.original_password, body.user.password)
    return Response(status_code=204)


@router.get("/users/{user_id}/projects")
async def list_user_projects(user_id: str, svc: Reader, caller: CallerDep,
                             base: BaseURL, enabled: Q = None, name: Q = None) -> dict[str, Any]:
    caller.authorize("identity:list_user_projects", {"user_id": user_id})
    await svc.users.get_user(user_id)
    ids = await svc.assignments.project_ids_for_user(user_id)
    projects = await svc.resources.list_projects(
        ids=ids, name=name, enabled=params.KEYSTONE.optional_boolean("enabled", enabled))
    return views.collection_of("projects", views.project, projects, base,
                               f"users/{user_id}/projects")


@router.get("/users/{user_id}/groups")
async def list_user_groups(user_id: str, svc: Reader, caller: CallerDep,
                           base: BaseURL) -> dict[str, Any]:
    caller.authorize("identity:list_groups_for_user", {"user_id": user_id})
    groups = await svc.users.list_user_groups(user_id)
    return views.collection_of("groups", views.group, groups, base, f"users/{user_id}/groups")


@router.get("/groups/{group_id}/users")
async def list_group_users(group_id: str, svc: Reader, caller: CallerDep,
                           base: BaseURL) -> dict[str, Any]:
    caller.authorize("identity:list_users_in_group", {"group": {"id": group_id}})
    users = await svc.users.list_group_members(group_id)
    return views.collection_of("users", views.user, users, base, f"groups/{group_id}/users")


def _membership(rule: str, operation: str) -> Callable[..., Awaitable[Response]]:
    """A group-membership route: authorize ``rule`` on the group, then ``svc.users.<op>``."""
    async def handler(group_id: str, user_id: str, svc: Service,
                      caller: CallerDep) -> Response:
        caller.authorize(f"identity:{rule}", {"group": {"id": group_id}})
        await getattr(svc.users, operation)(group_id, user_id)
        return Response(status_code=204)
    return handler


_MEMBER = "/groups/{group_id}/users/{user_id}"
router.add_api_route(_MEMBER, _membership("add_user_to_group", "add_member"), methods=["PUT"],
                     status_code=204)
# GET and HEAD are two routes, so each has an operation id of its own in the OpenAPI document.
for _method in ("GET", "HEAD"):
    router.add_api_route(_MEMBER, _membership("check_user_in_group", "check_member"),
                         methods=[_method], status_code=204)
router.add_api_route(_MEMBER, _membership("remove_user_from_group", "remove_member"),
                     methods=["DELETE"], status_code=204)
