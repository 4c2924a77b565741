"""Users, groups and group membership: the ``Users`` repository of one transaction.

Contracts: user and group names are unique per domain (Keystone's 409 wording); a password
change, disabling or deleting a user revokes the user's tokens; leaving or deleting a group
flushes token caches (the roles held through it end).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from stratus.core.db import Txn, utcnow
from stratus.core.exceptions import NotFound, Unauthorized, ValidationError
from stratus.identity.errors import duplicate
from stratus.identity.models import Group, GroupMembership, User
from stratus.identity.passwords import hash_secret, verify_secret
from stratus.identity.purge import purge_group, purge_user
from stratus.identity.resources import Resources
from stratus.identity.revocation import RevocationLog
from stratus.identity.rows import apply_changes, get_row, insert, where_given


@dataclass(eq=False)
class Users:
    """Users and groups within one transaction; ``bcrypt_rounds`` hashes new passwords."""

    txn: Txn
    resources: Resources
    revocations: RevocationLog
    bcrypt_rounds: int

    # Users --------------------------------------------------------------------------------

    async def get_user(self, user_id: str) -> User:
        return await get_row(self.txn.session, User, user_id, "user")

    async def find_user(self, *, user_id: str | None = None, name: str | None = None,
                        domain_id: str | None = None, domain_name: str | None = None) -> User:
        user: User = await self.resources.find_in_domain(
            User, "user", row_id=user_id, name=name, domain_id=domain_id,
            domain_name=domain_name)
        return user

    async def list_users(self, *, name: str | None = None, domain_id: str | None = None,
                         enabled: bool | None = None) -> list[User]:
        query = where_given(select(User).order_by(User.name),
                            (User.name, name), (User.domain_id, domain_id), (User.enabled, enabled))
        return list(await self.txn.session.scalars(query))

    async def create_user(self, *, name: str, domain_id: str, password: str | None = None,
                          enabled: bool = True, default_project_id: str | None = None,
                          description: str = "", user_id: str | None = None,
                          extra: dict[str, Any] | None = None,
                          password_hash: Awaitable[str] | None = None) -> User:
        """``password_hash``: ``password``'s bcrypt hash at this service's cost, begun by
        the caller beforehand (bootstrap's admin); awaited instead of hashing here."""
        await self.resources.get_domain(domain_id)
        if default_project_id:
            await self.resources.get_project(default_project_id)
        if await self.txn.session.scalar(
                select(User.id).where(User.name == name, User.domain_id == domain_id)):
            raise duplicate("store", "user", f"Duplicate entry found with name {name} at "
                            f"domain ID {domain_id}.")
        user = User(name=name, domain_id=domain_id, enabled=enabled,
                    default_project_id=default_project_id, description=description,
                    extra=extra or {})
        if password is not None:
            user.password_hash = await (password_hash if password_hash is not None
                                        else hash_secret(password, self.bcrypt_rounds))
            user.password_created_at = utcnow()
        return await insert(self.txn.session, user, row_id=user_id)

    async def update_user(self, user_id: str, changes: dict[str, Any]) -> User:
        user = await self.get_user(user_id)
        changes = dict(changes)
        if "domain_id" in changes and changes["domain_id"] != user.domain_id:
            raise ValidationError("Update of `domain_id` is not allowed.")
        new_name = changes.get("name")
        if new_name is not None and new_name != user.name and await self.txn.session.scalar(
                select(User.id).where(User.name == new_name, User.domain_id == user.domain_id)):
            raise duplicate("update", "user", f"Duplicate entry found with name {new_name} at "
                            f"domain ID {user.domain_id}.")
        if changes.get("default_project_id"):
            await self.resources.get_project(changes["default_project_id"])
        revoke = False
        if "password" in changes:
            password = changes.pop("password")
            user.password_hash = (await hash_secret(password, self.bcrypt_rounds)
                                  if password is not None else None)
            user.password_created_at = utcnow()
            revoke = True
        if user.enabled and changes.get("enabled") is False:
            revoke = True
        apply_changes(user, changes, ("name", "enabled", "default_project_id", "description"))
        await self.txn.session.flush()
        if revoke:
            await self.revocations.revoke(user_id=user.id)
        return user

    async def change_password(self, user_id: str, original: str, new: str) -> None:
        """The user's own password change: needs the current password, revokes every token."""
        user = await self.get_user(user_id)
        if not await verify_secret(original, user.password_hash):
            raise Unauthorized("The original password is not correct.")
        user.password_hash = await hash_secret(new, self.bcrypt_rounds)
        user.password_created_at = utcnow()
        await self.txn.session.flush()
        await self.revocations.revoke(user_id=user.id)

    async def delete_user(self, user_id: str) -> None:
        await purge_user(self.txn.session, self.revocations, await self.get_user(user_id))

    # Groups -------------------------------------------------------------------------------

    async def get_group(self, group_id: str) -> Group:
        return await get_row(self.txn.session, Group, group_id, "group")

    async def list_groups(self, *, name: str | None = None,
                          domain_id: str | None = None) -> list[Group]:
        query = where_given(select(Group).order_by(Group.name),
                            (Group.name, name), (Group.domain_id, domain_id))
        return list(await self.txn.session.scalars(query))

    async def create_group(self, *, name: str, domain_id: str, description: str = "",
                           extra: dict[str, Any] | None = None) -> Group:
        await self.resources.get_domain(domain_id)
        if await self.txn.session.scalar(
                select(Group.id).where(Group.name == name, Group.domain_id == domain_id)):
            raise duplicate("store", "group", f"Duplicate entry found with name {name} at "
                            f"domain ID {domain_id}.")
        group = Group(name=name, domain_id=domain_id, description=description, extra=extra or {})
        return await insert(self.txn.session, group)

    async def update_group(self, group_id: str, changes: dict[str, Any]) -> Group:
        group = await self.get_group(group_id)
        if "domain_id" in changes and changes["domain_id"] != group.domain_id:
            raise ValidationError("Update of `domain_id` is not allowed.")
        apply_changes(group, changes, ("name", "description"))
        await self.txn.session.flush()
        return group

    async def delete_group(self, group_id: str) -> None:
        await purge_group(self.txn.session, self.revocations, await self.get_group(group_id))

    async def add_member(self, group_id: str, user_id: str) -> None:
        await self.get_group(group_id)
        await self.get_user(user_id)
        # Adding a member twice is not an error (PUT), even when two requests race.
        await self.txn.session.execute(self.txn.insert_ignore(GroupMembership).values(
            user_id=user_id, group_id=group_id))

    async def check_member(self, group_id: str, user_id: str) -> None:
        """Nothing when the user is in the group; NotFound otherwise."""
        await self.get_group(group_id)
        await self.get_user(user_id)
        if await self.txn.session.get(GroupMembership, (user_id, group_id)) is None:
            raise NotFound(f"User {user_id} is not a member of group {group_id}.")

    async def remove_member(self, group_id: str, user_id: str) -> None:
        membership = await self.txn.session.get(GroupMembership, (user_id, group_id))
        if membership is None:
            await self.get_group(group_id)
            await self.get_user(user_id)
            raise NotFound(f"User {user_id} is not a member of group {group_id}.")
        await self.txn.session.delete(membership)
        await self.txn.session.flush()
        # Roles held through the group end now: tokens are re-checked against assignments.
        self.revocations.notify()

    async def group_ids_of(self, user_id: str) -> list[str]:
        return list(await self.txn.session.scalars(
            select(GroupMembership.group_id).where(GroupMembership.user_id == user_id)))

    async def list_group_members(self, group_id: str) -> list[User]:
        await self.get_group(group_id)
        return list(await self.txn.session.scalars(
            select(User).join(GroupMembership, GroupMembership.user_id == User.id)
            .where(GroupMembership.group_id == group_id).order_by(User.name)))

    async def list_user_groups(self, user_id: str) -> list[Group]:
        await self.get_user(user_id)
        return list(await self.txn.session.scalars(
            select(Group).join(GroupMembership, GroupMembership.group_id == Group.id)
            .where(GroupMembership.user_id == user_id).order_by(Group.name)))
