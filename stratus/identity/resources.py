"""Domains and projects: the ``Resources`` repository of one transaction.

Contracts: names are unique per domain (projects) or globally (domains), with Keystone's
409 wording; disabling or deleting a domain or project revokes the tokens scoped to it;
a domain is deleted only once disabled, with its projects (deepest first), users and groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from stratus.core.db import Txn
from stratus.core.exceptions import Forbidden, ValidationError
from stratus.identity.errors import duplicate, not_found
from stratus.identity.models import Assignment, Domain, Group, Project, User
from stratus.identity.purge import purge_group, purge_project, purge_user
from stratus.identity.revocation import RevocationLog
from stratus.identity.rows import apply_changes, get_row, insert, named_in_domain, where_given

DEFAULT_DOMAIN_ID = "default"


@dataclass(eq=False)
class Resources:
    """Domains and projects within one transaction."""

    txn: Txn
    revocations: RevocationLog

    # Domains ------------------------------------------------------------------------------

    async def get_domain(self, domain_id: str) -> Domain:
        return await get_row(self.txn.session, Domain, domain_id, "domain")

    async def find_domain(self, *, domain_id: str | None = None,
                          name: str | None = None) -> Domain:
        if domain_id:
            return await self.get_domain(domain_id)
        if name is None:
            raise ValidationError("A domain needs an id or a name.")
        domain = await self.txn.session.scalar(select(Domain).where(Domain.name == name))
        if domain is None:
            raise not_found("domain", name)
        return domain

    async def list_domains(self, *, name: str | None = None, enabled: bool | None = None,
                           ids: list[str] | None = None) -> list[Domain]:
        query = where_given(select(Domain).order_by(Domain.name),
                            (Domain.name, name), (Domain.enabled, enabled))
        if ids is not None:
            query = query.where(Domain.id.in_(ids))
        return list(await self.txn.session.scalars(query))

    async def create_domain(self, *, name: str, description: str = "", enabled: bool = True,
                            domain_id: str | None = None,
                            extra: dict[str, Any] | None = None) -> Domain:
        if await self.txn.session.scalar(select(Domain.id).where(Domain.name == name)):
            raise duplicate("store", "domain", f"Duplicate entry found with name {name}.")
        domain = Domain(name=name, description=description, enabled=enabled, extra=extra or {})
        return await insert(self.txn.session, domain, row_id=domain_id)

    async def _disabled_by(self, row: Domain | Project, changes: dict[str, Any],
                           fields: tuple[str, ...]) -> bool:
        """Apply ``changes`` and flush; whether they disabled the row (whose tokens the
        caller then revokes)."""
        was_enabled = row.enabled
        apply_changes(row, changes, fields)
        await self.txn.session.flush()
        return was_enabled and not row.enabled

    async def update_domain(self, domain_id: str, changes: dict[str, Any]) -> Domain:
        domain = await self.get_domain(domain_id)
        if "name" in changes and changes["name"] != domain.name:
            if await self.txn.session.scalar(
                    select(Domain.id).where(Domain.name == changes["name"])):
                raise duplicate("update", "domain",
                                f"Duplicate entry found with name {changes['name']}.")
        if await self._disabled_by(domain, changes, ("name", "description", "enabled")):
            await self.revocations.revoke(domain_id=domain.id)
        return domain

    async def delete_domain(self, domain_id: str) -> None:
        domain = await self.get_domain(domain_id)
        if domain.enabled:
            raise Forbidden("Cannot delete a domain that is enabled, please disable it first.")
        projects = list(await self.txn.session.scalars(
            select(Project).where(Project.domain_id == domain_id)))
        parents = {p.id: p.parent_id for p in projects}

        def depth(project: Project) -> int:
            level, parent = 0, project.parent_id
            while parent:
                level, parent = level + 1, parents.get(parent)
            return level

        # Deepest first, so no project is deleted before its sub-projects.
        for project in sorted(projects, key=depth, reverse=True):
            await purge_project(self.txn.session, self.revocations, project)
        for user in list(await self.txn.session.scalars(
                select(User).where(User.domain_id == domain_id))):
            await purge_user(self.txn.session, self.revocations, user)
        for group in list(await self.txn.session.scalars(
                select(Group).where(Group.domain_id == domain_id))):
            await purge_group(self.txn.session, self.revocations, group)
        await self.txn.session.execute(delete(Assignment).where(Assignment.target_id == domain_id))
        await self.txn.session.delete(domain)
        await self.txn.session.flush()
        await self.revocations.revoke(domain_id=domain_id)

    # Projects -----------------------------------------------------------------------------

    async def get_project(self, project_id: str) -> Project:
        return await get_row(self.txn.session, Project, project_id, "project")

    async def find_project(self, *, project_id: str | None = None, name: str | None = None,
                           domain_id: str | None = None, domain_name: str | None = None) -> Project:
        project: Project = await self.find_in_domain(
            Project, "project", row_id=project_id, name=name, domain_id=domain_id,
            domain_name=domain_name)
        return project

    async def find_in_domain(self, model: type[Any], kind: str, *, row_id: str | None,
                             name: str | None, domain_id: str | None,
                             domain_name: str | None) -> Any:
        """A ``kind`` row (user, project) by its id, or by its name and its domain's id or
        name, as auth requests and ``*_name`` filters name them."""
        if row_id:
            return await get_row(self.txn.session, model, row_id, kind)
        if name is None or (domain_id is None and domain_name is None):
            raise ValidationError(f"A {kind} needs an id, or a name and a domain.")
        domain = await self.find_domain(domain_id=domain_id, name=domain_name)
        return await named_in_domain(self.txn.session, model, name, domain.id, kind)

    async def list_projects(self, *, name: str | None = None, domain_id: str | None = None,
                            parent_id: str | None = None, enabled: bool | None = None,
                            ids: list[str] | None = None) -> list[Project]:
        query = where_given(select(Project).order_by(Project.name),
                            (Project.name, name), (Project.domain_id, domain_id),
                            (Project.parent_id, parent_id), (Project.enabled, enabled))
        if ids is not None:
            query = query.where(Project.id.in_(ids))
        return list(await self.txn.session.scalars(query))

    async def subtree_ids(self, project_id: str) -> list[str]:
        """Every project below this one, parents before their children."""
        out: list[str] = []
        frontier = [project_id]
        while frontier:
            children = list(await self.txn.session.scalars(
                select(Project.id).where(Project.parent_id == frontier.pop())
                .order_by(Project.name)))
            out.extend(children)
            frontier.extend(children)
        return out

    async def create_project(self, *, name: str, domain_id: str, parent_id: str | None = None,
                             description: str = "", enabled: bool = True,
                             tags: list[str] | None = None, project_id: str | None = None,
                             extra: dict[str, Any] | None = None) -> Project:
        await self.get_domain(domain_id)
        if parent_id:
            parent = await self.get_project(parent_id)
            if parent.domain_id != domain_id:
                raise ValidationError("A project must be in the same domain as its parent.")
        if await self.txn.session.scalar(select(Project.id).where(
                Project.name == name, Project.domain_id == domain_id)):
            raise duplicate("store", "project", f"Duplicate entry found with name {name} at "
                            f"domain ID {domain_id}.")
        project = Project(name=name, domain_id=domain_id, parent_id=parent_id,
                          description=description, enabled=enabled, tags=tags or [],
                          extra=extra or {})
        return await insert(self.txn.session, project, row_id=project_id)

    async def update_project(self, project_id: str, changes: dict[str, Any]) -> Project:
        project = await self.get_project(project_id)
        if "domain_id" in changes and changes["domain_id"] != project.domain_id:
            raise ValidationError("Update of `domain_id` is not allowed.")
        if "parent_id" in changes and changes["parent_id"] != project.parent_id:
            raise ValidationError("Update of `parent_id` is not allowed.")
        new_name = changes.get("name")
        if new_name is not None and new_name != project.name and await self.txn.session.scalar(
                select(Project.id).where(Project.name == new_name,
                                         Project.domain_id == project.domain_id)):
            raise duplicate("update", "project", f"Duplicate entry found with name {new_name} "
                            f"at domain ID {project.domain_id}.")
        if await self._disabled_by(project, changes, ("name", "description", "enabled", "tags")):
            await self.revocations.revoke(project_id=project.id)
        return project

    async def delete_project(self, project_id: str) -> None:
        project = await self.get_project(project_id)
        if await self.txn.session.scalar(select(Project.id).where(Project.parent_id == project_id)):
            raise Forbidden("Cannot delete project: it has sub-projects; delete them first.")
        await purge_project(self.txn.session, self.revocations, project)
