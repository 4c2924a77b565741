"""The image service's domain layer: the process-wide runtime and the per-transaction service.

Nothing here knows HTTP. ``ImageService`` works inside one database transaction; operations
that stream data (upload, download) live on ``ImageRuntime`` because they must not hold a
transaction open while bytes flow: an upload marks the image ``saving`` in one short
transaction, streams into a staged store object, and publishes it in a second one.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, not_, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.core.db import Database, utcnow
from stratus.core.exceptions import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    StratusError,
    ValidationError,
)
from stratus.core.policy import Enforcer
from stratus.image.formats import Inspection, Inspector
from stratus.image.migrations import HEAD
from stratus.image.models import Image, ImageMember, ImageProperty, ImageTag, ProjectLock
from stratus.image.policy import RULES
from stratus.image.stores import ObjectReader, Store, create_store
from stratus.image.streams import DataSink, Digest, TooLarge

LOG = logging.getLogger(__name__)

SCRIPT_LOCATION = "stratus.image:migrations"
VERSION_TABLE = "alembic_version_image"

VISIBILITIES = ("public", "private", "shared", "community")
MEMBER_STATUSES = ("pending", "accepted", "rejected")
STATUSES = ("queued", "saving", "active", "killed", "deleted", "pending_delete",
            "deactivated", "uploading", "importing")
#: Statuses whose data counts against the project's size quota.
STORED = ("active", "deactivated")

#: Attributes a client may set (subject to policy and state).
WRITABLE = ("name", "visibility", "protected", "os_hidden", "min_disk", "min_ram",
            "disk_format", "container_format", "tags", "owner")
READ_ONLY = frozenset({"id", "status", "checksum", "os_hash_algo", "os_hash_value", "size",
                       "virtual_size", "created_at", "updated_at", "self", "file", "schema",
                       "direct_url", "locations", "stores"})
RESERVED = frozenset({"deleted", "deleted_at", "location"})
MAX_INT = 2**31 - 1
MAX_PROPERTY_VALUE = 65535


class Gone(StratusError):
    status = 410
    title = "Gone"


class RangeNotSatisfiable(StratusError):
    status = 416
    title = "Requested Range Not Satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(f"The requested range is not satisfiable (the data has {size} "
                         "bytes).")
        self.size = size


# The caller -------------------------------------------------------------------------------


class Caller:
    """Who asks, and what policy lets them do."""

    def __init__(self, context: RequestContext, enforcer: Enforcer) -> None:
        self.context = context
        self.enforcer = enforcer
        self.credentials = context.policy_credentials()
        self.is_admin = enforcer.check("context_is_admin", {}, self.credentials)

    @property
    def project_id(self) -> str | None:
        return self.context.project_id

    def check(self, rule: str, target: Mapping[str, Any]) -> bool:
        return self.enforcer.check(rule, {**target, "target": dict(target)}, self.credentials)

    def authorize(self, rule: str, target: Mapping[str, Any]) -> None:
        if not self.check(rule, target):
            raise Forbidden(f"You are not authorized to perform the requested action: {rule}.")


def image_target(image: Image, member_id: str | None = None) -> dict[str, Any]:
    return {"project_id": image.owner, "owner": image.owner, "visibility": image.visibility,
            "member_id": member_id, "image_id": image.id}


# Values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchOp:
    """One change of a JSON-patch body: ``op`` is add, replace or remove."""

    op: str
    path: tuple[str, ...]
    value: Any = None


@dataclass
class Filters:
    """``GET /v2/images`` filters. ``None`` means "not filtered"."""

    ids: list[str] | None = None
    names: list[str] | None = None
    statuses: list[str] | None = None
    disk_formats: list[str] | None = None
    container_formats: list[str] | None = None
    visibility: str | None = None
    owner: str | None = None
    tags: list[str] = field(default_factory=list)
    member_status: str = "accepted"
    os_hidden: bool | None = False
    protected: bool | None = None
    size_min: int | None = None
    size_max: int | None = None
    created_at: list[tuple[str, dt.datetime]] = field(default_factory=list)
    updated_at: list[tuple[str, dt.datetime]] = field(default_factory=list)
    properties: dict[str, list[str]] = field(default_factory=dict)


SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "virtual_size",
             "id", "created_at", "updated_at", "visibility", "owner", "min_disk", "min_ram",
             "protected", "os_hidden")
TIME_OPERATORS = ("gt", "gte", "lt", "lte", "eq", "neq")


@dataclass
class Page:
    limit: int
    marker: str | None = None
    #: (key, "asc" | "desc") in order of precedence.
    sort: list[tuple[str, str]] = field(default_factory=lambda: [("created_at", "desc")])


@dataclass(frozen=True)
class ByteRange:
    """``first-last`` (inclusive), ``first-`` (last None) or a suffix ``-n`` (first None)."""

    first: int | None
    last: int | None

    def resolve(self, size: int) -> tuple[int, int]:
        """(offset, length) within ``size`` bytes; ``RangeNotSatisfiable`` when none."""
        if self.first is None:
            if not self.last:
                raise RangeNotSatisfiable(size)
            length = min(self.last, size)
            if length == 0:
                raise RangeNotSatisfiable(size)
            return size - length, length
        if self.first >= size:
            raise RangeNotSatisfiable(size)
        last = size - 1 if self.last is None else min(self.last, size - 1)
        return self.first, last - self.first + 1


@dataclass
class Download:
    image_id: str
    checksum: str | None
    size: int
    offset: int
    length: int
    partial: bool
    reader: ObjectReader


# Validation -------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def properties_of(image: Image) -> dict[str, str]:
    return {p.name: p.value for p in image.properties}


class Validator:
    def __init__(self, settings: Settings) -> None:
        self.image = settings.image

    def attribute(self, name: str, value: Any) -> Any:
        """A writable attribute's value, checked; raises ``ValidationError``."""
        if name == "name":
            if value is not None and (not isinstance(value, str) or len(value) > 255):
                raise ValidationError("Invalid value for 'name': a string of at most 255 "
                                      "characters or null.")
            return value
        if name == "visibility":
            if value not in VISIBILITIES:
                raise ValidationError(f"Invalid visibility value {value!r}: must be one of "
                                      f"{', '.join(VISIBILITIES)}.")
            return value
        if name in ("protected", "os_hidden"):
            if not isinstance(value, bool):
                raise ValidationError(f"Invalid value for '{name}': {value!r} is not a "
                                      "boolean.")
            return value
        if name in ("min_disk", "min_ram"):
            if not _is_int(value) or not 0 <= value <= MAX_INT:
                raise ValidationError(f"Invalid value for '{name}': {value!r} is not an "
                                      f"integer between 0 and {MAX_INT}.")
            return value
        if name in ("disk_format", "container_format"):
            allowed = (self.image.disk_formats if name == "disk_format"
                       else self.image.container_formats)
            if value is not None and value not in allowed:
                raise ValidationError(f"Invalid value {value!r} for '{name}': must be one of "
                                      f"{', '.join(allowed)}.")
            return value
        if name == "tags":
            if not isinstance(value, list):
                raise ValidationError("Invalid value for 'tags': a list of strings.")
            tags: list[str] = []
            for tag in value:
                self.tag(tag)
                if tag not in tags:
                    tags.append(tag)
            if len(tags) > self.image.quota_image_tags:
                raise PayloadTooLarge(f"Maximum number of tags exceeded "
                                      f"({self.image.quota_image_tags}).")
            return tags
        if name == "owner":
            if value is not None and (not isinstance(value, str) or len(value) > 255):
                raise ValidationError("Invalid value for 'owner': a string of at most 255 "
                                      "characters or null.")
            return value
        raise ValidationError(f"Unknown attribute {name!r}.")  # pragma: no cover

    @staticmethod
    def tag(tag: Any) -> str:
        if not isinstance(tag, str) or not 0 < len(tag) <= 255:
            raise ValidationError(f"Invalid tag {tag!r}: a string of 1 to 255 characters.")
        return tag

    @staticmethod
    def property(name: str, value: Any) -> str:
        if not name or len(name) > 255:
            raise ValidationError(f"Invalid property name {name!r}: 1 to 255 characters.")
        if not isinstance(value, str):
            raise ValidationError(f"Invalid value for property {name!r}: {value!r} is not "
                                  "a string (additional properties must be strings).")
        if len(value) > MAX_PROPERTY_VALUE:
            raise ValidationError(f"Value of property {name!r} is too long.")
        return value

    def check_property_count(self, count: int) -> None:
        if count > self.image.quota_image_properties:
            raise PayloadTooLarge(f"Maximum number of image properties exceeded "
                                  f"({self.image.quota_image_properties}).")


def _read_only(name: str) -> Forbidden:
    if name in RESERVED:
        return Forbidden(f"Attribute '{name}' is reserved.")
    return Forbidden(f"Attribute '{name}' is read-only.")


# The runtime ------------------------------------------------------------------------------


class ImageRuntime:
    """What the image service keeps for the life of the process."""

    def __init__(self, settings: Settings, db: Database | None = None,
                 store: Store | None = None) -> None:
        self.settings = settings
        self.db = db or Database(settings.database_url_for("image", settings.image.database_url))
        self.store = store or create_store(settings)
        self.enforcer = Enforcer(RULES, settings.policy_file)
        self.inspector = Inspector(settings.image.qemu_img,
                                   require_match=settings.image.require_format_match)
        self.validator = Validator(settings)

    async def start(self) -> None:
        await self.db.upgrade(SCRIPT_LOCATION, VERSION_TABLE, known_head=HEAD)
        await self.store.start()

    async def stop(self) -> None:
        await self.store.stop()
        await self.db.dispose()

    def caller(self, context: RequestContext) -> Caller:
        return Caller(context, self.enforcer)

    @asynccontextmanager
    async def service(self) -> AsyncIterator[ImageService]:
        """A service bound to one transaction: committed on success, rolled back on error."""
        try:
            async with self.db.session() as session:
                yield ImageService(self, session)
        except IntegrityError as exc:
            raise Conflict("Conflict occurred attempting to store the resource: "
                           "duplicate entry.") from exc

    # Data in ------------------------------------------------------------------------------

    async def upload(self, caller: Caller, image_id: str, chunks: AsyncIterator[bytes],
                     declared_size: int | None = None) -> None:
        """Stream ``chunks`` into the store as the image's data: ``queued`` → ``active``.

        Any failure (too large, wrong format, the client going away, a store error) removes
        the staged data and puts the image back to ``queued``.
        """
        async with self.service() as svc:
            image = await svc.get_image(caller, image_id)
            caller.authorize("upload_image", image_target(image))
            if image.status != "queued":
                raise Conflict(f"Image {image_id} has status '{image.status}'; data can only "
                               "be uploaded to a 'queued' image.")
            if not image.disk_format or not image.container_format:
                raise BadRequest("Properties disk_format and container_format must be set "
                                 "prior to saving data.")
            limit, reason = await svc.upload_limit(image)
            if declared_size is not None and declared_size > limit:
                raise TooLarge(reason)
            owner, disk_format = image.owner, image.disk_format
            # Compare and set: of two uploads racing here, only one gets the image.
            if not await svc.transition(image_id, "queued", "saving"):
                raise Conflict(f"Image {image_id} is no longer 'queued'; another upload "
                               "got there first.")

        writer = None
        location: str | None = None
        try:
            writer = await self.store.writer(image_id)
            sink = DataSink(writer, limit=limit, limit_message=reason)
            try:
                async for chunk in chunks:
                    await sink.feed(chunk)
                digest = await sink.finish()
            except BaseException:
                await sink.discard()
                raise
            if declared_size is not None and digest.size != declared_size:
                raise BadRequest(f"Received {digest.size} bytes, but Content-Length declared "
                                 f"{declared_size}.")
            await writer.written()
            inspection = await self.inspector.inspect(writer.local_path, disk_format,
                                                      digest.size, digest.head)
            location = await writer.commit()
            await self._activate(image_id, owner, digest, inspection, location)
        except BaseException as exc:
            if location is not None and await self._published(image_id, location):
                raise  # cancelled after the image went active: its data stays
            if writer is not None:
                await _quietly(writer.abort(), "removing the staged data of %s", image_id)
            if not isinstance(exc, Gone):
                await _quietly(self._restore_queued(image_id), "requeueing %s", image_id)
            raise

    async def _published(self, image_id: str, location: str) -> bool:
        """Whether the image went active with this data (True when that cannot be told:
        better an orphaned file than an active image without its data)."""
        try:
            async with self.service() as svc:
                image = await svc.session.get(Image, image_id)
                return image is not None and image.location == location
        except Exception:
            LOG.exception("could not tell whether image %s was published", image_id)
            return True

    async def _activate(self, image_id: str, owner: str | None, digest: Digest,
                        inspection: Inspection, location: str) -> None:
        async with self.service() as svc:
            if owner:
                await svc.lock_project(owner)
            image = await svc.session.get(Image, image_id)
            if image is None or image.status != "saving":
                raise Gone(f"Image {image_id} could not be found after upload. The image may "
                           "have been deleted during the upload.")
            if image.owner:
                limit, reason = await svc.upload_limit(image)
                if digest.size > limit:
                    raise TooLarge(reason)
            image.size = digest.size
            image.checksum = digest.checksum
            image.os_hash_algo = digest.os_hash_algo
            image.os_hash_value = digest.os_hash_value
            image.virtual_size = inspection.virtual_size
            image.location = location
            image.status = "active"
            image.updated_at = utcnow()

    async def _restore_queued(self, image_id: str) -> None:
        async with self.service() as svc:
            await svc.transition(image_id, "saving", "queued")

    # Data out -----------------------------------------------------------------------------

    async def open_data(self, caller: Caller, image_id: str,
                        byte_range: ByteRange | None = None) -> Download | None:
        """The image's data (or a range of it), opened; None when the image has no data."""
        async with self.service() as svc:
            image = await svc.get_image(caller, image_id)
            caller.authorize("download_image", image_target(image))
            if image.status == "deactivated" and not caller.is_admin:
                raise Forbidden("The requested image has been deactivated. Image data download "
                                "is prohibited.")
            if image.status not in STORED or image.location is None or image.size is None:
                return None
            location, size, checksum = image.location, image.size, image.checksum
        offset, length = 0, size
        if byte_range is not None:
            offset, length = byte_range.resolve(size)
        reader = await self.store.open(location, offset, length)
        return Download(image_id=image_id, checksum=checksum, size=size, offset=offset,
                        length=length, partial=byte_range is not None, reader=reader)

    # Delete -------------------------------------------------------------------------------

    async def delete_image(self, caller: Caller, image_id: str) -> None:
        """Delete the image, then its data (after the deletion is committed)."""
        async with self.service() as svc:
            image = await svc.get_image(caller, image_id)
            caller.authorize("delete_image", image_target(image))
            if image.protected:
                raise Forbidden(f"Image {image_id} is protected and cannot be deleted.")
            location = image.location
            await svc.session.delete(image)
        if location is not None:
            await _quietly(self.store.delete(location), "deleting the data of %s", image_id)


async def _quietly(step: Any, what: str, *args: Any) -> None:
    """Await a clean-up step; log (never raise) its failure, so the original error wins."""
    try:
        await step
    except Exception:
        LOG.exception("failed " + what, *args)


# The service ------------------------------------------------------------------------------


class ImageService:
    """The image service's operations within one database transaction."""

    def __init__(self, runtime: ImageRuntime, session: AsyncSession) -> None:
        self.runtime = runtime
        self.session = session
        self.settings = runtime.settings
        self.validate = runtime.validator

    # Quotas -------------------------------------------------------------------------------

    async def lock_project(self, project_id: str) -> None:
        """Take the project's quota lock (held to commit). Call it first in a transaction."""
        table: Any = ProjectLock.__table__
        if self.runtime.db.backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(table)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(table)
        stmt = stmt.values(project_id=project_id, generation=0).on_conflict_do_update(
            index_elements=[table.c.project_id],
            set_={"generation": table.c.generation + 1})
        await self.session.execute(stmt)

    async def transition(self, image_id: str, before: str, after: str) -> bool:
        """Move the image from status ``before`` to ``after``, atomically; False if not in
        ``before`` (any more)."""
        result: Any = await self.session.execute(
            update(Image).where(Image.id == image_id, Image.status == before)
            .values(status=after, updated_at=utcnow())
            .execution_options(synchronize_session=False))
        return bool(result.rowcount == 1)

    async def stored_bytes(self, project_id: str, *, excluding: str | None = None) -> int:
        query = select(func.coalesce(func.sum(Image.size), 0)).where(
            Image.owner == project_id, Image.status.in_(STORED))
        if excluding is not None:
            query = query.where(Image.id != excluding)
        return int(await self.session.scalar(query) or 0)

    async def upload_limit(self, image: Image) -> tuple[int, str]:
        """How many bytes this image's data may have, and what to say when it has more."""
        conf = self.settings.image
        limit = conf.image_size_cap
        reason = (f"Image exceeds the storage size limit of {conf.image_size_cap} bytes "
                  "per image.")
        total = conf.quota_image_size_total
        if total is not None and image.owner:
            used = await self.stored_bytes(image.owner, excluding=image.id)
            remaining = max(0, total - used)
            if remaining < limit:
                limit = remaining
                reason = (f"Denying the upload: it exceeds the image storage quota of project "
                          f"{image.owner} ({total} bytes, of which {used} are in use).")
        return limit, reason

    async def _check_image_count(self, project_id: str) -> None:
        quota = self.settings.image.quota_image_count
        if quota is None:
            return
        count = await self.session.scalar(
            select(func.count()).select_from(Image).where(Image.owner == project_id))
        if (count or 0) >= quota:
            raise PayloadTooLarge(f"Maximum number of images exceeded for project "
                                  f"{project_id} (quota: {quota}).")

    # Visibility ---------------------------------------------------------------------------

    async def _membership(self, image_id: str, project_id: str | None) -> ImageMember | None:
        if not project_id:
            return None
        return await self.session.get(ImageMember, (image_id, project_id))

    async def get_image(self, caller: Caller, image_id: str) -> Image:
        """The image if the caller may see it; ``NotFound`` otherwise (never Forbidden)."""
        image = await self._find(image_id)
        if image is None or not await self._visible(caller, image):
            raise NotFound(f"No image found with ID {image_id}")
        caller.authorize("get_image", image_target(image))
        return image

    async def _find(self, image_id: str) -> Image | None:
        try:
            uuid.UUID(image_id)
        except ValueError:
            return None
        return await self.session.get(Image, image_id)

    async def _visible(self, caller: Caller, image: Image) -> bool:
        if caller.is_admin or image.visibility in ("public", "community"):
            return True
        if image.owner is not None and image.owner == caller.project_id:
            return True
        if image.visibility == "shared":
            return await self._membership(image.id, caller.project_id) is not None
        return False

    def _owns(self, caller: Caller, image: Image) -> bool:
        return image.owner is not None and image.owner == caller.project_id

    # Images -------------------------------------------------------------------------------

    async def create_image(self, caller: Caller, body: Mapping[str, Any]) -> Image:
        """A new ``queued`` image from a create body (base attributes plus properties)."""
        image_id = body.get("id")
        for key in body:
            if key in READ_ONLY - {"id"} or key in RESERVED:
                raise _read_only(key)
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
            await self.lock_project(owner)
            await self._check_image_count(owner)
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

    async def update_image(self, caller: Caller, image_id: str,
                           changes: Sequence[PatchOp]) -> Image:
        """Apply JSON-patch operations, all or nothing."""
        image = await self.get_image(caller, image_id)
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
            if name in READ_ONLY or name in RESERVED:
                raise _read_only(name)
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
        image = await self.get_image(caller, image_id)
        caller.authorize("modify_image", image_target(image))
        self.validate.tag(tag)
        if tag in {t.value for t in image.tags}:
            return
        if len(image.tags) >= self.settings.image.quota_image_tags:
            raise PayloadTooLarge(f"Maximum number of tags exceeded "
                                  f"({self.settings.image.quota_image_tags}).")
        image.tags.append(ImageTag(value=tag))
        image.updated_at = utcnow()

    async def delete_tag(self, caller: Caller, image_id: str, tag: str) -> None:
        image = await self.get_image(caller, image_id)
        caller.authorize("modify_image", image_target(image))
        for existing in image.tags:
            if existing.value == tag:
                image.tags.remove(existing)
                image.updated_at = utcnow()
                return
        raise NotFound(f"Tag {tag} not found on image {image_id}.")

    async def deactivate(self, caller: Caller, image_id: str) -> None:
        image = await self.get_image(caller, image_id)
        caller.authorize("deactivate", image_target(image))
        if image.status == "deactivated":
            return
        if image.status != "active":
            raise BadRequest(f"Not allowed to deactivate image in status '{image.status}'.")
        image.status = "deactivated"
        image.updated_at = utcnow()

    async def reactivate(self, caller: Caller, image_id: str) -> None:
        image = await self.get_image(caller, image_id)
        caller.authorize("reactivate", image_target(image))
        if image.status == "active":
            return
        if image.status != "deactivated":
            raise BadRequest(f"Not allowed to reactivate image in status '{image.status}'.")
        image.status = "active"
        image.updated_at = utcnow()

    # Listing ------------------------------------------------------------------------------

    async def list_images(self, caller: Caller, filters: Filters,
                          page: Page) -> tuple[list[Image], bool]:
        """One page of the images the caller can see, and whether more follow."""
        caller.authorize("get_images", {"project_id": caller.project_id})
        query = select(Image).where(self._visibility_clause(caller, filters))
        query = query.where(*self._filter_clauses(filters))
        keys = [*page.sort]
        if not any(k == "id" for k, _ in keys):
            keys.append(("id", keys[-1][1] if keys else "desc"))
        if page.marker is not None:
            marker = await self._find(page.marker)
            if marker is None or not await self._visible(caller, marker):
                raise BadRequest(f"Invalid marker. Image {page.marker} could not be found.")
            query = query.where(_after(marker, keys))
        query = query.order_by(*(_sort_expr(k).desc() if d == "desc" else _sort_expr(k).asc()
                                 for k, d in keys))
        rows = list((await self.session.scalars(query.limit(page.limit + 1))).all())
        return rows[:page.limit], len(rows) > page.limit

    def _visibility_clause(self, caller: Caller, filters: Filters) -> ColumnElement[bool]:
        me = caller.project_id
        owned = Image.owner == me if me else false()
        statuses = None if filters.member_status == "all" else [filters.member_status]
        member_rows = select(ImageMember.image_id).where(ImageMember.member == (me or ""))
        if statuses is not None:
            member_rows = member_rows.where(ImageMember.status.in_(statuses))
        shared_with_me = and_(Image.visibility == "shared", Image.id.in_(member_rows)) \
            if me else false()
        vis = filters.visibility
        if vis is None:
            if caller.is_admin:
                return true()
            return or_(Image.visibility == "public", owned, shared_with_me)
        if vis == "all":
            if caller.is_admin:
                return true()
            return or_(Image.visibility.in_(("public", "community")), owned, shared_with_me)
        clause = Image.visibility == vis
        if caller.is_admin or vis in ("public", "community"):
            return clause
        if vis == "private":
            return and_(clause, owned)
        return and_(clause, or_(owned, shared_with_me))

    @staticmethod
    def _filter_clauses(f: Filters) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        lists: list[tuple[Any, list[str] | None]] = [
            (Image.id, f.ids), (Image.name, f.names),
            (Image.status, f.statuses), (Image.disk_format, f.disk_formats),
            (Image.container_format, f.container_formats)]
        for column, values in lists:
            if values is not None:
                clauses.append(column.in_(values))
        if f.owner is not None:
            clauses.append(Image.owner == f.owner)
        for tag in f.tags:
            clauses.append(Image.id.in_(select(ImageTag.image_id).where(ImageTag.value == tag)))
        if f.os_hidden is not None:
            clauses.append(Image.os_hidden == f.os_hidden)
        if f.protected is not None:
            clauses.append(Image.protected == f.protected)
        if f.size_min is not None:
            clauses.append(Image.size >= f.size_min)
        if f.size_max is not None:
            clauses.append(Image.size <= f.size_max)
        for op, when in f.created_at:
            clauses.append(_compare(Image.created_at, op, when))
        for op, when in f.updated_at:
            clauses.append(_compare(Image.updated_at, op, when))
        for name, values in f.properties.items():
            clauses.append(Image.id.in_(select(ImageProperty.image_id).where(
                ImageProperty.name == name, ImageProperty.value.in_(values))))
        return clauses

    # Members ------------------------------------------------------------------------------

    async def _member_image(self, caller: Caller, image_id: str) -> Image:
        return await self.get_image(caller, image_id)

    async def add_member(self, caller: Caller, image_id: str, member_id: Any) -> ImageMember:
        image = await self._member_image(caller, image_id)
        caller.authorize("add_member", image_target(image, member_id))
        if not isinstance(member_id, str) or not 0 < len(member_id) <= 64:
            raise ValidationError(f"Invalid member {member_id!r}: a project id.")
        if image.visibility != "shared":
            raise Forbidden(f"Only shared images have members (image {image_id} is "
                            f"{image.visibility}).")
        if await self._membership(image_id, member_id) is not None:
            raise Conflict(f"Member {member_id} already exists on image {image_id}.")
        count = await self.session.scalar(select(func.count()).select_from(ImageMember).where(
            ImageMember.image_id == image_id))
        if (count or 0) >= self.settings.image.quota_image_members:
            raise PayloadTooLarge(f"Maximum number of image members exceeded "
                                  f"({self.settings.image.quota_image_members}).")
        now = utcnow()
        member = ImageMember(image_id=image_id, member=member_id, status="pending",
                             created_at=now, updated_at=now)
        self.session.add(member)
        await self.session.flush()
        return member

    async def list_members(self, caller: Caller, image_id: str) -> list[ImageMember]:
        image = await self._member_image(caller, image_id)
        mine = self._owns(caller, image) or caller.is_admin
        membership = None if mine else await self._membership(image_id, caller.project_id)
        caller.authorize("get_members",
                         image_target(image, membership.member if membership else None))
        if image.visibility != "shared":
            raise Forbidden(f"Only shared images have members (image {image_id} is "
                            f"{image.visibility}).")
        query = select(ImageMember).where(ImageMember.image_id == image_id)
        if not mine:
            query = query.where(ImageMember.member == (caller.project_id or ""))
        return list((await self.session.scalars(
            query.order_by(ImageMember.created_at, ImageMember.member))).all())

    async def get_member(self, caller: Caller, image_id: str, member_id: str) -> ImageMember:
        image = await self._member_image(caller, image_id)
        member = await self._membership(image_id, member_id)
        if member is None or not (caller.is_admin or self._owns(caller, image)
                                  or member_id == caller.project_id):
            raise NotFound(f"Member {member_id} not found on image {image_id}.")
        caller.authorize("get_member", image_target(image, member_id))
        return member

    async def update_member(self, caller: Caller, image_id: str, member_id: str,
                            status: Any) -> ImageMember:
        member = await self.get_member(caller, image_id, member_id)
        image = await self.get_image(caller, image_id)
        caller.authorize("modify_member", image_target(image, member_id))
        if status not in MEMBER_STATUSES:
            raise ValidationError(f"Invalid member status {status!r}: must be one of "
                                  f"{', '.join(MEMBER_STATUSES)}.")
        member.status = status
        member.updated_at = utcnow()
        await self.session.flush()
        return member

    async def delete_member(self, caller: Caller, image_id: str, member_id: str) -> None:
        member = await self.get_member(caller, image_id, member_id)
        image = await self.get_image(caller, image_id)
        caller.authorize("delete_member", image_target(image, member_id))
        await self.session.delete(member)


# Query helpers ----------------------------------------------------------------------------

_NULLABLE_TEXT = ("name", "disk_format", "container_format", "owner")
_NULLABLE_INT = ("size", "virtual_size")


def _sort_expr(key: str) -> Any:
    column = getattr(Image, key)
    if key in _NULLABLE_TEXT:
        return func.coalesce(column, "")
    if key in _NULLABLE_INT:
        return func.coalesce(column, -1)
    return column


def _sort_value(image: Image, key: str) -> Any:
    value = getattr(image, key)
    if value is None:
        return "" if key in _NULLABLE_TEXT else -1
    return value


def _after(marker: Image, keys: Iterable[tuple[str, str]]) -> ColumnElement[bool]:
    """Rows after ``marker`` in the order given by ``keys`` (keyset pagination)."""
    keys = list(keys)
    alternatives = []
    for i, (key, direction) in enumerate(keys):
        equal = [_sort_expr(k) == _sort_value(marker, k) for k, _ in keys[:i]]
        expr, value = _sort_expr(key), _sort_value(marker, key)
        beyond = expr < value if direction == "desc" else expr > value
        alternatives.append(and_(*equal, beyond))
    return or_(*alternatives)


def _compare(column: Any, op: str, when: dt.datetime) -> ColumnElement[bool]:
    result: ColumnElement[bool]
    if op == "gt":
        result = column > when
    elif op == "gte":
        result = column >= when
    elif op == "lt":
        result = column < when
    elif op == "lte":
        result = column <= when
    elif op == "neq":
        result = not_(column == when)
    else:
        result = column == when
    return result


__all__ = ["STATUSES", "ByteRange", "Caller", "Download", "Filters", "ImageRuntime",
           "ImageService", "Page", "PatchOp"]
