"""Image members of one transaction: sharing a ``shared`` image with other projects.

The owner (or an admin) adds, lists and removes members; a member project sees only its own
membership and sets its status (pending, accepted, rejected). A membership the caller may not
see is ``NotFound``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.config import ImageSettings
from stratus.core.db import paging, utcnow
from stratus.core.exceptions import Conflict, Forbidden, NotFound, PayloadTooLarge, ValidationError
from stratus.core.policy import Caller
from stratus.image.images import Images
from stratus.image.models import ImageMember
from stratus.image.targets import image_target
from stratus.image.validation import MEMBER_STATUSES

_MEMBER_ORDER = {"created_at": ImageMember.created_at, "member": ImageMember.member}
_MEMBER_SORT = (paging.SortKey("created_at", "asc"), paging.SortKey("member", "asc"))


class Members:
    """The members of images, within one database transaction."""

    def __init__(self, session: AsyncSession, settings: ImageSettings, images: Images) -> None:
        self.session = session
        self.settings = settings
        self.images = images

    async def add(self, caller: Caller, image_id: str, member_id: Any) -> ImageMember:
        image = await self.images.get(caller, image_id)
        caller.authorize("add_member", image_target(image, member_id))
        if not isinstance(member_id, str) or not 0 < len(member_id) <= 64:
            raise ValidationError(f"Invalid member {member_id!r}: a project id.")
        if image.visibility != "shared":
            raise Forbidden(f"Only shared images have members (image {image_id} is "
                            f"{image.visibility}).")
        if await self.images.membership(image_id, member_id) is not None:
            raise Conflict(f"Member {member_id} already exists on image {image_id}.")
        count = await self.session.scalar(select(func.count()).select_from(ImageMember).where(
            ImageMember.image_id == image_id))
        if (count or 0) >= self.settings.quota_image_members:
            raise PayloadTooLarge(f"Maximum number of image members exceeded "
                                  f"({self.settings.quota_image_members}).")
        now = utcnow()
        member = ImageMember(image_id=image_id, member=member_id, status="pending",
                             created_at=now, updated_at=now)
        self.session.add(member)
        await self.session.flush()
        self.images.changes.changed(image_id)  # the member project may now see it
        return member

    async def list_all(self, caller: Caller, image_id: str) -> list[ImageMember]:
        image = await self.images.get(caller, image_id)
        mine = self.images.owns(caller, image) or caller.is_admin
        membership = None if mine else await self.images.membership(image_id, caller.project_id)
        caller.authorize("get_members",
                         image_target(image, membership.member if membership else None))
        if image.visibility != "shared":
            raise Forbidden(f"Only shared images have members (image {image_id} is "
                            f"{image.visibility}).")
        query = select(ImageMember).where(ImageMember.image_id == image_id)
        if not mine:
            query = query.where(ImageMember.member == (caller.project_id or ""))
        # Glance's member list has no paging parameters: one page, bounded by the members
        # quota, in SQL through the same pager as every other list.
        result = await paging.page(self.session, query, sort_columns=_MEMBER_ORDER,
                                   sort=_MEMBER_SORT, marker_id=None, limit=None,
                                   id_column=ImageMember.member)
        return result.rows

    async def get(self, caller: Caller, image_id: str, member_id: str) -> ImageMember:
        image = await self.images.get(caller, image_id)
        member = await self.images.membership(image_id, member_id)
        if member is None or not (caller.is_admin or self.images.owns(caller, image)
                                  or member_id == caller.project_id):
            raise NotFound(f"Member {member_id} not found on image {image_id}.")
        caller.authorize("get_member", image_target(image, member_id))
        return member

    async def update(self, caller: Caller, image_id: str, member_id: str,
                            status: Any) -> ImageMember:
        member = await self.get(caller, image_id, member_id)
        image = await self.images.get(caller, image_id)
        caller.authorize("modify_member", image_target(image, member_id))
        if status not in MEMBER_STATUSES:
            raise ValidationError(f"Invalid member status {status!r}: must be one of "
                                  f"{', '.join(MEMBER_STATUSES)}.")
        member.status = status
        member.updated_at = utcnow()
        await self.session.flush()
        self.images.changes.changed(image_id)
        return member

    async def delete(self, caller: Caller, image_id: str, member_id: str) -> None:
        member = await self.get(caller, image_id, member_id)
        image = await self.images.get(caller, image_id)
        caller.authorize("delete_member", image_target(image, member_id))
        await self.session.delete(member)
        self.images.changes.changed(image_id)  # the member project may no longer see it
