"""First-start bootstrap: the Default domain, the admin project and user, roles, catalog.

The admin user holds the admin role on its project, on the system and on the Default domain.

Safe to run again: it creates what is missing, re-points catalog endpoints at the URLs
given, and resets the admin password when the one configured no longer matches.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from sqlalchemy import select

from stratus.core.exceptions import NotFound
from stratus.identity.catalog import INTERFACES
from stratus.identity.models import Domain, Endpoint, Project, Region, Role, Service, User, new_id
from stratus.identity.passwords import verify_secret
from stratus.identity.resources import DEFAULT_DOMAIN_ID
from stratus.identity.service import IdentityService

LOG = logging.getLogger(__name__)

#: Each role implies the next, as Keystone's bootstrap sets them up.
ROLE_CHAIN = ("admin", "member", "reader")
EXTRA_ROLES = ("service",)


@dataclass(frozen=True)
class CatalogEntry:
    type: str
    name: str
    url: str


async def bootstrap(svc: IdentityService, *, admin_password: str, region: str,
                    catalog: list[CatalogEntry], enforce_password: bool = True,
                    admin_password_hash: Awaitable[str] | None = None) -> None:
    """Create what is missing.

    ``enforce_password`` resets an existing admin's password when it no longer matches;
    callers that generated the password themselves skip that bcrypt check on every start.
    ``admin_password_hash``: ``admin_password``'s bcrypt hash at the service's cost, begun
    earlier by the caller; awaited (instead of hashing here) if the admin is created.
    """
    session = svc.session
    # Held (the session's identity map holds rows weakly): the projects' and the admin's
    # checks of their domain, and the endpoints' of their region, find them there.
    domain = await session.get(Domain, DEFAULT_DOMAIN_ID)
    if domain is None:
        domain = await svc.resources.create_domain(name="Default", domain_id=DEFAULT_DOMAIN_ID,
                                                   description="The default domain")
    roles: dict[str, Role] = {}
    for name in (*ROLE_CHAIN, *EXTRA_ROLES):
        try:
            roles[name] = await svc.assignments.find_role(name=name)
        except NotFound:
            roles[name] = await svc.assignments.create_role(name=name)
    for prior, implied in itertools.pairwise(ROLE_CHAIN):
        await svc.assignments.add_implied_role(roles[prior].id, roles[implied].id)

    projects = {}
    for name, description in (("admin", "Bootstrap project for the cloud's administrators"),
                              ("service", "Project of the cloud's own services")):
        project = await session.scalar(select(Project).where(
            Project.name == name, Project.domain_id == DEFAULT_DOMAIN_ID))
        projects[name] = project or await svc.resources.create_project(
            name=name, domain_id=DEFAULT_DOMAIN_ID, description=description)

    admin = await session.scalar(select(User).where(
        User.name == "admin", User.domain_id == DEFAULT_DOMAIN_ID))
    if admin is None:
        admin = await svc.users.create_user(name="admin", domain_id=DEFAULT_DOMAIN_ID,
                                            password=admin_password,
                                            password_hash=admin_password_hash,
                                            default_project_id=projects["admin"].id)
        LOG.info("created the admin user")
    elif enforce_password and not await verify_secret(admin_password, admin.password_hash):
        await svc.users.update_user(admin.id, {"password": admin_password, "enabled": True})
        LOG.info("reset the admin user's password to the configured one")
    await svc.assignments.grant("user", admin.id, "project", projects["admin"].id,
                                roles["admin"].id)
    await svc.assignments.grant("user", admin.id, "system", "system", roles["admin"].id)
    # On the Default domain too, as DevStack grants it: tools that log in domain-scoped
    # (Horizon does) work against a fresh cloud.
    await svc.assignments.grant("user", admin.id, "domain", DEFAULT_DOMAIN_ID,
                                roles["admin"].id)

    held = await session.get(Region, region) or await svc.catalog.create_region(region_id=region)
    await ensure_endpoints(svc, catalog, held.id)


async def ensure_endpoints(svc: IdentityService, catalog: list[CatalogEntry],
                           region: str) -> None:
    """For each entry, one service of its type with a public, internal and admin endpoint in
    ``region`` at its URL: what is missing is made, an endpoint at another URL re-pointed.
    The services and their endpoints are read in one query each, the missing ones inserted
    in one statement each (a first start: 7 services and 21 endpoints, ~75 statements one
    at a time before)."""
    session = svc.session
    services: dict[str, Service] = {}
    for row in await session.scalars(select(Service).where(
            Service.type.in_({entry.type for entry in catalog}))):
        services.setdefault(row.type, row)
    endpoints: dict[tuple[str, str], Endpoint] = {}
    if services:
        for found in await session.scalars(select(Endpoint).where(
                Endpoint.service_id.in_([row.id for row in services.values()]),
                Endpoint.region_id == region)):
            endpoints.setdefault((found.service_id, found.interface), found)
    for entry in catalog:
        if entry.type not in services:  # as CatalogService.create_service makes it
            services[entry.type] = Service(id=new_id(), type=entry.type, name=entry.name,
                                           description="", enabled=True, extra={})
            session.add(services[entry.type])
    await session.flush()  # the services before their endpoints (no relationship orders them)
    for entry in catalog:
        service = services[entry.type]
        for interface in INTERFACES:
            endpoint = endpoints.get((service.id, interface))
            if endpoint is None:  # as CatalogService.create_endpoint makes it
                endpoints[service.id, interface] = endpoint = Endpoint(
                    id=new_id(), service_id=service.id, interface=interface, url=entry.url,
                    region_id=region, enabled=True, extra={})
                session.add(endpoint)
            elif endpoint.url != entry.url:
                endpoint.url = entry.url
    await session.flush()
