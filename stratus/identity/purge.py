"""Deleting a user, group or project together with everything that hangs off it.

Both their own repository and a domain's deletion use these, so the cascade is written
once and ``Resources`` needs no ``Users`` (which itself needs ``Resources``).
Contracts: each deletes the row, its memberships, grants and (for users) application
credentials, flushes, and records the revocation that ends the tokens it backed.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.identity.models import (
    ApplicationCredential,
    Assignment,
    Group,
    GroupMembership,
    Project,
    User,
)
from stratus.identity.revocation import RevocationLog


async def purge_user(session: AsyncSession, revocations: RevocationLog, user: User) -> None:
    await session.execute(delete(GroupMembership).where(GroupMembership.user_id == user.id))
    await session.execute(delete(Assignment).where(Assignment.actor_id == user.id))
    await session.execute(
        delete(ApplicationCredential).where(ApplicationCredential.user_id == user.id))
    await session.delete(user)
    await session.flush()
    await revocations.revoke(user_id=user.id)


async def purge_group(session: AsyncSession, revocations: RevocationLog, group: Group) -> None:
    await session.execute(delete(GroupMembership).where(GroupMembership.group_id == group.id))
    await session.execute(delete(Assignment).where(Assignment.actor_id == group.id))
    await session.delete(group)
    await session.flush()
    # Roles held through the group end now: tokens are re-checked against assignments.
    revocations.notify()


async def purge_project(session: AsyncSession, revocations: RevocationLog,
                        project: Project) -> None:
    await session.execute(delete(Assignment).where(Assignment.target_id == project.id))
    await session.delete(project)
    await session.flush()
    await revocations.revoke(project_id=project.id)
