"""Quotas and availability zones: the Network API routes that are not a standard
collection (those are in ``core``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from stratus.core.policy import Caller
from stratus.core.web import openapi
from stratus.network.api import listing
from stratus.network.api.bodies import json_body
from stratus.network.api.deps import CallerDep, Service, WriteService
from stratus.network.api.schemas import quota_changes

router = APIRouter(prefix="/v2.0")


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


#: ``{"quota": {resource: limit}}``; a limit may be a number or its digits.
_QUOTA_BODY = openapi.request_body(openapi.wrapped("quota", {
    "type": "object", "additionalProperties": {"type": ["integer", "string"]}}))


@router.put("/quotas/{project_id}", openapi_extra=_QUOTA_BODY)
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


# Availability zones ---------------------------------------------------------------------


@router.get("/availability_zones")
async def list_zones(request: Request, svc: Service, caller: CallerDep) -> JSONResponse:
    caller.authorize("get_availability_zone")
    lst = listing.of(request, "availability_zones")
    page = await svc.agents.availability_zones(caller, lst.query)
    return JSONResponse(lst.body([{"name": z.name, "resource": z.resource, "state": z.state}
                                  for z in page.rows], page, id_of=lambda z: z.id))
