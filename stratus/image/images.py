"""Images of one transaction: visibility, create, JSON-patch update, tags, (de)activation, list.

An image the caller cannot see is ``NotFound``, never ``Forbidden``. Status changes that two
requests may race for are compare-and-set UPDATEs (``transition``). Creating an image counts
against the owner's image quota under the project's lock (``Quotas``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.config import ImageSettings
from stratus.core.db import paging, utcnow
from stratus.core.exceptions import (
    BadRequest,
    Conflict,
    Forbidden,
    MarkerNotFound,
    NotFound,
    PayloadTooLarge,
    ValidationError,
)
from stratus.core.policy import Caller
from stratus.image.changes import ImageChanges
from stratus.image.models import Image, ImageMember, ImageProperty, ImageTag
from stratus.image.queries import (
    SORT_COLUMNS,
    Filters,
    Page,
    filter_clauses,
    visibility_clause,
    visible_clause,
)
from stratus.image.quotas import Quotas
from stratus.image.targets import image_target
from stratus.image.validation import (
    READ_ONLY,
    WRITABLE,
    Validator,
    is_reserved,
    properties_of,
    read_only_error,
)


@dataclass(frozen=True)
class PatchOp:
    """One change of a JSON-patch body: ``op`` is add, replace or remove."""

    op: str
    path: tuple[str, ...]
    value: Any = None


@dataclass
class Images:
    """The image service's images within one database transaction."""

    session: AsyncSession
    settings: ImageSettings
    validate: Validator
    quotas: Quotas
    #: Told of every change of an image (compute's image records).
    changes: ImageChanges

    async def transition(self, image_id: str, before: str, after: str) -> bool:
        """Move the image from status ``before`` to ``after``, atomically; False if not in
        ``before`` (any more)."""
        result: Any = await self.session.execute(
            update(Image).where(Image.id == image_id, Image.status == before)
            .values(status=after, updated_at=utcnow())
            .execution_options(synchronize_session=False))
        return bool(result.rowcount == 1)

    async def membership(self, image_id: str, project_id: str | None) -> ImageMember | None:
        if not project_id:
            return None
        return await self.session.get(ImageMember, (image_id, project_id))

    async def get(self, caller: Caller, image_id: str) -> Image:
        """The image if the caller may see it; ``NotFound`` otherwise (never Forbidden)."""
        image = await self.find(image_id)
        if image is None or not await self.visible(caller, image):
            raise NotFound(f"No image found with ID {image_id}")
        caller.authorize("get_image", image_target(image))
        return image

    async def find(self, image_id: str) -> Image | None:
        try:
            uuid.UUID(image_id)
        except ValueError:
            return None
        return await self.session.get(Image, image_id)

    async def visible(self, caller: Caller, image: Image) -> bool:
        if caller.is_admin or image.visibility in ("public", "community"):
            return True
        if image.owner is not None and image.owner == caller.project_id:
            return True
        if image.visibility == "shared":
            return await self.membership(image.id, caller.project_id) is not None
        return False

    @staticmethod
    def owns(caller: Caller, image: Image) -> bool:
        return image.owner is not None and image.owner == caller.project_id

    async def create(self, caller: Caller, body: Mapping[str, Any]) -> Image:
        """A new ``queued`` image from a create body (base attributes plus properties)."""
        image_id = body.get("id")
        for key in body:
            if key in READ_ONLY - {"id"} or is_reserved(key):
                raise read_only_error(key)
        if image_id is not None:
            if not isinstance(image_id, str):
                raise ValidationError(f"Invalid image id {image_id!r}.")
            try:
                image_id = str(uuid.UUID(image_id))
            except ValueError:
                raise ValidationError(f"Invalid image id {image_id!r}: not a UUID.") from None
        values: dict[str, Any] = {"visibility": "shared", "protected": False,
                                  "os_hidden": False, "min_disk": 0, "min_ram": 0, "tags": []}
        properties: dict[str, str] = {}
        for key, value in body.items():
            if key == "id":
                continue
            if key in WRITABLE:
                values[key] = self.validate.attribute(key, value)
            else:
                properties[key] = self.validate.property(key, value)
        self.validate.check_property_count(len(properties))
        owner = values.pop("owner", None) or caller.project_id
        if owner != caller.project_id and not caller.is_admin:
            raise Forbidden("You are not permitted to create images owned by another "
                            "project.")
        target = {"project_id": owner, "owner": owner, "visibility": values["visibility"]}
        caller.authorize("add_image", target)
        self._authorize_visibility(caller, values["visibility"], target)
        if owner:
            await self.quotas.lock_project(owner)
            await self.quotas.check_image_count(owner)
        if image_id is not None and await self.session.get(Image, image_id) is not None:
            raise Conflict(f"Image with identifier {image_id} already exists!")
        now = utcnow()
        tags = values.pop("tags")
        image = Image(id=image_id or str(uuid.uuid4()), owner=owner, status="queued",
                      created_at=now, updated_at=now, **values,
                      properties=[ImageProperty(name=k, value=v) for k, v in properties.items()],
                      tags=[ImageTag(value=t) for t in tags])
        self.session.add(image)
        await self.session.flush()
        return image

    @staticmethod
    def _authorize_visibility(caller: Caller, visibility: str,
                              target: Mapping[str, Any]) -> None:
        if visibility == "public":
            caller.authorize("publicize_image", target)
        elif visibility == "community":
            caller.authorize("communitize_image", target)

    async def update(self, caller: Caller, image_id: str,
                           changes: Sequence[PatchOp]) -> Image:
        """Apply JSON-patch operations, all or nothing."""
        image = await self.get(caller, image_id)
        target = image_target(image)
        caller.authorize("modify_image", target)
        properties = properties_of(image)
        values: dict[str, Any] = {}
        tags = [t.value for t in image.tags]
        for change in changes:
            name = change.path[0]
            if len(change.path) != 1 or not name:
                raise BadRequest(f"Invalid JSON pointer for this resource: "
                                 f"'/{'/'.join(change.path)}'.")
            if name in READ_ONLY or is_reserved(name):
                raise read_only_error(name)
            if name in WRITABLE:
                if change.op == "remove":
                    raise Forbidden(f"Attribute '{name}' cannot be removed.")
                value = self.validate.attribute(name, change.value)
                if name == "tags":
                    tags = value
                else:
                    values[name] = value
                continue
            if change.op == "add":
                properties[name] = self.validate.property(name, change.value)
            elif change.op == "replace":
                if name not in properties:
                    raise Conflict(f"Property {name} does not exist.")
                properties[name] = self.validate.property(name, change.value)
            else:
                if name not in properties:
                    raise Conflict(f"Property {name} does not exist.")
                del properties[name]
        self.validate.check_property_count(len(properties))
        for name in ("disk_format", "container_format"):
            if name in values and values[name] != getattr(image, name) \
                    and image.status != "queued":
                raise Forbidden(f"Attribute {name} can be only replaced for a queued image.")
        if "owner" in values and values["owner"] != image.owner and not caller.is_admin:
            raise Forbidden("Attribute 'owner' may only be changed by an administrator.")
        if values.get("visibility", image.visibility) != image.visibility:
            self._authorize_visibility(caller, values["visibility"], target)
        for name, value in values.items():
            setattr(image, name, value)
        self._set_properties(image, properties)
        self._set_tags(image, tags)
        image.updated_at = utcnow()
        await self.session.flush()
        self.changes.changed(image.id)
        return image

    @staticmethod
    def _set_properties(image: Image, properties: dict[str, str]) -> None:
        current = {p.name: p for p in image.properties}
        for name, prop in current.items():
            if name not in properties:
                image.properties.remove(prop)
            elif prop.value != properties[name]:
                prop.value = properties[name]
        for name, value in properties.items():
            if name not in current:
                image.properties.append(ImageProperty(name=name, value=value))

    @staticmethod
    def _set_tags(image: Image, tags: list[str]) -> None:
        wanted = set(tags)
        for tag in list(image.tags):
            if tag.value not in wanted:
                image.tags.remove(tag)
        have = {t.value for t in image.tags}
        for tag_value in tags:
            if tag_value not in have:
                image.tags.append(ImageTag(value=tag_value))
                have.add(tag_value)

    async def add_tag(self, caller: Caller, image_id: str, tag: str) -> None:
        image = await self.get(caller, image_id)
        caller.authorize("modify_image", image_target(image))
        self.validate.tag(tag)
        if tag in {t.value for t in image.tags}:
            return
        if len(image.tags) >= self.settings.quota_image_tags:
            raise PayloadTooLarge(f"Maximum number of tags exceeded "
                                  f"({self.settings.quota_image_tags}).")
        image.tags.append(ImageTag(value=tag))
        image.updated_at = utcnow()
        self.changes.changed(image.id)

    async def delete_tag(self, caller: Caller, image_id: str, tag: str) -> None:
        image = await self.get(caller, image_id)
        caller.authorize("modify_image", image_target(image))
        for existing in image.tags:
            if existing.value == tag:
                image.tags.remove(existing)
                image.updated_at = utcnow()
                self.changes.changed(image.id)
                return
        raise NotFound(f"Tag {tag} not found on image {image_id}.")

    async def deactivate(self, caller: Caller, image_id: str) -> None:
        await self._flip(caller, image_id, "deactivate", "active", "deactivated")

    async def reactivate(self, caller: Caller, image_id: str) -> None:
        await self._flip(caller, image_id, "reactivate", "deactivated", "active")

    async def _flip(self, caller: Caller, image_id: str, action: str, before: str,
                    after: str) -> None:
        """``before`` → ``after``; already ``after`` is a no-op, any other status a 400."""
        image = await self.get(caller, image_id)
        caller.authorize(action, image_target(image))
        if image.status == after:
            return
        if image.status != before:
            raise BadRequest(f"Not allowed to {action} image in status '{image.status}'.")
        image.status = after
        image.updated_at = utcnow()
        self.changes.changed(image.id)

    # Listing ------------------------------------------------------------------------------

    async def list_page(self, caller: Caller, filters: Filters,
                        page: Page) -> tuple[list[Image], bool]:
        """One page of the images the caller can see, and whether more follow."""
        caller.authorize("get_images", {"project_id": caller.project_id})
        query = select(Image).where(visibility_clause(caller, filters))
        query = query.where(*filter_clauses(filters))
        try:
            result = await paging.page(
                self.session, query, sort_columns=SORT_COLUMNS,
                sort=[paging.SortKey(k, "desc" if d == "desc" else "asc") for k, d in page.sort],
                marker_id=page.marker,
                limit=page.limit, id_column=Image.id,
                marker_query=select(Image).where(visible_clause(caller)))
        except MarkerNotFound:
            raise BadRequest(f"Invalid marker. Image {page.marker} could not be found.") from None
        return result.rows, result.more

