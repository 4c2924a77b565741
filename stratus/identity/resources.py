"""Domains and projects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from stratus.core.exceptions import Conflict, Forbidden, NotFound, ValidationError
from stratus.identity.models import (
    Assignment,
    Domain,
    Group,
    Project,
    User,
)

if TYPE_CHECKING:
    from stratus.identity.service import IdentityService

DEFAULT_DOMAIN_ID = "default"


class ResourceManager:
    def __init__(self, svc: IdentityService) -> None:
        self.svc = svc
        self.session = svc.session

    # Domains ------------------------------------------------------------------------------

    async def get_domain(self, domain_id: str) -> Domain:
        domain = await self.session.get(Domain, domain_id)
        if domain is None:
            raise NotFound(f"Could not find domain: {domain_id}.")
        return domain

    async def find_domain(self, *, domain_id: str | None = None,
                          name: str | None = None) -> Domain:
        if domain_id:
            return await self.get_domain(domain_id)
        if name is None:
            raise ValidationError("A domain needs an id or a name.")
        domain = await self.session.scalar(select(Domain).where(Domain.name == name))
        if domain is None:
            raise NotFound(f"Could not find domain: {name}.")
        return domain

    async def list_domains(self, *, name: str | None = None,
                           enabled: bool | None = None) -> list[Domain]:
        query = select(Domain).order_by(Domain.name)
        if name is not None:
            query = query.where(Domain.name == name)
        if enabled is not None:
            query = query.where(Domain.enabled == enabled)
        return list(await self.session.scalars(query))

    async def create_domain(self, *, name: str, description: str = "", enabled: bool = True,
                            domain_id: str | None = None,
                            extra: dict[str, Any] | None = None) -> Domain:
        if await self.session.scalar(select(Domain.id).where(Domain.name == name)):
            raise Conflict(f"Conflict occurred attempting to store domain - "
                           f"Duplicate entry found with name {name}.")
        domain = Domain(name=name, description=description, enabled=enabled, extra=extra or {})
        if domain_id:
            domain.id = domain_id
        self.session.add(domain)
        await self.session.flush()
        return domain

    async def update_domain(self, domain_id: str, changes: dict[str, Any]) -> Domain:
        domain = await self.get_domain(domain_id)
        if "name" in changes and changes["name"] != domain.name:
            if await self.session.scalar(select(Domain.id).where(Domain.name == changes["name"])):
                raise Conflict(f"Conflict occurred attempting to update domain - "
                               f"Duplicate entry found with name {changes['name']}.")
        was_enabled = domain.enabled
        _apply(domain, changes, ("name", "description", "enabled"))
        await self.session.flush()
        if was_enabled and not domain.enabled:
            await self.svc.revocations.revoke(domain_id=domain.id)
        return domain

    async def delete_domain(self, domain_id: str) -> None:
        domain = await self.get_domain(domain_id)
        if domain.enabled:
            raise Forbidden("Cannot delete a domain that is enabled, please disable it first.")
        projects = list(await self.session.scalars(
            select(Project).where(Project.domain_id == domain_id)))
        parents = {p.id: p.parent_id for p in projects}

        def depth(project: Project) -> int:
            level, parent = 0, project.parent_id
            while parent:
                level, parent = level + 1, parents.get(parent)
            return level

        # Deepest first, so no project is deleted before its sub-projects.
        for project in sorted(projects, key=depth, reverse=True):
            await self._delete_project_row(project)
        users = await self.session.scalars(select(User).where(User.domain_id == domain_id))
        for user in list(users):
            await self.svc.users.delete_user(user.id)
        for group in list(await self.session.scalars(
                select(Group).where(Group.domain_id == domain_id))):
            await self.svc.users.delete_group(group.id)
        await self.session.execute(delete(Assignment).where(Assignment.target_id == domain_id))
        await self.session.delete(domain)
        await self.session.flush()
        await self.svc.revocations.revoke(domain_id=domain_id)

    # Projects -----------------------------------------------------------------------------

    async def get_project(self, project_id: str) -> Project:
        project = await self.session.get(Project, project_id)
        if project is None:
            raise NotFound(f"Could not find project: {project_id}.")
        return project

    async def find_project(self, *, project_id: str | None = None, name: str | None = None,
                           domain_id: str | None = None, domain_name: str | None = None) -> Project:
        if project_id:
            return await self.get_project(project_id)
        if name is None or (domain_id is None and domain_name is None):
            raise ValidationError("A project needs an id, or a name and a domain.")
        domain = await self.find_domain(domain_id=domain_id, name=domain_name)
        project = await self.session.scalar(
            select(Project).where(Project.name == name, Project.domain_id == domain.id))
        if project is None:
            raise NotFound(f"Could not find project: {name}.")
        return project

    async def list_projects(self, *, name: str | None = None, domain_id: str | None = None,
                            parent_id: str | None = None, enabled: bool | None = None,
                            ids: list[str] | None = None) -> list[Project]:
        query = select(Project).order_by(Project.name)
        for column, value in ((Project.name, name), (Project.domain_id, domain_id),
                              (Project.parent_id, parent_id), (Project.enabled, enabled)):
            if value is not None:
                query = query.where(column == value)
        if ids is not None:
            query = query.where(Project.id.in_(ids))
        return list(await self.session.scalars(query))

    async def create_project(self, *, name: str, domain_id: str, parent_id: str | None = None,
                             description: str = "", enabled: bool = True,
                             tags: list[str] | None = None, project_id: str | None = None,
                             extra: dict[str, Any] | None = None) -> Project:
        await self.get_domain(domain_id)
        if parent_id:
            parent = await self.get_project(parent_id)
            if parent.domain_id != domain_id:
                raise ValidationError("A project must be in the same domain as its parent.")
        if await self.session.scalar(select(Project.id).where(
                Project.name == name, Project.domain_id == domain_id)):
            raise Conflict(f"Conflict occurred attempting to store project - Duplicate entry "
                           f"found with name {name} at domain ID {domain_id}.")
        project = Project(name=name, domain_id=domain_id, parent_id=parent_id,
                          description=description, enabled=enabled, tags=tags or [],
                          extra=extra or {})
        if project_id:
            project.id = project_id
        self.session.add(project)
        await self.session.flush()
        return project

    async def update_project(self, project_id: str, changes: dict[str, Any]) -> Project:
        project = await self.get_project(project_id)
        if "domain_id" in changes and changes["domain_id"] != project.domain_id:
            raise ValidationError("Update of `domain_id` is not allowed.")
        if "parent_id" in changes and changes["parent_id"] != project.parent_id:
            raise ValidationError("Update of `parent_id` is not allowed.")
        new_name = changes.get("name")
        if new_name is not None and new_name != project.name and await self.session.scalar(
                select(Project.id).where(Project.name == new_name,
                                         Project.domain_id == project.domain_id)):
            raise Conflict(f"Conflict occurred attempting to update project - Duplicate entry "
                           f"found with name {new_name} at domain ID {project.domain_id}.")
        was_enabled = project.enabled
        _apply(project, changes, ("name", "description", "enabled", "tags"))
        await self.session.flush()
        if was_enabled and not project.enabled:
            await self.svc.revocations.revoke(project_id=project.id)
        return project

    async def delete_project(self, project_id: str) -> None:
        project = await self.get_project(project_id)
        if await self.session.scalar(select(Project.id).where(Project.parent_id == project_id)):
            raise Forbidden("Cannot delete project: it has sub-projects; delete them first.")
        await self._delete_project_row(project)

    async def _delete_project_row(self, project: Project) -> None:
        await self.session.execute(delete(Assignment).where(Assignment.target_id == project.id))
        await self.session.delete(project)
        await self.session.flush()
        await self.svc.revocations.revoke(project_id=project.id)


def _apply(row: Any, changes: dict[str, Any], fields: tuple[str, ...]) -> None:
    """Copy known fields onto the row; everything else goes into its ``extra`` dict."""
    extra = dict(row.extra or {})
    for key, value in changes.items():
        if key in fields:
            setattr(row, key, value)
        elif key not in ("id", "links", "domain_id", "parent_id", "is_domain"):
            extra[key] = value
    row.extra = extra
