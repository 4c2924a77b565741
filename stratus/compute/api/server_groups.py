"""``/os-server-groups``: create, list, show and delete server groups.

Before 2.64 a group has ``policies`` (a list of exactly one) and an empty ``metadata``;
from 2.64 it has ``policy`` and ``rules``. ``project_id``/``user_id`` show from 2.13, the
soft policies need 2.15.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from stratus.compute.api.deps import Authorize, Context, Service, Version
from stratus.compute.server_groups import POLICIES, ServerGroup
from stratus.core.exceptions import BadRequest
from stratus.core.web.microversions import APIVersion

router = APIRouter(prefix="/v2.1/os-server-groups")

Q = Annotated[str | None, Query()]


def _view(group: ServerGroup, members: list[str], version: APIVersion) -> dict[str, Any]:
    body: dict[str, Any] = {"id": group.uuid, "name": group.name}
    if version.at_least("2.64"):
        body["policy"] = group.policy
        body["rules"] = dict(group.rules or {})
    else:
        body["policies"] = [group.policy]
        body["metadata"] = {}
    body["members"] = members
    if version.at_least("2.13"):
        body["project_id"] = group.project_id
        body["user_id"] = group.user_id
    return body


def _parse_create(body: Any, version: APIVersion) -> tuple[str, str, dict[str, Any]]:
    """(name, policy, rules) of a create body, checked as the microversion wants it."""
    if not isinstance(body, dict) or set(body) != {"server_group"} \
            or not isinstance(body["server_group"], dict):
        raise BadRequest("Malformed request body: it must be {\"server_group\": {...}}.")
    g = body["server_group"]
    allowed = {"name", "policy", "rules"} if version.at_least("2.64") else {"name", "policies"}
    if extra := set(g) - allowed:
        raise BadRequest(f"Invalid input: additional properties are not allowed "
                         f"({', '.join(sorted(extra))}).")
    name = g.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 255:
        raise BadRequest("Invalid input for field 'name': 1 to 255 characters, not only "
                         "spaces.")
    if version.at_least("2.64"):
        policy = g.get("policy")
        rules = g.get("rules", {})
        if not isinstance(rules, dict):
            raise BadRequest("Invalid input for field 'rules': it must be an object.")
    else:
        policies = g.get("policies")
        if not isinstance(policies, list) or len(policies) != 1:
            raise BadRequest("Invalid input for field 'policies': a list of exactly one "
                             "policy.")
        policy, rules = policies[0], {}
    known = POLICIES if version.at_least("2.15") else POLICIES[:2]
    if policy not in known:
        raise BadRequest(f"Invalid input for field 'policy': {policy!r} is not one of "
                         f"{', '.join(known)}.")
    return name, str(policy), rules


@router.post("")
async def create(svc: Service, context: Context, authorize: Authorize, version: Version,
                 body: Any = Body(None)) -> dict[str, Any]:
    authorize("os_compute_api:os-server-groups:create", {"project_id": context.project_id,
                                                         "user_id": context.user_id})
    name, policy, rules = _parse_create(body, version)
    group = await svc.server_groups.create(context, name, policy, rules)
    return {"server_group": _view(group, [], version)}


def _non_negative(value: str | None, field: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise BadRequest(f"Invalid input for query parameter '{field}': a non-negative "
                         "integer.")
    return int(value)


@router.get("")
async def index(svc: Service, context: Context, authorize: Authorize, version: Version,
                all_projects: Q = None, limit: Q = None, offset: Q = None) -> dict[str, Any]:
    authorize("os_compute_api:os-server-groups:index", {"project_id": context.project_id})
    everyone = (all_projects is not None
                and all_projects.lower() not in ("0", "false", "off", "no")
                and authorize.allows("os_compute_api:os-server-groups:index:all_projects",
                                     {"project_id": context.project_id}))
    groups = await svc.server_groups.find(
        project_id=None if everyone else context.project_id,
        limit=_non_negative(limit, "limit"), offset=_non_negative(offset, "offset") or 0)
    members = await svc.server_groups.members([g.uuid for g in groups])
    return {"server_groups": [_view(g, members[g.uuid], version) for g in groups]}


@router.get("/{group_id}")
async def show(group_id: str, svc: Service, context: Context, authorize: Authorize,
               version: Version) -> dict[str, Any]:
    group = await svc.server_groups.get(
        group_id, project_id=None if context.is_admin else context.project_id)
    authorize("os_compute_api:os-server-groups:show", {"project_id": group.project_id,
                                                       "user_id": group.user_id})
    members = await svc.server_groups.members([group.uuid])
    return {"server_group": _view(group, members[group.uuid], version)}


@router.delete("/{group_id}", status_code=204)
async def delete(group_id: str, svc: Service, context: Context,
                 authorize: Authorize) -> Response:
    group = await svc.server_groups.get(
        group_id, project_id=None if context.is_admin else context.project_id)
    authorize("os_compute_api:os-server-groups:delete", {"project_id": group.project_id,
                                                         "user_id": group.user_id})
    await svc.server_groups.delete(group)
    return Response(status_code=204)
