"""``/v3/roles``, role grants on projects, domains and the system, and ``/v3/role_assignments``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from stratus.core.exceptions import NotFound, ValidationError
from stratus.core.web import params
from stratus.identity.api import schemas, views
from stratus.identity.api.crud import Resource, add_routes
from stratus.identity.api.deps import BaseURL, CallerDep, Reader, Service
from stratus.identity.assignments import SYSTEM_TARGET
from stratus.identity.role_assignments import AssignmentFilter, RoleAssignment
from stratus.identity.service import IdentityService

router = APIRouter(prefix="/v3")

Q = Annotated[str | None, Query()]

add_routes(router, Resource("role", "roles", "assignments", views.role, schemas.RoleUpdateBody,
                            schemas.RoleCreateBody, filters=("name", "domain_id")))


# Grants: the same four operations on every (target, actor) pair. -------------------------

def _add_grant_routes(prefix: str, target_type: str, actor_type: str, *,
                      inherited: bool = False, suffix: str = "") -> None:
    collection = f"{prefix}/{actor_type}s/{{actor_id}}/roles"
    one = f"{collection}/{{role_id}}{suffix}"

    def target_of(target_id: str | None) -> str:
        if target_type == "system" or target_id is None:
            return SYSTEM_TARGET
        return target_id

    def change(rule: str, operation: str) -> Callable[..., Awaitable[Response]]:
        async def handler(svc: Service, caller: CallerDep, actor_id: str, role_id: str,
                          target_id: str | None = None) -> Response:
            caller.authorize(f"identity:{rule}")
            await getattr(svc.assignments, operation)(
                actor_type, actor_id, target_type, target_of(target_id), role_id,
                inherited=inherited)
            return Response(status_code=204)
        return handler

    async def listing(svc: Reader, caller: CallerDep, base: BaseURL, actor_id: str,
                      target_id: str | None = None) -> dict[str, Any]:
        caller.authorize("identity:list_grants")
        roles = await svc.assignments.list_grants(actor_type, actor_id, target_type,
                                                  target_of(target_id), inherited=inherited)
        path = collection.replace("{target_id}", target_of(target_id)).replace(
            "{actor_id}", actor_id).lstrip("/")
        return views.collection_of("roles", views.role, roles, base, path)

    router.add_api_route(one, change("create_grant", "grant"), methods=["PUT"],
                         status_code=204)
    for method in ("GET", "HEAD"):  # two routes: an operation id each in the OpenAPI document
        router.add_api_route(one, change("check_grant", "check_grant"), methods=[method],
                             status_code=204)
    router.add_api_route(one, change("revoke_grant", "revoke_grant"), methods=["DELETE"],
                         status_code=204)
    if not suffix:
        router.add_api_route(collection, listing, methods=["GET"])


for _actor in ("user", "group"):
    _add_grant_routes("/projects/{target_id}", "project", _actor)
    _add_grant_routes("/domains/{target_id}", "domain", _actor)
    _add_grant_routes("/system", "system", _actor)
    _add_grant_routes("/OS-INHERIT/domains/{target_id}", "domain", _actor, inherited=True,
                      suffix="/inherited_to_projects")
    _add_grant_routes("/OS-INHERIT/projects/{target_id}", "project", _actor, inherited=True,
                      suffix="/inherited_to_projects")


# GET /v3/role_assignments -----------------------------------------------------------------

async def _raw_filters(
    user_id: Annotated[str | None, Query(alias="user.id")] = None,
    group_id: Annotated[str | None, Query(alias="group.id")] = None,
    role_id: Annotated[str | None, Query(alias="role.id")] = None,
    project_id: Annotated[str | None, Query(alias="scope.project.id")] = None,
    domain_id: Annotated[str | None, Query(alias="scope.domain.id")] = None,
    system: Annotated[str | None, Query(alias="scope.system")] = None,
    inherited_to: Annotated[str | None, Query(alias="scope.OS-INHERIT:inherited_to")] = None,
    effective: Q = None, include_names: Q = None, include_subtree: Q = None,
) -> dict[str, str | None]:
    """The query as given; checked only after the caller is authorized."""
    return dict(locals())


def _assignment_filter(raw: dict[str, str | None]) -> AssignmentFilter:
    effective = params.KEYSTONE.flag("effective", raw["effective"])
    if effective and raw["group_id"]:
        raise ValidationError("Combining effective and group filter will always result in an "
                              "empty list.")
    if raw["inherited_to"] is not None and raw["inherited_to"] != "projects":
        raise ValidationError("scope.OS-INHERIT:inherited_to only accepts 'projects'.")
    # Keystone's (and openstackclient's) value is "all"; a boolean is accepted too.
    system = raw["system"] == "all" or params.KEYSTONE.flag("scope.system", raw["system"])
    return AssignmentFilter(
        user_id=raw["user_id"], group_id=raw["group_id"], role_id=raw["role_id"],
        project_id=raw["project_id"], domain_id=raw["domain_id"], system=system,
        inherited=True if raw["inherited_to"] else None, effective=effective,
        include_subtree=params.KEYSTONE.flag("include_subtree", raw["include_subtree"]))


@router.get("/role_assignments")
async def list_role_assignments(
        svc: Reader, caller: CallerDep, base: BaseURL,
        raw: Annotated[dict[str, str | None], Depends(_raw_filters)]) -> dict[str, Any]:
    caller.authorize("identity:list_role_assignments", {"user": {"id": raw["user_id"]}})
    found = await svc.role_assignments.search(_assignment_filter(raw))
    names = _Names(svc) if params.KEYSTONE.flag("include_names", raw["include_names"]) else None
    entries = [await _entry(a, base, names) for a in found]
    return {"role_assignments": [e for e in entries if e is not None],
            "links": {"self": f"{base}/v3/role_assignments", "previous": None, "next": None}}


class _Names:
    """Looks up the names ``include_names`` adds, once per id."""

    def __init__(self, svc: IdentityService) -> None:
        self.svc = svc
        self.cache: dict[tuple[str, str], dict[str, Any]] = {}

    async def _domain(self, domain_id: str) -> dict[str, Any]:
        key = ("domain", domain_id)
        if key not in self.cache:
            domain = await self.svc.resources.get_domain(domain_id)
            self.cache[key] = {"id": domain.id, "name": domain.name}
        return self.cache[key]

    async def ref(self, kind: str, id_: str) -> dict[str, Any]:
        key = (kind, id_)
        if key in self.cache:
            return self.cache[key]
        if kind == "domain":
            return await self._domain(id_)
        if kind == "role":
            role = await self.svc.assignments.get_role(id_)
            ref: dict[str, Any] = {"id": role.id, "name": role.name}
            if role.domain_id:
                ref["domain"] = await self._domain(role.domain_id)
        else:
            getter = {"user": self.svc.users.get_user, "group": self.svc.users.get_group,
                      "project": self.svc.resources.get_project}[kind]
            row: Any = await getter(id_)
            ref = {"id": row.id, "name": row.name, "domain": await self._domain(row.domain_id)}
        self.cache[key] = ref
        return ref


async def _entry(a: RoleAssignment, base: str, names: _Names | None) -> dict[str, Any] | None:
    actor_type = (a.via_group_id and "group") or a.actor_type
    actor_id = a.via_group_id or a.actor_id
    granted = a.granted_role_id or a.role_id
    if a.scope_type == "system":
        link = f"{base}/v3/system/{actor_type}s/{actor_id}/roles/{granted}"
    elif a.inherited:
        link = (f"{base}/v3/OS-INHERIT/{a.scope_type}s/{a.scope_id}/{actor_type}s/{actor_id}"
                f"/roles/{granted}/inherited_to_projects")
    else:
        link = (f"{base}/v3/{a.scope_type}s/{a.scope_id}/{actor_type}s/{actor_id}"
                f"/roles/{granted}")
    links = {"assignment": link}
    if a.prior_role_id:
        links["prior_role"] = f"{base}/v3/roles/{a.prior_role_id}"
    if a.via_group_id:
        links["membership"] = f"{base}/v3/groups/{a.via_group_id}/users/{a.actor_id}"
    try:
        role = await names.ref("role", a.role_id) if names else {"id": a.role_id}
        actor = await names.ref(a.actor_type, a.actor_id) if names else {"id": a.actor_id}
        if a.scope_type == "system":
            scope: dict[str, Any] = {"system": {"all": True}}
        else:
            target = (await names.ref(a.scope_type, a.scope_id) if names
                      else {"id": a.scope_id})
            scope = {a.scope_type: target}
    except NotFound:
        return None  # deleted while we listed
    if a.inherited:
        scope["OS-INHERIT:inherited_to"] = "projects"
    return {"role": role, a.actor_type: actor, "scope": scope, "links": links}
