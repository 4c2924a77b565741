"""Volumes of one transaction: read, list, validate and insert new ones, and the row edits
the API makes (rename, metadata, flags, reset-status).

Status changes that two requests may race for are conditional UPDATEs (``transition``): the
database decides which one wins, on SQLite and PostgreSQL alike. Creating a volume counts
against the project's quota; call ``new`` under the project's quota lock.
"""

from __future__ import annotations

import logging
import math
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.config import VolumeSettings
from stratus.core.context import RequestContext
from stratus.core.db import utcnow
from stratus.core.db.paging import SortKey
from stratus.core.exceptions import BadRequest, NotFound
from stratus.volume import states
from stratus.volume.hosts import Hosts, able_to_write
from stratus.volume.lookup import get_owned
from stratus.volume.metadata import Metadata
from stratus.volume.models import Snapshot, Volume
from stratus.volume.queries import ListQuery, count, page_of
from stratus.volume.quotas import Quotas
from stratus.volume.snapshots import Snapshots
from stratus.volume.types import Types

LOG = logging.getLogger(__name__)

GIB = 1 << 30


@dataclass
class NewVolume:
    """A create request, already validated for shape by the API."""

    size: int | None
    name: str | None = None
    description: str | None = None
    volume_type: str | None = None
    availability_zone: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    snapshot_id: str | None = None
    source_volid: str | None = None
    #: The image as the image service showed it to the caller (``imageRef``), if any.
    image: dict[str, Any] | None = None
    multiattach: bool = False


#: ``GET /volumes`` sort keys → columns.
SORT_COLUMNS = {key: getattr(Volume, key) for key in (
    "id", "name", "status", "size", "created_at", "updated_at", "availability_zone",
    "bootable")}
DEFAULT_SORT = (SortKey("created_at", "desc"),)


class Volumes:
    """Volumes within one transaction."""

    def __init__(self, session: AsyncSession, options: VolumeSettings, *, types: Types,
                 snapshots: Snapshots, hosts: Hosts, quotas: Quotas) -> None:
        self.session = session
        self.options = options
        self.types = types
        self.snapshots = snapshots
        self.hosts = hosts
        self.quotas = quotas

    async def get(self, volume_id: str, project_id: str | None = None, *,
                  include_deleted: bool = False) -> Volume:
        """The volume; ``project_id`` None means any project (admin)."""
        return await get_owned(self.session, Volume, volume_id, project_id,
                               include_deleted=include_deleted)

    async def get_visible(self, ctx: RequestContext, volume_id: str) -> Volume:
        """The volume as the caller may see it (an admin any project's); a malformed id is
        ``NotFound`` too."""
        try:
            uuid.UUID(volume_id)
        except ValueError:
            raise NotFound(f"Volume {volume_id} could not be found.") from None
        return await self.get(volume_id, None if ctx.is_admin else ctx.project_id)

    async def new(self, ctx: RequestContext, request: NewVolume) -> Volume:
        """Validate and insert (status ``creating``); call under the project's quota lock."""
        project_id = ctx.require_project()
        project = None if ctx.is_admin else project_id
        size = request.size
        host: str | None = None
        source: Volume | None = None
        snapshot: Snapshot | None = None
        if request.snapshot_id is not None:
            try:
                snapshot = await self.snapshots.get(request.snapshot_id, project)
            except NotFound as exc:
                raise NotFound(f"Snapshot {request.snapshot_id} could not be found.") from exc
            if snapshot.status != states.AVAILABLE:
                raise BadRequest(f"Invalid snapshot: Originating snapshot status must be "
                                 f"one of 'available' values (is {snapshot.status}).")
            size = _size_at_least(size, snapshot.size, "snapshot size")
            host = (await self.get(snapshot.volume_id, include_deleted=True)).host
        if request.source_volid is not None:
            source = await self.get(request.source_volid, project)
            if source.status not in (states.AVAILABLE, states.IN_USE):
                raise BadRequest(f"Invalid volume: Volume {source.id} status must be "
                                 f"available or in-use (is {source.status}).")
            size = _size_at_least(size, source.size, "source volume size")
            host = source.host
        if request.image is not None:
            image = request.image
            needed = max(int(image.get("min_disk") or 0),
                         math.ceil(int(image.get("virtual_size") or image.get("size") or 0)
                                   / GIB))
            if size is None:
                size = max(needed, 1)
            if size < needed:
                raise BadRequest(f"Invalid input received: Size of specified image "
                                 f"{math.ceil(int(image.get('size') or 0) / GIB)}GB is "
                                 f"larger than volume size {size}GB (the image needs "
                                 f"{needed}GB).")
        if size is None:
            raise BadRequest("Invalid input received: size is required unless a snapshot, "
                             "source volume or image gives one.")
        if size < 1:
            raise BadRequest(f"Invalid input received: Volume size '{size}' must be an "
                             "integer and greater than 0.")
        zone = request.availability_zone or self.options.availability_zone
        if zone != self.options.availability_zone:
            raise BadRequest(f"Invalid input received: Availability zone '{zone}' is "
                             "invalid.")
        if request.volume_type is not None:
            try:
                vtype = await self.types.get(request.volume_type)
            except NotFound as exc:
                raise NotFound(f"Volume type with name {request.volume_type} could not "
                               "be found.") from exc
        else:
            vtype = await self.types.ensure_default()
        await self.quotas.check(project_id, volumes=1, gigabytes=size, volume_size=size)
        status = states.CREATING
        if host is None and snapshot is None and source is None:
            hosts = await self.hosts.up()
            if request.image is not None:  # only to a host that can write its format
                hosts = able_to_write(hosts, str(request.image.get("disk_format") or "raw"))
            if hosts:
                host = random.choice(hosts).host
        if host is None:
            LOG.error("volume create: no volume-manager is up to hold the volume")
            status = states.ERROR
        volume = Volume(
            id=str(uuid.uuid4()), project_id=project_id, user_id=ctx.user_id,
            name=request.name, description=request.description, size=size, status=status,
            attach_status=states.DETACHED, availability_zone=zone, host=host,
            volume_type_id=vtype.id, snapshot_id=request.snapshot_id,
            source_volid=request.source_volid,
            image_id=request.image["id"] if request.image else None,
            bootable=bool(source.bootable) if source else False,
            multiattach=request.multiattach or vtype.extra_specs.get("multiattach") in (
                "<is> True", "True", "true"),
            metadata_=dict(request.metadata), image_metadata={},
            error_reason=None if host else "no volume-manager up")
        self.session.add(volume)
        await self.session.flush()
        return volume

    def _listed(self, q: ListQuery) -> Select[Any]:
        query = select(Volume).where(Volume.deleted_at.is_(None))
        if q.project_id is not None:
            query = query.where(Volume.project_id == q.project_id)
        for key, value in q.filters.items():
            query = query.where(getattr(Volume, key) == value)
        for key, value in (q.metadata or {}).items():
            query = query.where(Volume.metadata_[key].as_string() == str(value))
        return query

    async def list_page(self, q: ListQuery) -> tuple[list[Volume], bool]:
        """The page of volumes ``q`` asks for, in SQL, and whether more follow."""
        return await page_of(self.session, self._listed(q), q, sort_columns=SORT_COLUMNS,
                             default=DEFAULT_SORT, id_column=Volume.id)

    async def count(self, q: ListQuery) -> int:
        """How many volumes ``q`` matches, all pages together."""
        return await count(self.session, self._listed(q))

    async def transition(self, volume_id: str, allowed: Iterable[str], new_status: str, *,
                         attach_status: str | None = None, **values: Any) -> bool:
        """Set the status only if the volume is (still) in one of ``allowed`` (and, if
        given, has ``attach_status``): one conditional UPDATE, so of two racing requests
        exactly one wins. True when it did."""
        query = update(Volume).where(Volume.id == volume_id, Volume.deleted_at.is_(None),
                                     Volume.status.in_(list(allowed)))
        if attach_status is not None:
            query = query.where(Volume.attach_status == attach_status)
        result = await self.session.execute(
            query.values(status=new_status, updated_at=utcnow(), **values)
            .execution_options(synchronize_session=False))
        rowcount: int = getattr(result, "rowcount", 0)
        return rowcount == 1

    async def set_status(self, volume_id: str, status: str, *,
                         reason: str | None = None) -> None:
        volume = await self.get(volume_id, include_deleted=True)
        volume.status = status
        if reason is not None:
            volume.error_reason = reason
        await self.session.flush()

    async def mark_deleted(self, volume_id: str) -> None:
        volume = await self.get(volume_id, include_deleted=True)
        volume.status = states.DELETED
        volume.deleted_at = volume.deleted_at or utcnow()
        await self.session.flush()

    # The row edits of the API ------------------------------------------------------------

    async def update(self, volume: Volume, changes: dict[str, Any]) -> Volume:
        """Set ``name``, ``description`` and/or ``metadata`` (the keys given)."""
        if not changes:
            raise BadRequest("Invalid input received: Missing required element 'volume' in "
                             "request body or nothing to update.")
        for key in ("name", "description"):
            if key in changes:
                setattr(volume, key, changes[key])
        if changes.get("metadata") is not None:
            volume.metadata_ = dict(changes["metadata"])
        await self.session.flush()
        return volume

    async def set_metadata(self, volume: Volume, metadata: dict[str, str], *,
                           replace: bool) -> dict[str, str]:
        """Merge ``metadata`` into the volume's (or replace it); the result."""
        return await Metadata(self.session).set_all(volume, metadata, replace=replace)

    @staticmethod
    def meta_item(volume: Volume, key: str) -> str:
        return Metadata.item(volume, key)

    async def set_meta_item(self, volume: Volume, key: str, meta: dict[str, str]) -> None:
        await Metadata(self.session).set_item(volume, key, meta)

    async def delete_meta_item(self, volume: Volume, key: str) -> None:
        await Metadata(self.session).delete_item(volume, key)

    async def set_flags(self, volume_id: str, project_id: str | None, *,
                        bootable: bool | None = None, readonly: bool | None = None) -> None:
        """``os-set_bootable`` and ``os-update_readonly_flag``."""
        volume = await self.get(volume_id, project_id)
        if bootable is not None:
            volume.bootable = bootable
        if readonly is not None:
            volume.readonly = readonly
            volume.admin_metadata = {**(volume.admin_metadata or {}),
                                     "readonly": str(readonly)}
        await self.session.flush()

    async def reset_status(self, volume_id: str, *, status: str | None,
                           attach_status: str | None) -> None:
        """``os-reset_status`` (an admin's repair): set whatever is given, unchecked."""
        volume = await self.get(volume_id)
        if status is not None:
            volume.status = status
        if attach_status is not None:
            volume.attach_status = attach_status
        await self.session.flush()


def _size_at_least(size: int | None, minimum: int, what: str) -> int:
    """The size asked for (``minimum`` when none was), refused when below ``minimum``."""
    if size is None:
        return minimum
    if size < minimum:
        raise BadRequest(f"Invalid input received: Volume size '{size}'GB cannot be smaller "
                         f"than the {what} {minimum}GB.")
    return size
