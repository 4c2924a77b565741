"""The admin view of the cloud's hosts: hypervisors, compute services and network agents.

Contracts:

* One page, one round of three calls (``os-hypervisors/detail``, ``os-services``,
  ``/v2.0/agents``) with the session's token; the APIs decide who may see them. When every
  one refuses (a member: 403) the page says the APIs' message and their status; when some
  do, their section says why and the rest renders.
* Each table shows a row's state (up/down) and status (enabled/disabled) in words.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from stratus.dashboard.client import ApiError, gather
from stratus.dashboard.forms import items
from stratus.dashboard.web import Page, current, render

router = APIRouter(prefix="/admin")


@router.get("/hosts")
async def hosts(request: Request, page: Page = Depends(current)) -> Response:
    hypervisors, services, agents = await gather(
        page.api.get("compute", "/os-hypervisors/detail"),
        page.api.get("compute", "/os-services"),
        page.api.get("network", "/v2.0/agents"))
    results = (hypervisors, services, agents)
    if all(isinstance(r, ApiError) for r in results):
        first = min(results, key=lambda r: r.status)  # a 403 before a 5xx
        return render(request, "message.html", status_code=first.status,
                      message=first.banner)

    def refused(result: object) -> str | None:
        return result.banner if isinstance(result, ApiError) else None

    return render(
        request, "admin_hosts.html",
        hypervisors=sorted(items(hypervisors, "hypervisors"),
                           key=lambda h: h.get("hypervisor_hostname") or ""),
        services=sorted(items(services, "services"),
                        key=lambda s: (s.get("binary") or "", s.get("host") or "")),
        agents=sorted(items(agents, "agents"),
                      key=lambda a: (a.get("agent_type") or "", a.get("host") or "")),
        refusals={"hypervisors": refused(hypervisors), "services": refused(services),
                  "agents": refused(agents)})
