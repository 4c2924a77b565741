"""Identity's repositories on their own: built from a ``Txn`` and their named collaborators,
with no facade and no HTTP, on a migrated SQLite database."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratus.core.config import IdentitySettings, Settings
from stratus.core.exceptions import Forbidden
from stratus.identity.assignments import Assignments
from stratus.identity.models import Assignment, GroupMembership, User
from stratus.identity.resources import Resources
from stratus.identity.revocation import RevocationLog
from stratus.identity.role_assignments import AssignmentFilter, RoleAssignments
from stratus.identity.service import IdentityRuntime
from stratus.identity.users import Users


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[IdentityRuntime]:
    rt = IdentityRuntime(Settings(data_dir=tmp_path,
                                  identity=IdentitySettings(bcrypt_rounds=4)))
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()


async def test_domain_deletion_cascades_and_flushes_caches_after_commit(
        runtime: IdentityRuntime) -> None:
    flushed: list[str] = []
    async with runtime.db.transaction() as txn:
        log = RevocationLog(txn, dt.timedelta(hours=1), [lambda: flushed.append("cache")])
        resources = Resources(txn, log)
        users = Users(txn, resources, log, bcrypt_rounds=4)
        domain = await resources.create_domain(name="doomed")
        parent = await resources.create_project(name="parent", domain_id=domain.id)
        await resources.create_project(name="child", domain_id=domain.id, parent_id=parent.id)
        user = await users.create_user(name="u", domain_id=domain.id, password="pw")
        group = await users.create_group(name="g", domain_id=domain.id)
        await users.add_member(group.id, user.id)
        await users.add_member(group.id, user.id)  # twice is fine
        with pytest.raises(Forbidden):
            await resources.delete_domain(domain.id)  # still enabled
        await resources.update_domain(domain.id, {"enabled": False})
        await resources.delete_domain(domain.id)
        assert flushed == []  # not before the commit
    assert flushed == ["cache"]
    async with runtime.db.transaction(write=False) as txn:
        assert await txn.session.get(User, user.id) is None
        assert await txn.session.get(GroupMembership, (user.id, group.id)) is None


async def test_role_assignment_search_composes_with_the_grant_repository(
        runtime: IdentityRuntime) -> None:
    async with runtime.db.transaction() as txn:
        log = RevocationLog(txn, dt.timedelta(hours=1), [])
        resources = Resources(txn, log)
        users = Users(txn, resources, log, bcrypt_rounds=4)
        assignments = Assignments(txn, resources, users, log)
        search = RoleAssignments(txn, assignments, resources, users)
        domain = await resources.create_domain(name="d")
        top = await resources.create_project(name="top", domain_id=domain.id)
        leaf = await resources.create_project(name="leaf", domain_id=domain.id, parent_id=top.id)
        user = await users.create_user(name="u", domain_id=domain.id)
        admin, reader = (await assignments.create_role(name="a"),
                         await assignments.create_role(name="r"))
        await assignments.add_implied_role(admin.id, reader.id)
        await assignments.grant("user", user.id, "project", top.id, admin.id, inherited=True)
        await assignments.grant("user", user.id, "project", top.id, admin.id, inherited=True)

        stored = await search.search(AssignmentFilter(user_id=user.id))
        assert [(a.scope_id, a.role_id, a.inherited) for a in stored] == [
            (top.id, admin.id, True)]
        effective = await search.search(AssignmentFilter(user_id=user.id, effective=True,
                                                         project_id=leaf.id))
        assert {(a.scope_id, a.role_id, a.prior_role_id) for a in effective} == {
            (leaf.id, admin.id, None), (leaf.id, reader.id, admin.id)}
        assert await search.search(AssignmentFilter(user_id=user.id, effective=True,
                                                    project_id=top.id)) == []
        rows = await txn.session.scalars(
            Assignment.__table__.select().where(Assignment.actor_id == user.id))
        assert len(list(rows)) == 1  # the second grant was a no-op
