"""Identity's lists filter in SQL: with 1,000 rows stored, a filtered list reads only the
rows that match (counted with ``tests/dbcount.py``), not the whole table.

Keystone's lists do not page with markers, so the families here are the filtered ones:
resources (users; projects the same way), and ``/v3/role_assignments``, stored and effective.
The rows are inserted straight through the service's session: this is about listing.
"""

from __future__ import annotations

from stratus.identity.models import Assignment, GroupMembership, Project, User
from tests.dbcount import count_loaded

from .conftest import Cloud

ROWS = 1000


async def _users(cloud: Cloud, prefix: str) -> list[User]:
    async with cloud.runtime.service() as svc:
        users = [User(name=f"{prefix}-{i:04d}", domain_id="default") for i in range(ROWS)]
        svc.session.add_all(users)
        await svc.session.flush()
        return users


async def test_user_and_project_filters_read_only_matching_rows(cloud: Cloud) -> None:
    users = await _users(cloud, cloud.unique("bulk"))
    async with cloud.runtime.service() as svc:
        svc.session.add_all(Project(name=f"bulk-project-{i:04d}", domain_id="default")
                            for i in range(ROWS))
    wanted = users[500]
    with count_loaded(User) as loaded:
        listed = (await cloud.get("/v3/users", name=wanted.name))["users"]
    assert [u["id"] for u in listed] == [wanted.id]
    assert loaded.count <= 2  # the match (and the caller's own row, if validated afresh)
    with count_loaded(Project) as loaded:
        listed = (await cloud.get("/v3/projects", name="bulk-project-0500",
                                  enabled="true"))["projects"]
    assert [p["name"] for p in listed] == ["bulk-project-0500"]
    assert loaded.count <= 2


async def test_role_assignment_filters_read_only_matching_grants(cloud: Cloud) -> None:
    project = await cloud.create_project()
    member, service = cloud.roles["member"], cloud.roles["service"]
    users = await _users(cloud, cloud.unique("granted"))
    group = (await cloud.post("/v3/groups", {"group": {"name": cloud.unique("g")}}))["group"]
    async with cloud.runtime.service() as svc:
        svc.session.add_all(
            Assignment(type=Assignment.USER_PROJECT, actor_id=u.id, target_id=project["id"],
                       role_id=member, inherited=False) for u in users)
        svc.session.add(Assignment(type=Assignment.GROUP_PROJECT, actor_id=group["id"],
                                   target_id=project["id"], role_id=service, inherited=False))
        svc.session.add_all(GroupMembership(user_id=u.id, group_id=group["id"])
                            for u in users)
    wanted = users[700]

    with count_loaded(Assignment) as loaded:
        stored = (await cloud.get("/v3/role_assignments", **{"user.id": wanted.id}))[
            "role_assignments"]
    assert [(a["user"]["id"], a["scope"]["project"]["id"], a["role"]["id"]) for a in stored] == [
        (wanted.id, project["id"], member)]
    assert loaded.count <= 1

    with count_loaded(Assignment) as loaded, count_loaded(GroupMembership) as members:
        effective = (await cloud.get("/v3/role_assignments", effective="true",
                                     **{"user.id": wanted.id}))["role_assignments"]
    # The direct grant, the one through the group, and the role "member" implies.
    assert {a["user"]["id"] for a in effective} == {wanted.id}
    assert {a["scope"]["project"]["id"] for a in effective} == {project["id"]}
    assert {a["role"]["id"] for a in effective} == {member, service, cloud.roles["reader"]}
    assert {a["links"].get("membership") for a in effective} == {
        None, f"http://test/identity/v3/groups/{group['id']}/users/{wanted.id}"}
    assert loaded.count <= 2  # the user's grant and the group's
    assert members.count == 0  # memberships are read as columns, never whole rows

    with count_loaded(Assignment) as loaded:
        on_project = (await cloud.get("/v3/role_assignments", **{
            "scope.project.id": project["id"], "role.id": member}))["role_assignments"]
    assert len(on_project) == ROWS  # the group's grant is of another role
    assert loaded.count <= ROWS
