"""``/v3/domains`` and ``/v3/projects``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stratus.core.exceptions import Forbidden
from stratus.identity.api import views
from stratus.identity.api.common import default_domain, text
from stratus.identity.api.crud import Resource, add_routes
from stratus.identity.api.deps import Authorize, BaseURL, Context, Service
from stratus.identity.api.schemas import (
    DomainCreateBody,
    DomainUpdateBody,
    ProjectCreateBody,
    ProjectUpdateBody,
)

router = APIRouter(prefix="/v3")

for _resource in (
    Resource("domain", "domains", "resources", views.domain, DomainUpdateBody,
             filters=("name",), bool_filters=("enabled",), scoped=True),
    Resource("project", "projects", "resources", views.project, ProjectUpdateBody,
             filters=("name", "domain_id", "parent_id"), bool_filters=("enabled",), scoped=True),
):
    add_routes(router, _resource)


@router.post("/domains", status_code=201)
async def create_domain(body: DomainCreateBody, svc: Service, authorize: Authorize,
                        base: BaseURL) -> dict[str, Any]:
    authorize("identity:create_domain")
    d = body.domain
    domain = await svc.resources.create_domain(name=d.name, description=text(d.description),
                                               enabled=d.enabled, domain_id=d.id,
                                               extra=d.extras())
    return {"domain": views.domain(domain, base)}


@router.post("/projects", status_code=201)
async def create_project(body: ProjectCreateBody, svc: Service, authorize: Authorize,
                         context: Context, base: BaseURL) -> dict[str, Any]:
    p = body.project
    if p.is_domain:
        raise Forbidden("Projects acting as domains are not supported; create a domain.")
    domain_id = default_domain(context, p.domain_id)
    authorize("identity:create_project", {"project": {"domain_id": domain_id}})
    parent_id = p.parent_id if p.parent_id and p.parent_id != domain_id else None
    project = await svc.resources.create_project(
        name=p.name, domain_id=domain_id, parent_id=parent_id, description=text(p.description),
        enabled=p.enabled, tags=p.tags, extra=p.extras())
    return {"project": views.project(project, base)}
