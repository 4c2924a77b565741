"""``/v3/domains`` and ``/v3/projects``: the shared resource routes (``api/crud.py``)."""

from __future__ import annotations

from fastapi import APIRouter

from stratus.identity.api import schemas, views
from stratus.identity.api.crud import Resource, add_routes

router = APIRouter(prefix="/v3")

for _resource in (
    Resource("domain", "domains", "resources", views.domain, schemas.DomainUpdateBody,
             schemas.DomainCreateBody, filters=("name",), bool_filters=("enabled",),
             scoped=True),
    Resource("project", "projects", "resources", views.project, schemas.ProjectUpdateBody,
             schemas.ProjectCreateBody, filters=("name", "domain_id", "parent_id"),
             bool_filters=("enabled",), scoped=True),
):
    add_routes(router, _resource)
