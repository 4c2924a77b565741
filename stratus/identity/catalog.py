"""Regions, services and endpoints, and the service catalog built from them.

Contracts: ``Catalog`` is the repository of one transaction; a region with children or
endpoints cannot be deleted; deleting a service deletes its endpoints; the catalog a token
carries lists enabled services with their enabled endpoints, URLs filled for its project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from stratus.core.db import Txn
from stratus.core.exceptions import Conflict, ValidationError
from stratus.identity.models import Endpoint, Region, Service, new_id
from stratus.identity.rows import apply_changes, get_row, insert, where_given

INTERFACES = ("public", "internal", "admin")


def substitute_url(url: str, project_id: str | None) -> str | None:
    """Fill ``$(project_id)s``-style placeholders; None when the token has no project for it."""
    placeholders = ("$(project_id)s", "%(project_id)s", "$(tenant_id)s", "%(tenant_id)s")
    if not any(p in url for p in placeholders):
        return url
    if project_id is None:
        return None
    for placeholder in placeholders:
        url = url.replace(placeholder, project_id)
    return url


@dataclass(eq=False)
class Catalog:
    """Regions, services and endpoints within one transaction."""

    txn: Txn

    # Regions ------------------------------------------------------------------------------

    async def get_region(self, region_id: str) -> Region:
        return await get_row(self.txn.session, Region, region_id, "region")

    async def list_regions(self, *, parent_region_id: str | None = None) -> list[Region]:
        query = where_given(select(Region).order_by(Region.id),
                            (Region.parent_region_id, parent_region_id))
        return list(await self.txn.session.scalars(query))

    async def create_region(self, *, region_id: str | None, description: str = "",
                            parent_region_id: str | None = None,
                            extra: dict[str, Any] | None = None) -> Region:
        region_id = region_id or new_id()
        if await self.txn.session.get(Region, region_id) is not None:
            raise Conflict(f"Conflict occurred attempting to store region - "
                           f"Duplicate ID, {region_id}.")
        if parent_region_id:
            await self.get_region(parent_region_id)
        region = Region(id=region_id, description=description,
                        parent_region_id=parent_region_id, extra=extra or {})
        return await insert(self.txn.session, region)

    async def update_region(self, region_id: str, changes: dict[str, Any]) -> Region:
        region = await self.get_region(region_id)
        if changes.get("parent_region_id"):
            await self.get_region(changes["parent_region_id"])
            if changes["parent_region_id"] == region_id:
                raise ValidationError("A region cannot be its own parent.")
        apply_changes(region, changes, ("description", "parent_region_id"))
        await self.txn.session.flush()
        return region

    async def delete_region(self, region_id: str) -> None:
        region = await self.get_region(region_id)
        if await self.txn.session.scalar(
                select(Region.id).where(Region.parent_region_id == region_id)):
            raise Conflict("Cannot delete a region that has child regions.")
        if await self.txn.session.scalar(
                select(Endpoint.id).where(Endpoint.region_id == region_id)):
            raise Conflict("Cannot delete a region that has endpoints.")
        await self.txn.session.delete(region)
        await self.txn.session.flush()

    # Services -----------------------------------------------------------------------------

    async def get_service(self, service_id: str) -> Service:
        return await get_row(self.txn.session, Service, service_id, "service")

    async def list_services(self, *, type: str | None = None,
                            name: str | None = None) -> list[Service]:
        query = where_given(select(Service).order_by(Service.type),
                            (Service.type, type), (Service.name, name))
        return list(await self.txn.session.scalars(query))

    async def create_service(self, *, type: str, name: str = "", description: str = "",
                             enabled: bool = True, extra: dict[str, Any] | None = None) -> Service:
        service = Service(type=type, name=name, description=description, enabled=enabled,
                          extra=extra or {})
        return await insert(self.txn.session, service)

    async def update_service(self, service_id: str, changes: dict[str, Any]) -> Service:
        service = await self.get_service(service_id)
        apply_changes(service, changes, ("type", "name", "description", "enabled"))
        await self.txn.session.flush()
        return service

    async def delete_service(self, service_id: str) -> None:
        service = await self.get_service(service_id)
        for endpoint in await self.list_endpoints(service_id=service_id):
            await self.txn.session.delete(endpoint)
        await self.txn.session.delete(service)
        await self.txn.session.flush()

    # Endpoints ----------------------------------------------------------------------------

    async def get_endpoint(self, endpoint_id: str) -> Endpoint:
        return await get_row(self.txn.session, Endpoint, endpoint_id, "endpoint")

    async def list_endpoints(self, *, service_id: str | None = None, interface: str | None = None,
                             region_id: str | None = None) -> list[Endpoint]:
        query = where_given(
            select(Endpoint).order_by(Endpoint.service_id, Endpoint.interface),
            (Endpoint.service_id, service_id), (Endpoint.interface, interface),
            (Endpoint.region_id, region_id))
        return list(await self.txn.session.scalars(query))

    async def create_endpoint(self, *, service_id: str, interface: str, url: str,
                              region_id: str | None = None, enabled: bool = True,
                              extra: dict[str, Any] | None = None) -> Endpoint:
        if interface not in INTERFACES:
            raise ValidationError(f"Invalid interface {interface!r}: use one of "
                                  f"{', '.join(INTERFACES)}.")
        await self.get_service(service_id)
        if region_id:
            await self.get_region(region_id)
        endpoint = Endpoint(service_id=service_id, interface=interface, url=url,
                            region_id=region_id, enabled=enabled, extra=extra or {})
        return await insert(self.txn.session, endpoint)

    async def update_endpoint(self, endpoint_id: str, changes: dict[str, Any]) -> Endpoint:
        endpoint = await self.get_endpoint(endpoint_id)
        if "interface" in changes and changes["interface"] not in INTERFACES:
            raise ValidationError(f"Invalid interface {changes['interface']!r}.")
        if changes.get("service_id"):
            await self.get_service(changes["service_id"])
        if changes.get("region_id"):
            await self.get_region(changes["region_id"])
        apply_changes(endpoint, changes, ("interface", "url", "region_id", "enabled"))
        if "service_id" in changes:
            endpoint.service_id = changes["service_id"]
        await self.txn.session.flush()
        return endpoint

    async def delete_endpoint(self, endpoint_id: str) -> None:
        await self.txn.session.delete(await self.get_endpoint(endpoint_id))
        await self.txn.session.flush()

    # The catalog --------------------------------------------------------------------------

    async def catalog(self, project_id: str | None) -> list[dict[str, Any]]:
        """The catalog as tokens carry it: enabled services with their enabled endpoints."""
        rows = (await self.txn.session.execute(
            select(Service, Endpoint).join(Endpoint, Endpoint.service_id == Service.id)
            .where(Service.enabled.is_(True), Endpoint.enabled.is_(True))
            .order_by(Service.type, Service.id, Endpoint.interface, Endpoint.id))).all()
        entries: dict[str, dict[str, Any]] = {}
        for service, endpoint in rows:
            url = substitute_url(endpoint.url, project_id)
            if url is None:
                continue
            entry = entries.setdefault(service.id, {
                "id": service.id, "type": service.type, "name": service.name, "endpoints": []})
            entry["endpoints"].append({
                "id": endpoint.id, "interface": endpoint.interface,
                "region": endpoint.region_id, "region_id": endpoint.region_id, "url": url})
        return list(entries.values())
