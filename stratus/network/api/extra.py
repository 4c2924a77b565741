"""Security groups and rules, quotas, agents and availability zones."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from stratus.network.api import listing, views
from stratus.network.api.deps import (
    CallerDep,
    Service,
    WriteService,
    collection_url,
    json_body,
    single_or_bulk,
    update_body,
)
from stratus.network.api.schemas import (
    AgentUpdateBody,
    RuleBody,
    SecurityGroupBody,
    SecurityGroupUpdateBody,
    quota_changes,
)
from stratus.network.caller import Caller
from stratus.network.service import NetworkService

router = APIRouter(prefix="/v2.0")

SG_COLUMNS = {"id": "id", "name": "name", "project_id": "project_id",
              "tenant_id": "project_id"}
RULE_COLUMNS = {"id": "id", "security_group_id": "security_group_id",
                "direction": "direction", "project_id": "project_id",
                "tenant_id": "project_id"}


async def _group_views(svc: NetworkService, groups: list[Any]) -> list[dict[str, Any]]:
    defaults = await svc.security_groups.default_group_ids(g.id for g in groups)
    return [views.security_group(g, g.id in defaults) for g in groups]


async def _rule_views(svc: NetworkService, rules: list[Any]) -> list[dict[str, Any]]:
    defaults = await svc.security_groups.default_group_ids({r.security_group_id for r in rules})
    return [views.security_group_rule(r, r.security_group_id in defaults) for r in rules]


# Security groups --------------------------------------------------------------------------


@router.get("/security-groups")
async def list_groups(request: Request, svc: WriteService, caller: CallerDep) -> JSONResponse:
    query = listing.parse(request.query_params)
    groups = await svc.security_groups.list_security_groups(caller, query.pushdown(SG_COLUMNS))
    return JSONResponse(listing.apply(await _group_views(svc, groups), query,
                                      collection="security_groups",
                                      url=collection_url(request)))


@router.get("/security-groups/{group_id}")
async def show_group(group_id: str, request: Request, svc: WriteService,
                     caller: CallerDep) -> JSONResponse:
    if caller.project_id:
        await svc.security_groups.default_security_group(caller.project_id)
    group = await svc.security_groups.get_security_group(caller, group_id)
    fields = listing.parse(request.query_params).fields
    return JSONResponse({"security_group": listing.cut(
        (await _group_views(svc, [group]))[0], fields)})


@router.post("/security-groups")
async def create_groups(request: Request, svc: WriteService, caller: CallerDep) -> JSONResponse:
    items, bulk = await single_or_bulk(request, "security_group", "security_groups",
                                       SecurityGroupBody)
    created = [await svc.security_groups.create_security_group(caller, item.command())
               for item in items]
    body = await _group_views(svc, created)
    return JSONResponse({"security_groups": body} if bulk else {"security_group": body[0]},
                        status_code=201)


@router.put("/security-groups/{group_id}")
async def update_group(group_id: str, request: Request, svc: WriteService,
                       caller: CallerDep) -> JSONResponse:
    body = await update_body(request, "security_group", SecurityGroupUpdateBody)
    group = await svc.security_groups.update_security_group(caller, group_id,
                                                            body.command())
    return JSONResponse({"security_group": (await _group_views(svc, [group]))[0]})


@router.delete("/security-groups/{group_id}", status_code=204)
async def delete_group(group_id: str, svc: WriteService, caller: CallerDep) -> Response:
    await svc.security_groups.delete_security_group(caller, group_id)
    return Response(status_code=204)


# Rules ------------------------------------------------------------------------------------


@router.get("/security-group-rules")
async def list_rules(request: Request, svc: WriteService, caller: CallerDep) -> JSONResponse:
    query = listing.parse(request.query_params)
    rules = await svc.security_groups.list_security_group_rules(
        caller, query.pushdown(RULE_COLUMNS))
    return JSONResponse(listing.apply(await _rule_views(svc, rules), query,
                                      collection="security_group_rules",
                                      url=collection_url(request)))


@router.get("/security-group-rules/{rule_id}")
async def show_rule(rule_id: str, request: Request, svc: WriteService,
                    caller: CallerDep) -> JSONResponse:
    rule = await svc.security_groups.get_security_group_rule(caller, rule_id)
    fields = listing.parse(request.query_params).fields
    return JSONResponse({"security_group_rule": listing.cut(
        (await _rule_views(svc, [rule]))[0], fields)})


@router.post("/security-group-rules")
async def create_rules(request: Request, svc: WriteService, caller: CallerDep) -> JSONResponse:
    items, bulk = await single_or_bulk(request, "security_group_rule",
                                       "security_group_rules", RuleBody)
    created = [await svc.security_groups.create_security_group_rule(caller, item.command())
               for item in items]
    body = await _rule_views(svc, created)
    return JSONResponse({"security_group_rules": body} if bulk
                        else {"security_group_rule": body[0]}, status_code=201)


@router.delete("/security-group-rules/{rule_id}", status_code=204)
async def delete_rule(rule_id: str, svc: WriteService, caller: CallerDep) -> Response:
    await svc.security_groups.delete_security_group_rule(caller, rule_id)
    return Response(status_code=204)


# Quotas -----------------------------------------------------------------------------------


def _quota_target(caller: Caller, project_id: str) -> dict[str, str]:
    return {"project_id": project_id, "tenant_id": project_id}


@router.get("/quotas")
async def list_quotas(svc: Service, caller: CallerDep) -> JSONResponse:
    caller.authorize("get_quotas")
    result = []
    for project_id in await svc.quotas.projects():
        limits = await svc.quotas.limits(project_id)
        result.append({**limits, "project_id": project_id, "tenant_id": project_id})
    return JSONResponse({"quotas": result})


@router.get("/quotas/{project_id}/default")
async def default_quotas(project_id: str, svc: Service, caller: CallerDep) -> JSONResponse:
    caller.authorize("get_quota", _quota_target(caller, project_id))
    return JSONResponse({"quota": svc.quotas.defaults()})


@router.get("/quotas/{project_id}/details")
async def quota_details(project_id: str, svc: Service, caller: CallerDep) -> JSONResponse:
    caller.authorize("get_quota", _quota_target(caller, project_id))
    limits = await svc.quotas.limits(project_id)
    used = await svc.quotas.usage(project_id)
    return JSONResponse({"quota": {r: {"limit": limits[r], "used": used[r], "reserved": 0}
                                   for r in limits}})


@router.get("/quotas/{project_id}")
async def show_quota(project_id: str, svc: Service, caller: CallerDep) -> JSONResponse:
    caller.authorize("get_quota", _quota_target(caller, project_id))
    return JSONResponse({"quota": await svc.quotas.limits(project_id)})


@router.put("/quotas/{project_id}")
async def update_quota(project_id: str, request: Request, svc: WriteService,
                       caller: CallerDep) -> JSONResponse:
    caller.authorize("update_quota", _quota_target(caller, project_id))
    changes = quota_changes(await json_body(request))
    return JSONResponse({"quota": await svc.quotas.set(project_id, changes)})


@router.delete("/quotas/{project_id}", status_code=204)
async def delete_quota(project_id: str, svc: WriteService, caller: CallerDep) -> Response:
    caller.authorize("delete_quota", _quota_target(caller, project_id))
    await svc.quotas.reset(project_id)
    return Response(status_code=204)


# Agents and zones -------------------------------------------------------------------------

@router.get("/agents")
async def list_agents(request: Request, svc: Service, caller: CallerDep) -> JSONResponse:
    query = listing.parse(request.query_params)
    agents = await svc.agents.list_agents(caller)
    items = [views.agent(a, svc.agents.agent_alive(a)) for a in agents]
    return JSONResponse(listing.apply(items, query, collection="agents",
                                      url=collection_url(request)))


@router.get("/agents/{agent_id}")
async def show_agent(agent_id: str, svc: Service, caller: CallerDep) -> JSONResponse:
    agent = await svc.agents.get_agent(caller, agent_id)
    return JSONResponse({"agent": views.agent(agent, svc.agents.agent_alive(agent))})


@router.put("/agents/{agent_id}")
async def update_agent(agent_id: str, request: Request, svc: WriteService,
                       caller: CallerDep) -> JSONResponse:
    body = await update_body(request, "agent", AgentUpdateBody)
    agent = await svc.agents.update_agent(caller, agent_id, body.command())
    return JSONResponse({"agent": views.agent(agent, svc.agents.agent_alive(agent))})


@router.delete("/agents/{agent_id}", status_code=204)
async def delete_agent(agent_id: str, svc: WriteService, caller: CallerDep) -> Response:
    await svc.agents.delete_agent(caller, agent_id)
    return Response(status_code=204)


@router.get("/availability_zones")
async def list_zones(request: Request, svc: Service, caller: CallerDep) -> JSONResponse:
    caller.authorize("get_availability_zone")
    query = listing.parse(request.query_params)
    items = [{"name": zone, "resource": resource,
              "state": "available" if alive else "unavailable"}
             for zone, resource, alive in await svc.agents.availability_zones()]
    for item in items:
        item["id"] = f"{item['name']}/{item['resource']}"
    body = listing.apply(items, query, collection="availability_zones",
                         url=collection_url(request))
    for item in body["availability_zones"]:
        item.pop("id", None)
    return JSONResponse(body)
