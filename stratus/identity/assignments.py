"""Roles, role implications and role assignments (grants), and the effective roles they give.

Contracts: ``Assignments`` is the repository of one transaction; effective roles count
direct grants, grants to the user's groups, inherited grants on the domain or a parent
project, and every role those imply. Revoking a grant revokes the tokens it backed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.exceptions import Forbidden, NotFound
from stratus.identity.errors import duplicate, not_found
from stratus.identity.models import Assignment, GroupMembership, ImpliedRole, Project, Role
from stratus.identity.resources import Resources
from stratus.identity.revocation import RevocationLog
from stratus.identity.rows import apply_changes, get_row, insert
from stratus.identity.users import Users

SYSTEM_TARGET = "system"

_TYPES = {
    ("user", "project"): Assignment.USER_PROJECT,
    ("group", "project"): Assignment.GROUP_PROJECT,
    ("user", "domain"): Assignment.USER_DOMAIN,
    ("group", "domain"): Assignment.GROUP_DOMAIN,
    ("user", "system"): Assignment.USER_SYSTEM,
    ("group", "system"): Assignment.GROUP_SYSTEM,
}
_SPLIT = {v: k for k, v in _TYPES.items()}


@dataclass(frozen=True)
class RoleAssignment:
    """One row of ``GET /v3/role_assignments``: a role an actor holds on a scope."""

    role_id: str
    actor_type: str  # "user" | "group"
    actor_id: str
    scope_type: str  # "project" | "domain" | "system"
    scope_id: str
    inherited: bool = False
    #: For effective assignments held through a group, the group.
    via_group_id: str | None = None
    #: For effective assignments of an implied role, the role that implies it ...
    prior_role_id: str | None = None
    #: ... and the role actually granted, at the head of the chain.
    granted_role_id: str | None = None


@dataclass(frozen=True)
class AssignmentFilter:
    """What ``GET /v3/role_assignments`` asks for; ``None`` and ``False`` filter nothing."""

    #: Effective roles: groups expanded to members, inherited and implied roles added.
    effective: bool = False
    system: bool = False
    inherited: bool | None = None
    user_id: str | None = None
    group_id: str | None = None
    role_id: str | None = None
    project_id: str | None = None
    #: With ``project_id``: the projects below it too.
    include_subtree: bool = False
    domain_id: str | None = None


@dataclass(eq=False)
class Assignments:
    """Roles and grants within one transaction; ``resources`` and ``users`` check the
    targets and actors of grants."""

    session: AsyncSession
    resources: Resources
    users: Users
    revocations: RevocationLog

    # Roles --------------------------------------------------------------------------------

    async def get_role(self, role_id: str) -> Role:
        return await get_row(self.session, Role, role_id, "role")

    async def find_role(self, *, role_id: str | None = None, name: str | None = None) -> Role:
        if role_id:
            return await self.get_role(role_id)
        role = await self.session.scalar(
            select(Role).where(Role.name == name, Role.domain_id == ""))
        if role is None:
            raise not_found("role", str(name))
        return role

    async def list_roles(self, *, name: str | None = None,
                         domain_id: str | None = None) -> list[Role]:
        query = select(Role).where(Role.domain_id == (domain_id or "")).order_by(Role.name)
        if name is not None:
            query = query.where(Role.name == name)
        return list(await self.session.scalars(query))

    async def create_role(self, *, name: str, description: str = "",
                          domain_id: str | None = None, role_id: str | None = None,
                          extra: dict[str, Any] | None = None) -> Role:
        if domain_id:
            await self.resources.get_domain(domain_id)
        if await self.session.scalar(
                select(Role.id).where(Role.name == name, Role.domain_id == (domain_id or ""))):
            raise duplicate("store", "role", f"Duplicate entry found with name {name}.")
        role = Role(name=name, description=description, domain_id=domain_id or "",
                    extra=extra or {})
        if role_id:
            role.id = role_id
        return await insert(self.session, role)

    async def update_role(self, role_id: str, changes: dict[str, Any]) -> Role:
        role = await self.get_role(role_id)
        new_name = changes.get("name")
        if new_name is not None and new_name != role.name and await self.session.scalar(
                select(Role.id).where(Role.name == new_name, Role.domain_id == role.domain_id)):
            raise duplicate("update", "role", f"Duplicate entry found with name {new_name}.")
        apply_changes(role, changes, ("name", "description"))
        await self.session.flush()
        return role

    async def delete_role(self, role_id: str) -> None:
        role = await self.get_role(role_id)
        await self.session.execute(delete(Assignment).where(Assignment.role_id == role_id))
        await self.session.execute(delete(ImpliedRole).where(
            (ImpliedRole.prior_role_id == role_id) | (ImpliedRole.implied_role_id == role_id)))
        await self.session.delete(role)
        await self.session.flush()
        self.revocations.notify()

    async def add_implied_role(self, prior_id: str, implied_id: str) -> None:
        await self.get_role(prior_id)
        await self.get_role(implied_id)
        if prior_id == implied_id:
            raise Forbidden("A role cannot imply itself.")
        if await self.session.get(ImpliedRole, (prior_id, implied_id)) is None:
            self.session.add(ImpliedRole(prior_role_id=prior_id, implied_role_id=implied_id))
            await self.session.flush()

    async def _expand_implied(self, role_ids: set[str]) -> set[str]:
        implied = await self._implications()
        result, frontier = set(role_ids), list(role_ids)
        while frontier:
            for target in implied.get(frontier.pop(), ()):
                if target not in result:
                    result.add(target)
                    frontier.append(target)
        return result

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
        key = (_TYPES[actor_type, target_type], actor_id, target_id, role_id, inherited)
        if await self.session.get(Assignment, key) is None:
            self.session.add(Assignment(type=key[0], actor_id=actor_id, target_id=target_id,
                                        role_id=role_id, inherited=inherited))
            await self.session.flush()

    async def check_grant(self, actor_type: str, actor_id: str, target_type: str,
                          target_id: str, role_id: str, *, inherited: bool = False) -> None:
        await self._check_target(actor_type, actor_id, target_type, target_id, role_id)
        key = (_TYPES[actor_type, target_type], actor_id, target_id, role_id, inherited)
        if await self.session.get(Assignment, key) is None:
            raise NotFound(f"Could not find role assignment with role: {role_id}, "
                           f"{actor_type}: {actor_id}, {target_type}: {target_id}.")

    async def revoke_grant(self, actor_type: str, actor_id: str, target_type: str,
                           target_id: str, role_id: str, *, inherited: bool = False) -> None:
        key = (_TYPES[actor_type, target_type], actor_id, target_id, role_id, inherited)
        row = await self.session.get(Assignment, key)
        if row is None:
            raise NotFound(f"Could not find role assignment with role: {role_id}, "
                           f"{actor_type}: {actor_id}, {target_type}: {target_id}.")
        await self.session.delete(row)
        await self.session.flush()
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
        return list(await self.session.scalars(
            select(Role).join(Assignment, Assignment.role_id == Role.id).where(
                Assignment.type == _TYPES[actor_type, target_type],
                Assignment.actor_id == actor_id, Assignment.target_id == target_id,
                Assignment.inherited == inherited).order_by(Role.name)))

    # Effective roles ----------------------------------------------------------------------

    async def _ancestors(self, project: Project) -> list[str]:
        ids, parent_id = [], project.parent_id
        while parent_id:
            ids.append(parent_id)
            parent_id = await self.session.scalar(
                select(Project.parent_id).where(Project.id == parent_id))
        return ids

    async def effective_role_ids(self, user_id: str, *, project: Project | None = None,
                                 domain_id: str | None = None, system: bool = False) -> set[str]:
        """Roles the user holds on one scope: direct, through groups, inherited and implied."""
        actors = [user_id, *await self.users.group_ids_of(user_id)]
        A = Assignment
        query = select(A.role_id).where(A.actor_id.in_(actors))
        if project is not None:
            inherited_targets = [project.domain_id, *await self._ancestors(project)]
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
        direct = set(await self.session.scalars(query))
        return await self._expand_implied(direct) if direct else set()

    async def effective_roles(self, user_id: str, **scope: Any) -> list[Role]:
        ids = await self.effective_role_ids(user_id, **scope)
        if not ids:
            return []
        return list(await self.session.scalars(
            select(Role).where(Role.id.in_(ids)).order_by(Role.name)))

    async def project_ids_for_user(self, user_id: str) -> list[str]:
        """Projects on which the user holds at least one role (directly, by group, inherited)."""
        actors = [user_id, *await self.users.group_ids_of(user_id)]
        A = Assignment
        rows = (await self.session.execute(select(A.type, A.target_id, A.inherited).where(
            A.actor_id.in_(actors)))).all()
        ids = {t for kind, t, inh in rows
               if kind in (A.USER_PROJECT, A.GROUP_PROJECT) and not inh}
        inherited_domains = {t for kind, t, inh in rows
                             if kind in (A.USER_DOMAIN, A.GROUP_DOMAIN) and inh}
        inherited_projects = {t for kind, t, inh in rows
                              if kind in (A.USER_PROJECT, A.GROUP_PROJECT) and inh}
        if inherited_domains:
            ids.update(await self.session.scalars(
                select(Project.id).where(Project.domain_id.in_(inherited_domains))))
        frontier = set(inherited_projects)
        while frontier:
            children = set(await self.session.scalars(
                select(Project.id).where(Project.parent_id.in_(frontier))))
            frontier = children - ids
            ids.update(children)
        return sorted(ids)

    async def domain_ids_for_user(self, user_id: str) -> list[str]:
        actors = [user_id, *await self.users.group_ids_of(user_id)]
        A = Assignment
        return sorted(set(await self.session.scalars(select(A.target_id).where(
            A.actor_id.in_(actors), A.type.in_((A.USER_DOMAIN, A.GROUP_DOMAIN)),
            A.inherited.is_(False)))))

    async def has_system_role(self, user_id: str) -> bool:
        return bool(await self.effective_role_ids(user_id, system=True))

    # GET /v3/role_assignments -------------------------------------------------------------

    async def search(self, f: AssignmentFilter) -> list[RoleAssignment]:
        project_ids: list[str | None] = [f.project_id]
        if f.project_id and f.include_subtree:
            project_ids.extend(await self.resources.subtree_ids(f.project_id))
        found: list[RoleAssignment] = []
        for pid in project_ids:
            found.extend(await self.list_assignments(
                user_id=f.user_id, group_id=f.group_id, role_id=f.role_id, project_id=pid,
                domain_id=f.domain_id, system=f.system, inherited=f.inherited,
                effective=f.effective))
        return found

    async def list_assignments(self, *, user_id: str | None = None, group_id: str | None = None,
                               role_id: str | None = None, project_id: str | None = None,
                               domain_id: str | None = None, system: bool = False,
                               inherited: bool | None = None,
                               effective: bool = False) -> list[RoleAssignment]:
        A = Assignment
        query = select(A)
        if role_id and not effective:  # effective listings filter after implied roles
            query = query.where(A.role_id == role_id)
        if inherited is not None:
            query = query.where(A.inherited.is_(inherited))
        rows = list(await self.session.scalars(query))
        assignments = [
            RoleAssignment(role_id=r.role_id, actor_type=_SPLIT[r.type][0], actor_id=r.actor_id,
                           scope_type=_SPLIT[r.type][1], scope_id=r.target_id,
                           inherited=r.inherited)
            for r in rows
        ]
        if effective:
            assignments = await self._effective(assignments)
        result = []
        for a in assignments:
            if role_id and a.role_id != role_id:
                continue
            if user_id and not (a.actor_type == "user" and a.actor_id == user_id):
                continue
            if group_id and not (a.actor_type == "group" and a.actor_id == group_id):
                continue
            if project_id and not (a.scope_type == "project" and a.scope_id == project_id):
                continue
            if domain_id and not (a.scope_type == "domain" and a.scope_id == domain_id):
                continue
            if system and a.scope_type != "system":
                continue
            result.append(a)
        return result

    async def _effective(self, assignments: list[RoleAssignment]) -> list[RoleAssignment]:
        """Groups expanded into their members, inherited grants onto the projects below,
        and implied roles added (each naming the role that implies it)."""
        members: dict[str, list[str]] = {}
        for user, group in (await self.session.execute(
                select(GroupMembership.user_id, GroupMembership.group_id))).all():
            members.setdefault(group, []).append(user)
        projects = (await self.session.execute(
            select(Project.id, Project.domain_id, Project.parent_id))).all()
        children: dict[str, list[str]] = {}
        for pid, _, parent in projects:
            if parent:
                children.setdefault(parent, []).append(pid)

        def subtree(pid: str) -> list[str]:
            out, stack = [], list(children.get(pid, []))
            while stack:
                child = stack.pop()
                out.append(child)
                stack.extend(children.get(child, []))
            return out

        scoped: list[RoleAssignment] = []
        for a in assignments:
            if not a.inherited:
                scoped.append(a)
            elif a.scope_type == "domain":
                scoped.extend(RoleAssignment(a.role_id, a.actor_type, a.actor_id, "project", pid)
                              for pid, did, _ in projects if did == a.scope_id)
            elif a.scope_type == "project":
                scoped.extend(RoleAssignment(a.role_id, a.actor_type, a.actor_id, "project", pid)
                              for pid in subtree(a.scope_id))
        result: list[RoleAssignment] = []
        seen: set[tuple[str, str, str, str]] = set()
        for a in scoped:
            if a.actor_type == "group":
                expanded = [RoleAssignment(a.role_id, "user", uid, a.scope_type, a.scope_id,
                                           via_group_id=a.actor_id)
                            for uid in members.get(a.actor_id, [])]
            else:
                expanded = [a]
            for e in expanded:
                key = (e.role_id, e.actor_id, e.scope_type, e.scope_id)
                if key not in seen:
                    seen.add(key)
                    result.append(e)
        return self._add_implied(result, await self._implications())

    async def _implications(self) -> dict[str, list[str]]:
        implied: dict[str, list[str]] = {}
        for prior, target in (await self.session.execute(
                select(ImpliedRole.prior_role_id, ImpliedRole.implied_role_id))).all():
            implied.setdefault(prior, []).append(target)
        return implied

    @staticmethod
    def _add_implied(assignments: list[RoleAssignment],
                     implied: dict[str, list[str]]) -> list[RoleAssignment]:
        result = list(assignments)
        seen = {(a.role_id, a.actor_id, a.scope_type, a.scope_id) for a in assignments}
        frontier = list(assignments)
        while frontier:
            a = frontier.pop(0)
            for role_id in implied.get(a.role_id, ()):
                key = (role_id, a.actor_id, a.scope_type, a.scope_id)
                if key in seen:
                    continue
                seen.add(key)
                derived = RoleAssignment(role_id, a.actor_type, a.actor_id, a.scope_type,
                                         a.scope_id, a.inherited, a.via_group_id,
                                         prior_role_id=a.role_id,
                                         granted_role_id=a.granted_role_id or a.role_id)
                result.append(derived)
                frontier.append(derived)
        return result
