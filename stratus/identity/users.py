"""Users, groups and group membership; password changes revoke the user's tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select

from stratus.core.db import utcnow
from stratus.core.exceptions import Conflict, NotFound, Unauthorized, ValidationError
from stratus.identity.models import (
    ApplicationCredential,
    Assignment,
    Group,
    GroupMembership,
    User,
)
from stratus.identity.passwords import hash_secret, verify_secret
from stratus.identity.resources import _apply

if TYPE_CHECKING:
    from stratus.identity.service import IdentityService


class UserManager:
    def __init__(self, svc: IdentityService) -> None:
        self.svc = svc
        self.session = svc.session

    @property
    def _rounds(self) -> int:
        return self.svc.runtime.settings.identity.bcrypt_rounds

    # Users --------------------------------------------------------------------------------

    async def get_user(self, user_id: str) -> User:
        user = await self.session.get(User, user_id)
        if user is None:
            raise NotFound(f"Could not find user: {user_id}.")
        return user

    async def find_user(self, *, user_id: str | None = None, name: str | None = None,
                        domain_id: str | None = None, domain_name: str | None = None) -> User:
        if user_id:
            return await self.get_user(user_id)
        if name is None or (domain_id is None and domain_name is None):
            raise ValidationError("A user needs an id, or a name and a domain.")
        domain = await self.svc.resources.find_domain(domain_id=domain_id, name=domain_name)
        user = await self.session.scalar(
            select(User).where(User.name == name, User.domain_id == domain.id))
        if user is None:
            raise NotFound(f"Could not find user: {name}.")
        return user

    async def list_users(self, *, name: str | None = None, domain_id: str | None = None,
                         enabled: bool | None = None) -> list[User]:
        query = select(User).order_by(User.name)
        for column, value in ((User.name, name), (User.domain_id, domain_id),
                              (User.enabled, enabled)):
            if value is not None:
                query = query.where(column == value)
        return list(await self.session.scalars(query))

    async def create_user(self, *, name: str, domain_id: str, password: str | None = None,
                          enabled: bool = True, default_project_id: str | None = None,
                          description: str = "", user_id: str | None = None,
                          extra: dict[str, Any] | None = None) -> User:
        await self.svc.resources.get_domain(domain_id)
        if default_project_id:
            await self.svc.resources.get_project(default_project_id)
        if await self.session.scalar(
                select(User.id).where(User.name == name, User.domain_id == domain_id)):
            raise Conflict(f"Conflict occurred attempting to store user - Duplicate entry "
                           f"found with name {name} at domain ID {domain_id}.")
        user = User(name=name, domain_id=domain_id, enabled=enabled,
                    default_project_id=default_project_id, description=description,
                    extra=extra or {})
        if user_id:
            user.id = user_id
        if password is not None:
            user.password_hash = await hash_secret(password, self._rounds)
            user.password_created_at = utcnow()
        self.session.add(user)
        await self.session.flush()
        return user

    async def update_user(self, user_id: str, changes: dict[str, Any]) -> User:
        user = await self.get_user(user_id)
        changes = dict(changes)
        if "domain_id" in changes and changes["domain_id"] != user.domain_id:
            raise ValidationError("Update of `domain_id` is not allowed.")
        new_name = changes.get("name")
        if new_name is not None and new_name != user.name and await self.session.scalar(
                select(User.id).where(User.name == new_name, User.domain_id == user.domain_id)):
            raise Conflict(f"Conflict occurred attempting to update user - Duplicate entry "
                           f"found with name {new_name} at domain ID {user.domain_id}.")
        if changes.get("default_project_id"):
            await self.svc.resources.get_project(changes["default_project_id"])
        revoke = False
        if "password" in changes:
            password = changes.pop("password")
            user.password_hash = (await hash_secret(password, self._rounds)
                                  if password is not None else None)
            user.password_created_at = utcnow()
            revoke = True
        if user.enabled and changes.get("enabled") is False:
            revoke = True
        _apply(user, changes, ("name", "enabled", "default_project_id", "description"))
        await self.session.flush()
        if revoke:
            await self.svc.revocations.revoke(user_id=user.id)
        return user

    async def change_password(self, user_id: str, original: str, new: str) -> None:
        """The user's own password change: needs the current password, revokes every token."""
        user = await self.get_user(user_id)
        if not await verify_secret(original, user.password_hash):
            raise Unauthorized("The original password is not correct.")
        user.password_hash = await hash_secret(new, self._rounds)
        user.password_created_at = utcnow()
        await self.session.flush()
        await self.svc.revocations.revoke(user_id=user.id)

    async def delete_user(self, user_id: str) -> None:
        user = await self.get_user(user_id)
        await self.session.execute(
            delete(GroupMembership).where(GroupMembership.user_id == user_id))
        await self.session.execute(delete(Assignment).where(Assignment.actor_id == user_id))
        await self.session.execute(
            delete(ApplicationCredential).where(ApplicationCredential.user_id == user_id))
        await self.session.delete(user)
        await self.session.flush()
        await self.svc.revocations.revoke(user_id=user_id)

    # Groups -------------------------------------------------------------------------------

    async def get_group(self, group_id: str) -> Group:
        group = await self.session.get(Group, group_id)
        if group is None:
            raise NotFound(f"Could not find group: {group_id}.")
        return group

    async def list_groups(self, *, name: str | None = None,
                          domain_id: str | None = None) -> list[Group]:
        query = select(Group).order_by(Group.name)
        if name is not None:
            query = query.where(Group.name == name)
        if domain_id is not None:
            query = query.where(Group.domain_id == domain_id)
        return list(await self.session.scalars(query))

    async def create_group(self, *, name: str, domain_id: str, description: str = "",
                           extra: dict[str, Any] | None = None) -> Group:
        await self.svc.resources.get_domain(domain_id)
        if await self.session.scalar(
                select(Group.id).where(Group.name == name, Group.domain_id == domain_id)):
            raise Conflict(f"Conflict occurred attempting to store group - Duplicate entry "
                           f"found with name {name} at domain ID {domain_id}.")
        group = Group(name=name, domain_id=domain_id, description=description, extra=extra or {})
        self.session.add(group)
        await self.session.flush()
        return group

    async def update_group(self, group_id: str, changes: dict[str, Any]) -> Group:
        group = await self.get_group(group_id)
        if "domain_id" in changes and changes["domain_id"] != group.domain_id:
            raise ValidationError("Update of `domain_id` is not allowed.")
        _apply(group, changes, ("name", "description"))
        await self.session.flush()
        return group

    async def delete_group(self, group_id: str) -> None:
        group = await self.get_group(group_id)
        await self.session.execute(
            delete(GroupMembership).where(GroupMembership.group_id == group_id))
        await self.session.execute(delete(Assignment).where(Assignment.actor_id == group_id))
        await self.session.delete(group)
        await self.session.flush()
        self.svc.revocations.notify()

    async def add_member(self, group_id: str, user_id: str) -> None:
        await self.get_group(group_id)
        await self.get_user(user_id)
        if await self.session.get(GroupMembership, (user_id, group_id)) is None:
            self.session.add(GroupMembership(user_id=user_id, group_id=group_id))
            await self.session.flush()

    async def is_member(self, group_id: str, user_id: str) -> bool:
        await self.get_group(group_id)
        await self.get_user(user_id)
        return await self.session.get(GroupMembership, (user_id, group_id)) is not None

    async def remove_member(self, group_id: str, user_id: str) -> None:
        membership = await self.session.get(GroupMembership, (user_id, group_id))
        if membership is None:
            await self.get_group(group_id)
            await self.get_user(user_id)
            raise NotFound(f"User {user_id} is not a member of group {group_id}.")
        await self.session.delete(membership)
        await self.session.flush()
        # Roles held through the group end now: tokens are re-checked against assignments.
        self.svc.revocations.notify()

    async def group_ids_of(self, user_id: str) -> list[str]:
        return list(await self.session.scalars(
            select(GroupMembership.group_id).where(GroupMembership.user_id == user_id)))

    async def list_group_members(self, group_id: str) -> list[User]:
        await self.get_group(group_id)
        return list(await self.session.scalars(
            select(User).join(GroupMembership, GroupMembership.user_id == User.id)
            .where(GroupMembership.group_id == group_id).order_by(User.name)))

    async def list_user_groups(self, user_id: str) -> list[Group]:
        await self.get_user(user_id)
        return list(await self.session.scalars(
            select(Group).join(GroupMembership, GroupMembership.group_id == Group.id)
            .where(GroupMembership.user_id == user_id).order_by(Group.name)))
