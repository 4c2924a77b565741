"""Roles, role implications and grants, and the effective roles they give a user.

Contracts: ``Assignments`` is the repository of one transaction; effective roles count
direct grants, grants to the user's groups, inherited grants on the domain or a parent
project, and every role those imply. Revoking a grant revokes the tokens it backed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from stratus.core.db import Txn
from stratus.core.exceptions import Forbidden, NotFound
from stratus.identity.errors import duplicate, not_found
from stratus.identity.models import Assignment, ImpliedRole, Project, Role
from stratus.identity.resources import Resources
from stratus.identity.revocation import RevocationLog
from stratus.identity.rows import apply_changes, get_row, insert
from stratus.identity.users import Users

SYSTEM_TARGET = "system"

GRANT_TYPES = {
    ("user", "project"): Assignment.USER_PROJECT,
    ("group", "project"): Assignment.GROUP_PROJECT,
    ("user", "domain"): Assignment.USER_DOMAIN,
    ("group", "domain"): Assignment.GROUP_DOMAIN,
    ("user", "system"): Assignment.USER_SYSTEM,
    ("group", "system"): Assignment.GROUP_SYSTEM,
}
#: A stored grant's type as (actor type, scope type).
SPLIT = {v: k for k, v in GRANT_TYPES.items()}


@dataclass(eq=False)
class Assignments:
    """Roles and grants within one transaction; ``resources`` and ``users`` check the
    targets and actors of grants."""

    txn: Txn
    resources: Resources
    users: Users
    revocations: RevocationLog

    # Roles --------------------------------------------------------------------------------

    async def get_role(self, role_id: str) -> Role:
        return await get_row(self.txn.session, Role, role_id, "role")

    async def find_role(self, *, role_id: str | None = None, name: str | None = None) -> Role:
        if role_id:
            return await self.get_role(role_id)
        role = await self.txn.session.scalar(
            select(Role).where(Role.name == name, Role.domain_id == ""))
        if role is None:
            raise not_found("role", str(name))
        return role

    async def list_roles(self, *, name: str | None = None,
                         domain_id: str | None = None) -> list[Role]:
        query = select(Role).where(Role.domain_id == (domain_id or "")).order_by(Role.name)
        if name is not None:
            query = query.where(Role.name == name)
        return list(await self.txn.session.scalars(query))

    async def create_role(self, *, name: str, description: str = "",
                          domain_id: str | None = None, role_id: str | None = None,
                          extra: dict[str, Any] | None = None) -> Role:
        if domain_id:
            await self.resources.get_domain(domain_id)
        if await self.txn.session.scalar(
                select(Role.id).where(Role.name == name, Role.domain_id == (domain_id or ""))):
            raise duplicate("store", "role", f"Duplicate entry found with name {name}.")
        role = Role(name=name, description=description, domain_id=domain_id or "",
                    extra=extra or {})
        return await insert(self.txn.session, role, row_id=role_id)

    async def update_role(self, role_id: str, changes: dict[str, Any]) -> Role:
        role = await self.get_role(role_id)
        new_name = changes.get("name")
        if new_name is not None and new_name != role.name and await self.txn.session.scalar(
                select(Role.id).where(Role.name == new_name, Role.domain_id == role.domain_id)):
            raise duplicate("update", "role", f"Duplicate entry found with name {new_name}.")
        apply_changes(role, changes, ("name", "description"))
        await self.txn.session.flush()
        return role

    async def delete_role(self, role_id: str) -> None:
        role = await self.get_role(role_id)
        await self.txn.session.execute(delete(Assignment).where(Assignment.role_id == role_id))
        await self.txn.session.execute(delete(ImpliedRole).where(
            (ImpliedRole.prior_role_id == role_id) | (ImpliedRole.implied_role_id == role_id)))
        await self.txn.session.delete(role)
        await self.txn.session.flush()
        self.revocations.notify()

    async def add_implied_role(self, prior_id: str, implied_id: str) -> None:
        await self.get_role(prior_id)
        await self.get_role(implied_id)
        if prior_id == implied_id:
            raise Forbidden("A role cannot imply itself.")
        # Already implied is fine, and two requests racing to add it both succeed.
        await self.txn.session.execute(self.txn.insert_ignore(ImpliedRole).values(
            prior_role_id=prior_id, implied_role_id=implied_id))

    async def _expand_implied(self, role_ids: set[str]) -> set[str]:
        return closure(role_ids, await self.implications())

    # Grants -------------------------------------------------------------------------------

    async def _check_target(self, actor_type: str, actor_id: str, target_type: str,
                            target_id: str, role_id: str) -> None:
        await self.get_role(role_id)
        if actor_type == "user":
            await self.users.get_user(actor_id)
        else:
            await self.users.get_group(actor_id)
        if target_type == "project":
            await self.resources.get_project(target_id)
        elif target_type == "domain":
            await self.resources.get_domain(target_id)

    async def grant(self, actor_type: str, actor_id: str, target_type: str, target_id: str,
                    role_id: str, *, inherited: bool = False) -> None:
        await self._check_target(actor_type, actor_id, target_type, target_id, role_id)
        # Granting twice is not an error (PUT), even when two requests race.
        await self.txn.session.execute(self.txn.insert_ignore(Assignment).values(
            type=GRANT_TYPES[actor_type, target_type], actor_id=actor_id, target_id=target_id,
            role_id=role_id, inherited=inherited))

    async def check_grant(self, actor_type: str, actor_id: str, target_type: str,
                          target_id: str, role_id: str, *, inherited: bool = False) -> None:
        await self._check_target(actor_type, actor_id, target_type, target_id, role_id)
        key = (GRANT_TYPES[actor_type, target_type], actor_id, target_id, role_id, inherited)
        if await self.txn.session.get(Assignment, key) is None:
            raise NotFound(f"Could not find role assignment with role: {role_id}, "
                           f"{actor_type}: {actor_id}, {target_type}: {target_id}.")

    async def revoke_grant(self, actor_type: str, actor_id: str, target_type: str,
                           target_id: str, role_id: str, *, inherited: bool = False) -> None:
        key = (GRANT_TYPES[actor_type, target_type], actor_id, target_id, role_id, inherited)
        row = await self.txn.session.get(Assignment, key)
        if row is None:
            raise NotFound(f"Could not find role assignment with role: {role_id}, "
                           f"{actor_type}: {actor_id}, {target_type}: {target_id}.")
        await self.txn.session.delete(row)
        await self.txn.session.flush()
        if actor_type == "user" and target_type == "project":
            await self.revocations.revoke(user_id=actor_id, project_id=target_id)
        elif actor_type == "user":
            await self.revocations.revoke(user_id=actor_id)
        else:
            self.revocations.notify()

    async def list_grants(self, actor_type: str, actor_id: str, target_type: str,
                          target_id: str, *, inherited: bool = False) -> list[Role]:
        await (self.users.get_user(actor_id) if actor_type == "user"
               else self.users.get_group(actor_id))
        if target_type == "project":
            await self.resources.get_project(target_id)
        elif target_type == "domain":
            await self.resources.get_domain(target_id)
        return list(await self.txn.session.scalars(
            select(Role).join(Assignment, Assignment.role_id == Role.id).where(
                Assignment.type == GRANT_TYPES[actor_type, target_type],
                Assignment.actor_id == actor_id, Assignment.target_id == target_id,
                Assignment.inherited == inherited).order_by(Role.name)))

    # Effective roles ----------------------------------------------------------------------

    async def ancestors(self, project: Project) -> list[str]:
        ids, parent_id = [], project.parent_id
        while parent_id:
            ids.append(parent_id)
            parent_id = await self.txn.session.scalar(
                select(Project.parent_id).where(Project.id == parent_id))
        return ids

    async def effective_role_ids(self, user_id: str, *, project: Project | None = None,
                                 domain_id: str | None = None, system: bool = False) -> set[str]:
        """Roles the user holds on one scope: direct, through groups, inherited and implied."""
        actors = [user_id, *await self.users.group_ids_of(user_id)]
        A = Assignment
        query = select(A.role_id).where(A.actor_id.in_(actors))
        if project is not None:
            inherited_targets = [project.domain_id, *await self.ancestors(project)]
            query = query.where(
                ((A.target_id == project.id) & (A.inherited.is_(False))
                 & A.type.in_((A.USER_PROJECT, A.GROUP_PROJECT)))
                | (A.target_id.in_(inherited_targets) & A.inherited.is_(True)))
        elif domain_id is not None:
            query = query.where(A.target_id == domain_id, A.inherited.is_(False),
                                A.type.in_((A.USER_DOMAIN, A.GROUP_DOMAIN)))
        elif system:
            query = query.where(A.target_id == SYSTEM_TARGET,
                                A.type.in_((A.USER_SYSTEM, A.GROUP_SYSTEM)))
        else:
            return set()
        direct = set(await self.txn.session.scalars(query))
        return await self._expand_implied(direct) if direct else set()

    async def effective_roles(self, user_id: str, **scope: Any) -> list[Role]:
        ids = await self.effective_role_ids(user_id, **scope)
        if not ids:
            return []
        return list(await self.txn.session.scalars(
            select(Role).where(Role.id.in_(ids)).order_by(Role.name)))

    async def project_ids_for_user(self, user_id: str) -> list[str]:
        """Projects on which the user holds at least one role (directly, by group, inherited)."""
        actors = [user_id, *await self.users.group_ids_of(user_id)]
        A = Assignment
        rows = (await self.txn.session.execute(select(A.type, A.target_id, A.inherited).where(
            A.actor_id.in_(actors)))).all()
        ids = {t for kind, t, inh in rows
               if kind in (A.USER_PROJECT, A.GROUP_PROJECT) and not inh}
        inherited_domains = {t for kind, t, inh in rows
                             if kind in (A.USER_DOMAIN, A.GROUP_DOMAIN) and inh}
        inherited_projects = {t for kind, t, inh in rows
                              if kind in (A.USER_PROJECT, A.GROUP_PROJECT) and inh}
        if inherited_domains:
            ids.update(await self.txn.session.scalars(
                select(Project.id).where(Project.domain_id.in_(inherited_domains))))
        frontier = set(inherited_projects)
        while frontier:
            children = set(await self.txn.session.scalars(
                select(Project.id).where(Project.parent_id.in_(frontier))))
            frontier = children - ids
            ids.update(children)
        return sorted(ids)

    async def domain_ids_for_user(self, user_id: str) -> list[str]:
        actors = [user_id, *await self.users.group_ids_of(user_id)]
        A = Assignment
        return sorted(set(await self.txn.session.scalars(select(A.target_id).where(
            A.actor_id.in_(actors), A.type.in_((A.USER_DOMAIN, A.GROUP_DOMAIN)),
            A.inherited.is_(False)))))

    async def has_system_role(self, user_id: str) -> bool:
        return bool(await self.effective_role_ids(user_id, system=True))

    async def implications(self) -> dict[str, list[str]]:
        implied: dict[str, list[str]] = {}
        for prior, target in (await self.txn.session.execute(
                select(ImpliedRole.prior_role_id, ImpliedRole.implied_role_id))).all():
            implied.setdefault(prior, []).append(target)
        return implied


def closure(start: set[str], edges: dict[str, list[str]]) -> set[str]:
    """``start`` and everything reachable from it along ``edges`` (role implications, or
    the same reversed)."""
    result, frontier = set(start), list(start)
    while frontier:
        for target in edges.get(frontier.pop(), ()):
            if target not in result:
                result.add(target)
                frontier.append(target)
    return result
