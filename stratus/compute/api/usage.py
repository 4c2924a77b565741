"""``/os-simple-tenant-usage``: every project's usage (admins) and one project's, over
``start``..``end``; ``detailed=1`` lists the servers in the list. From 2.40 the servers are
paged (``limit``, ``marker``) with ``tenant_usages_links`` / ``tenant_usage_links``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request

from stratus.compute import usage
from stratus.compute.api.deps import CallerDep, Service, URLs, Version
from stratus.compute.usage import Period, ProjectUsage, ServerUsage
from stratus.core.db import utcnow
from stratus.core.exceptions import BadRequest
from stratus.core.web import listing
from stratus.core.web.listing import ListRequest, ListSpec
from stratus.core.web.microversions import APIVersion

router = APIRouter(prefix="/v2.1/os-simple-tenant-usage")

#: Nova's ``max_limit``: the largest page, and the page without a ``limit`` (from 2.40).
MAX_LIMIT = 1000
LIST = ListSpec("tenant_usages", default_limit=MAX_LIMIT, max_limit=MAX_LIMIT)
SHOW = ListSpec("tenant_usage", default_limit=MAX_LIMIT, max_limit=MAX_LIMIT)


def _time(value: dt.datetime | None) -> str | None:
    """Nova's usage times: UTC without a zone, with microseconds."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")


def _server(entry: ServerUsage, now: dt.datetime) -> dict[str, Any]:
    instance = entry.instance
    launched = instance.launched_at
    ended = instance.terminated_at
    until = ended if ended is not None else now
    uptime = 0
    if launched is not None:
        aware = (launched if launched.tzinfo else launched.replace(tzinfo=dt.UTC))
        until_aware = until if until.tzinfo else until.replace(tzinfo=dt.UTC)
        uptime = int((until_aware - aware).total_seconds())
    return {"instance_id": instance.uuid, "name": instance.display_name,
            "hours": entry.hours, "memory_mb": instance.memory_mb,
            "local_gb": entry.local_gb, "vcpus": instance.vcpus,
            "tenant_id": instance.project_id,
            "flavor": (instance.flavor or {}).get("name", ""),
            "started_at": _time(launched), "ended_at": _time(ended),
            "state": "terminated" if ended is not None else instance.vm_state,
            "uptime": uptime}


def _project(project: ProjectUsage, period: Period, *, detailed: bool,
             now: dt.datetime) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenant_id": project.project_id,
        "total_local_gb_usage": project.local_gb_hours,
        "total_vcpus_usage": project.vcpu_hours,
        "total_memory_mb_usage": project.memory_mb_hours,
        "total_hours": project.hours,
        "start": _time(period.start), "stop": _time(period.stop)}
    if detailed:
        body["server_usages"] = [_server(s, now) for s in project.servers]
    return body


#: The query parameters each route knows; from 2.75 any other is a 400 (Nova's schemas).
_KNOWN = {"tenant_usages": {"start", "end", "detailed", "limit", "marker"},
          "tenant_usage": {"start", "end", "limit", "marker"}}
#: ``detailed`` values that ask for the servers: Nova reads "1" (Horizon and Tempest send
#: it); openstacksdk sends "True", and ``openstack usage list`` counts servers from them.
_YES = {"1", "true", "yes", "on"}


def _parse(request: Request, spec: ListSpec, version: APIVersion) -> tuple[ListRequest, Period]:
    if version.at_least("2.75"):
        unknown = sorted(set(request.query_params) - _KNOWN[spec.collection])
        if unknown:
            raise BadRequest(f"Invalid input for query parameters: Additional properties are "
                             f"not allowed ({unknown[0]!r} was unexpected)")
    paged = version.at_least("2.40")
    req = listing.NOVA.parse(request.query_params, spec) if paged else ListRequest(
        filters={k: [v] for k, v in request.query_params.items()})
    return req, Period.of(req.filter("start"), req.filter("end"))


@router.get("")
async def list_usage(request: Request, svc: Service, caller: CallerDep, urls: URLs,
                     version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-simple-tenant-usage:list", {})
    req, period = _parse(request, LIST, version)
    found = await usage.usage(svc.session, period, limit=req.limit, marker=req.marker)
    now = utcnow()
    detailed = (req.filter("detailed") or "").lower() in _YES
    body: dict[str, Any] = {"tenant_usages": [
        _project(p, period, detailed=detailed, now=now) for p in found.projects]}
    return body | listing.NOVA.links(req, LIST, urls.url("os-simple-tenant-usage"),
                                     next_marker=found.next_marker)


@router.get("/{project_id}")
async def show_usage(project_id: str, request: Request, svc: Service, caller: CallerDep,
                     urls: URLs, version: Version) -> dict[str, Any]:
    caller.authorize("os_compute_api:os-simple-tenant-usage:show", {"project_id": project_id})
    req, period = _parse(request, SHOW, version)
    found = await usage.usage(svc.session, period, project_id=project_id, limit=req.limit,
                              marker=req.marker)
    now = utcnow()
    shown = (_project(found.projects[0], period, detailed=True, now=now)
             if found.projects else {})
    return {"tenant_usage": shown} | listing.NOVA.links(
        req, SHOW, urls.url(f"os-simple-tenant-usage/{project_id}"),
        next_marker=found.next_marker)
