"""``GET /v3/role_assignments``: the grants that match a filter, stored or effective.

Contracts: every filter that holds before expansion is applied in SQL, so a listing reads
only the grants (and memberships, and projects) that can contribute to its answer, never the
whole table. Effective listings expand group grants into the members, inherited grants onto
the projects below, and add implied roles (each naming the role implying it); the filters
are then checked again on the expanded entries, as Keystone does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Select, select

from stratus.core.db import Txn
from stratus.identity.assignments import SPLIT, Assignments, closure
from stratus.identity.models import Assignment, GroupMembership, Project
from stratus.identity.resources import Resources
from stratus.identity.users import Users

A = Assignment
_USER_TYPES = (A.USER_PROJECT, A.USER_DOMAIN, A.USER_SYSTEM)
_GROUP_TYPES = (A.GROUP_PROJECT, A.GROUP_DOMAIN, A.GROUP_SYSTEM)
_PROJECT_TYPES = (A.USER_PROJECT, A.GROUP_PROJECT)
_DOMAIN_TYPES = (A.USER_DOMAIN, A.GROUP_DOMAIN)
_SYSTEM_TYPES = (A.USER_SYSTEM, A.GROUP_SYSTEM)


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
    inherited: bool | None = None
    user_id: str | None = None
    group_id: str | None = None
    system: bool = False
    role_id: str | None = None
    project_id: str | None = None
    #: With ``project_id``: the projects below it too.
    include_subtree: bool = False
    domain_id: str | None = None

    def matches(self, a: RoleAssignment) -> bool:
        """Whether an (expanded) entry passes every filter."""
        return ((not self.role_id or a.role_id == self.role_id)
                and (not self.user_id or (a.actor_type, a.actor_id) == ("user", self.user_id))
                and (not self.group_id
                     or (a.actor_type, a.actor_id) == ("group", self.group_id))
                and (not self.project_id
                     or (a.scope_type, a.scope_id) == ("project", self.project_id))
                and (not self.domain_id
                     or (a.scope_type, a.scope_id) == ("domain", self.domain_id))
                and (not self.system or a.scope_type == "system"))


@dataclass(eq=False)
class RoleAssignments:
    """Role-assignment listings within one transaction."""

    txn: Txn
    assignments: Assignments
    resources: Resources
    users: Users

    async def search(self, f: AssignmentFilter) -> list[RoleAssignment]:
        project_ids: list[str | None] = [f.project_id]
        if f.project_id and f.include_subtree:
            project_ids.extend(await self.resources.subtree_ids(f.project_id))
        found: list[RoleAssignment] = []
        for project_id in project_ids:
            found.extend(await self._search(replace(f, project_id=project_id)))
        return found

    async def _search(self, f: AssignmentFilter) -> list[RoleAssignment]:
        rows = await self.txn.session.scalars(await self._candidates(f))
        found = [RoleAssignment(role_id=r.role_id, actor_type=SPLIT[r.type][0],
                                actor_id=r.actor_id, scope_type=SPLIT[r.type][1],
                                scope_id=r.target_id, inherited=r.inherited) for r in rows]
        if f.effective:
            found = await self._effective(found, f)
        return [a for a in found if f.matches(a)]

    async def _candidates(self, f: AssignmentFilter) -> Select[Any]:
        """The stored grants that can contribute to the answer."""
        query = select(A)
        if f.inherited is not None:
            query = query.where(A.inherited.is_(f.inherited))
        if f.role_id:
            roles = await self._implying(f.role_id) if f.effective else {f.role_id}
            query = query.where(A.role_id.in_(roles))
        if f.user_id and f.effective:  # the user's own grants and their groups'
            query = query.where(A.actor_id.in_(
                [f.user_id, *await self.users.group_ids_of(f.user_id)]))
        elif f.user_id:
            query = query.where(A.actor_id == f.user_id, A.type.in_(_USER_TYPES))
        if f.group_id:
            query = query.where(A.actor_id == f.group_id, A.type.in_(_GROUP_TYPES))
        if f.project_id:
            query = query.where(await self._on_project(f.project_id, f.effective))
        if f.domain_id:
            query = query.where(A.target_id == f.domain_id, A.type.in_(_DOMAIN_TYPES))
            if f.effective:  # inherited domain grants are effective on projects only
                query = query.where(A.inherited.is_(False))
        if f.system:
            query = query.where(A.type.in_(_SYSTEM_TYPES))
        return query

    async def _on_project(self, project_id: str, effective: bool) -> Any:
        """Grants on the project; effective: also those inherited from above it."""
        direct = (A.target_id == project_id) & A.type.in_(_PROJECT_TYPES)
        project = await self.txn.session.get(Project, project_id) if effective else None
        if project is None:
            return direct
        above = [project.domain_id, *await self.assignments.ancestors(project)]
        return (direct & A.inherited.is_(False)) | (A.target_id.in_(above)
                                                   & A.inherited.is_(True))

    async def _implying(self, role_id: str) -> set[str]:
        """The role and every role that implies it, directly or through others."""
        implied_by: dict[str, list[str]] = {}
        for prior, targets in (await self.assignments.implications()).items():
            for target in targets:
                implied_by.setdefault(target, []).append(prior)
        return closure({role_id}, implied_by)

    async def _effective(self, assignments: list[RoleAssignment],
                         f: AssignmentFilter) -> list[RoleAssignment]:
        """Groups expanded into their members, inherited grants onto the projects below,
        and implied roles added (each naming the role that implies it)."""
        scoped = await self._inherited_onto_projects(assignments, f.project_id)
        members = await self._members({a.actor_id for a in scoped if a.actor_type == "group"},
                                      f.user_id)
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
        return _add_implied(result, await self.assignments.implications())

    async def _members(self, group_ids: set[str], user_id: str | None) -> dict[str, list[str]]:
        """Members of these groups (only ``user_id``, when the listing is for one user)."""
        if not group_ids:
            return {}
        query = select(GroupMembership.user_id, GroupMembership.group_id).where(
            GroupMembership.group_id.in_(group_ids))
        if user_id:
            query = query.where(GroupMembership.user_id == user_id)
        members: dict[str, list[str]] = {}
        for user, group in (await self.txn.session.execute(query)).all():
            members.setdefault(group, []).append(user)
        return members

    async def _inherited_onto_projects(self, assignments: list[RoleAssignment],
                                       project_id: str | None) -> list[RoleAssignment]:
        """Direct grants as they are; each inherited one as a grant on every project below
        its domain or project (when the listing is for one project: that project only)."""
        inherited = [a for a in assignments if a.inherited]
        if not inherited:
            return list(assignments)
        projects = await self._projects_below(inherited, project_id)
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
        return scoped

    async def _projects_below(self, inherited: list[RoleAssignment],
                              project_id: str | None) -> list[Any]:
        """(id, domain id, parent id) of the projects inherited grants can reach: for one
        project, that project and its ancestors (the chain its grants come down); else every
        project in the domains the grants are on or in."""
        P = Project
        if project_id:
            project = await self.txn.session.get(P, project_id)
            ids = [project_id, *await self.assignments.ancestors(project)] if project else []
            where = P.id.in_(ids)
        else:
            domains = {a.scope_id for a in inherited if a.scope_type == "domain"}
            on_projects = {a.scope_id for a in inherited if a.scope_type == "project"}
            if on_projects:
                domains.update(await self.txn.session.scalars(
                    select(P.domain_id).where(P.id.in_(on_projects))))
            where = P.domain_id.in_(domains)
        return list((await self.txn.session.execute(
            select(P.id, P.domain_id, P.parent_id).where(where))).all())


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
