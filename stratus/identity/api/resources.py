"""``/v3/domains`` and ``/v3/projects``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from stratus.core.exceptions import Forbidden
from stratus.identity.api import views
from stratus.identity.api.common import bool_filter, default_domain, split_known, text
from stratus.identity.api.deps import Authorize, BaseURL, Context, Service
from stratus.identity.api.schemas import (
    DomainCreateBody,
    DomainUpdateBody,
    ProjectCreateBody,
    ProjectUpdateBody,
)

router = APIRouter(prefix="/v3")

Q = Annotated[str | None, Query()]


@router.get("/domains")
async def list_domains(svc: Service, authorize: Authorize, base: BaseURL,
                       name: Q = None, enabled: Q = None) -> dict[str, Any]:
    authorize("identity:list_domains")
    domains = await svc.resources.list_domains(name=name, enabled=bool_filter("enabled", enabled))
    return views.collection("domains", [views.domain(d, base) for d in domains], base, "domains")


@router.post("/domains", status_code=201)
async def create_domain(body: DomainCreateBody, svc: Service, authorize: Authorize,
                        base: BaseURL) -> dict[str, Any]:
    authorize("identity:create_domain")
    d = body.domain
    _, extra = split_known(d.changes(), ("name", "description", "enabled", "id", "tags",
                                         "options"))
    domain = await svc.resources.create_domain(name=d.name, description=text(d.description),
                                               enabled=d.enabled, domain_id=d.id, extra=extra)
    return {"domain": views.domain(domain, base)}


@router.get("/domains/{domain_id}")
async def get_domain(domain_id: str, svc: Service, authorize: Authorize,
                     base: BaseURL) -> dict[str, Any]:
    authorize("identity:get_domain", {"domain": {"id": domain_id}})
    return {"domain": views.domain(await svc.resources.get_domain(domain_id), base)}


@router.patch("/domains/{domain_id}")
async def update_domain(domain_id: str, body: DomainUpdateBody, svc: Service,
                        authorize: Authorize, base: BaseURL) -> dict[str, Any]:
    authorize("identity:update_domain", {"domain": {"id": domain_id}})
    domain = await svc.resources.update_domain(domain_id, body.domain.changes())
    return {"domain": views.domain(domain, base)}


@router.delete("/domains/{domain_id}", status_code=204)
async def delete_domain(domain_id: str, svc: Service, authorize: Authorize) -> Response:
    authorize("identity:delete_domain", {"domain": {"id": domain_id}})
    await svc.resources.delete_domain(domain_id)
    return Response(status_code=204)


@router.get("/projects")
async def list_projects(svc: Service, authorize: Authorize, base: BaseURL, name: Q = None,
                        domain_id: Q = None, parent_id: Q = None,
                        enabled: Q = None) -> dict[str, Any]:
    authorize("identity:list_projects")
    projects = await svc.resources.list_projects(
        name=name, domain_id=domain_id, parent_id=parent_id,
        enabled=bool_filter("enabled", enabled))
    return views.collection("projects", [views.project(p, base) for p in projects],
                            base, "projects")


@router.post("/projects", status_code=201)
async def create_project(body: ProjectCreateBody, svc: Service, authorize: Authorize,
                         context: Context, base: BaseURL) -> dict[str, Any]:
    p = body.project
    if p.is_domain:
        raise Forbidden("Projects acting as domains are not supported; create a domain.")
    domain_id = default_domain(context, p.domain_id)
    authorize("identity:create_project", {"project": {"domain_id": domain_id}})
    _, extra = split_known(p.changes(), ("name", "domain_id", "parent_id", "description",
                                         "enabled", "is_domain", "tags", "options"))
    parent_id = p.parent_id if p.parent_id and p.parent_id != domain_id else None
    project = await svc.resources.create_project(
        name=p.name, domain_id=domain_id, parent_id=parent_id, description=text(p.description),
        enabled=p.enabled, tags=p.tags, extra=extra)
    return {"project": views.project(project, base)}


@router.get("/projects/{project_id}")
async def get_project(project_id: str, svc: Service, authorize: Authorize,
                      base: BaseURL) -> dict[str, Any]:
    authorize("identity:get_project", {"project": {"id": project_id}})
    return {"project": views.project(await svc.resources.get_project(project_id), base)}


@router.patch("/projects/{project_id}")
async def update_project(project_id: str, body: ProjectUpdateBody, svc: Service,
                         authorize: Authorize, base: BaseURL) -> dict[str, Any]:
    authorize("identity:update_project", {"project": {"id": project_id}})
    changes = body.project.changes()
    if "description" in changes:
        changes["description"] = text(changes["description"])
    project = await svc.resources.update_project(project_id, changes)
    return {"project": views.project(project, base)}


@router.delete("/projects/{project_id}", status_code=204)
async def delete_project(project_id: str, svc: Service, authorize: Authorize) -> Response:
    authorize("identity:delete_project", {"project": {"id": project_id}})
    await svc.resources.delete_project(project_id)
    return Response(status_code=204)
