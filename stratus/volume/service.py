"""Block storage's domain layer: the process-wide runtime and the per-transaction service.

``VolumeService`` holds the operations that live inside one transaction (reads, the state
changes the API makes); ``VolumeRuntime`` the ones that span a transaction and the bus (a
row is committed before the manager is told about it, so the manager always finds it).
Status changes that two requests may race for are conditional UPDATEs (``_transition``):
the database decides which one wins, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.bus import MessagingError, RemoteError
from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.core.db import Database, utcnow
from stratus.core.exceptions import BadRequest, Conflict, NotFound, ServiceUnavailable
from stratus.core.policy import Enforcer
from stratus.volume import states
from stratus.volume.migrations import HEAD
from stratus.volume.models import (
    Attachment,
    ServiceRecord,
    Snapshot,
    Volume,
    VolumeType,
)
from stratus.volume.policy import RULES
from stratus.volume.quotas import QuotaManager, project_lock
from stratus.volume.rpcapi import VolumeManagerAPI

LOG = logging.getLogger(__name__)

SCRIPT_LOCATION = "stratus.volume:migrations"
VERSION_TABLE = "alembic_version_volume"
GIB = 1 << 30


def is_up(last_seen_up: dt.datetime, down_after: float) -> bool:
    return (utcnow() - last_seen_up).total_seconds() <= down_after


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


class VolumeRuntime:
    """What volume-api and volume-managers keep for the life of the process."""

    def __init__(self, settings: Settings, db: Database | None = None,
                 manager_api: VolumeManagerAPI | None = None) -> None:
        self.settings = settings
        self.options = settings.volume
        self.db = db or Database(settings.database_url_for("volume",
                                                           settings.volume.database_url))
        self.enforcer = Enforcer(RULES, settings.policy_file)
        self.manager_api = manager_api

    async def start(self) -> None:
        """Bring the schema to head and make the default volume type on a new database."""
        await self.db.upgrade(SCRIPT_LOCATION, VERSION_TABLE, known_head=HEAD)
        async with self.service() as svc:
            await svc.ensure_default_type()

    async def stop(self) -> None:
        await self.db.dispose()

    @asynccontextmanager
    async def service(self) -> AsyncIterator[VolumeService]:
        async with self.db.session() as session:
            yield VolumeService(self, session)

    def _managers(self) -> VolumeManagerAPI:
        if self.manager_api is None:
            raise RuntimeError("this process has no bus client of the volume-managers")
        return self.manager_api

    # Operations that end with a message to a manager -----------------------------------

    async def create_volume(self, ctx: RequestContext, request: NewVolume) -> Volume:
        """Check, count against the quota and record the volume, then have its host make
        it. No host up → the volume is ``error`` at once (it never waits in creating)."""
        assert ctx.project_id is not None
        async with project_lock(ctx.project_id), self.service() as svc:
            await svc.quotas.lock(ctx.project_id)
            volume = await svc.new_volume(ctx, request)
        if volume.host is None:
            return volume
        try:
            await self._managers().create_volume(ctx, volume.host, volume.id)
        except MessagingError as exc:
            LOG.error("volume %s: the volume-manager is unreachable: %s", volume.id, exc)
            async with self.service() as svc:
                await svc.set_volume_status(volume.id, states.ERROR,
                                            reason="volume-manager unreachable")
                volume = await svc.get_volume(volume.id)
        return volume

    async def delete_volume(self, ctx: RequestContext, volume_id: str,
                            project_id: str | None, *, cascade: bool = False,
                            force: bool = False) -> None:
        async with self.service() as svc:
            volume = await svc.get_volume(volume_id, project_id)
            snapshots = await svc.live_snapshots(volume.id)
            if snapshots and not cascade:
                raise BadRequest(f"Invalid volume: Volume {volume.id} still has "
                                 f"{len(snapshots)} dependent snapshots.")
            allowed = states.ALL if force else states.DELETABLE
            if not await svc.transition(volume.id, allowed, states.DELETING,
                                        attach_status=None if force else states.DETACHED):
                current = await svc.get_volume(volume.id)
                if current.attach_status != states.DETACHED or current.status == states.IN_USE:
                    raise BadRequest(f"Invalid volume: Volume {volume.id} is attached; "
                                     "detach it before deleting it.")
                raise BadRequest(f"Invalid volume: Volume status must be available or "
                                 f"error or error_restoring or error_extending or "
                                 f"error_managing and must not be migrating, attached, "
                                 f"belong to a group, have snapshots, awaiting a transfer, "
                                 f"or be disassociated from snapshots after volume "
                                 f"transfer (status {current.status}).")
            for snapshot in snapshots:
                snapshot.status = states.DELETING
            host = volume.host
            snapshot_ids = [s.id for s in snapshots]
        if host is None:  # never reached a backend: nothing to remove
            async with self.service() as svc:
                await svc.mark_volume_deleted(volume_id)
            return
        for snapshot_id in snapshot_ids:
            await self._managers().delete_snapshot(ctx, host, snapshot_id)
        await self._managers().delete_volume(ctx, host, volume_id)

    async def extend_volume(self, ctx: RequestContext, volume_id: str,
                            project_id: str | None, new_size: int) -> None:
        async with self.service() as svc:
            volume = await svc.get_volume(volume_id, project_id)
        async with project_lock(volume.project_id), self.service() as svc:
            await svc.quotas.lock(volume.project_id)
            volume = await svc.get_volume(volume_id, project_id)
            if volume.status != states.AVAILABLE:
                raise BadRequest(f"Invalid volume: Volume status must be 'available' to "
                                 f"extend, currently in '{volume.status}'.")
            if new_size <= volume.size:
                raise BadRequest(f"Invalid input received: New size for extend must be "
                                 f"greater than current size. (current: {volume.size}, "
                                 f"extended: {new_size}).")
            await svc.quotas.check(volume.project_id, gigabytes=new_size - volume.size,
                                   volume_size=new_size)
            old_size = volume.size
            if not await svc.transition(volume.id, (states.AVAILABLE,), states.EXTENDING):
                raise BadRequest("Invalid volume: the volume changed state; try again.")
            # The new size counts against the quota from now; a failed extend gives it back.
            volume.size = new_size
            host = volume.host
        assert host is not None
        await self._managers().extend_volume(ctx, host, volume_id, new_size, old_size)

    async def create_snapshot(self, ctx: RequestContext, volume_id: str, *,
                              name: str | None, description: str | None,
                              metadata: dict[str, str], force: bool) -> Snapshot:
        assert ctx.project_id is not None
        async with project_lock(ctx.project_id), self.service() as svc:
            await svc.quotas.lock(ctx.project_id)
            volume = await svc.get_volume(volume_id, ctx.project_id if not ctx.is_admin
                                          else None)
            allowed = (states.AVAILABLE, states.IN_USE) if force else (states.AVAILABLE,)
            if volume.status not in allowed:
                raise BadRequest(f"Invalid volume: Volume {volume.id} status must be "
                                 f"available, but current status is: {volume.status}.")
            await svc.quotas.check(ctx.project_id, snapshots=1, gigabytes=volume.size)
            snapshot = Snapshot(id=str(uuid.uuid4()), project_id=ctx.project_id,
                                user_id=ctx.user_id, volume_id=volume.id, name=name,
                                description=description, size=volume.size,
                                status=states.CREATING, metadata_=dict(metadata))
            svc.session.add(snapshot)
            await svc.session.flush()
            host = volume.host
        assert host is not None
        await self._managers().create_snapshot(ctx, host, snapshot.id)
        return snapshot

    async def delete_snapshot(self, ctx: RequestContext, snapshot_id: str,
                              project_id: str | None) -> None:
        async with self.service() as svc:
            snapshot = await svc.get_snapshot(snapshot_id, project_id)
            if snapshot.status not in (states.AVAILABLE, states.ERROR):
                raise BadRequest(f"Invalid snapshot: Volume Snapshot status must be "
                                 f"available or error, currently {snapshot.status}.")
            if await svc.session.scalar(select(func.count()).select_from(Volume).where(
                    Volume.snapshot_id == snapshot.id, Volume.deleted_at.is_(None),
                    Volume.status == states.CREATING)):
                raise BadRequest("Invalid snapshot: a volume is being created from it.")
            snapshot.status = states.DELETING
            volume = await svc.get_volume(snapshot.volume_id, include_deleted=True)
            host = volume.host
        assert host is not None
        await self._managers().delete_snapshot(ctx, host, snapshot_id)

    async def update_attachment(self, ctx: RequestContext, attachment_id: str,
                                project_id: str | None,
                                connector: dict[str, Any]) -> Attachment:
        """Give the attachment a connector: the volume's host works out the connection
        info; the attachment (and volume) are then ``attaching``."""
        async with self.service() as svc:
            attachment = await svc.get_attachment(attachment_id, project_id)
            if attachment.attach_status not in (states.ATTACHMENT_RESERVED,
                                                states.ATTACHMENT_ATTACHING,
                                                states.ATTACHMENT_ATTACHED):
                raise BadRequest(f"Invalid attachment: status {attachment.attach_status}.")
            volume = await svc.get_volume(attachment.volume_id)
            host = volume.host
        assert host is not None
        try:
            info = await self._managers().initialize_connection(ctx, host, volume.id,
                                                                connector)
        except RemoteError as exc:
            raise BadRequest(f"Invalid volume: {exc.message}") from exc
        except MessagingError as exc:
            raise ServiceUnavailable(f"The volume's host {host} is unreachable.") from exc
        async with self.service() as svc:
            attachment = await svc.get_attachment(attachment_id, project_id)
            if attachment.deleted_at is not None:
                raise NotFound(f"Attachment {attachment_id} could not be found.")
            attachment.connector = connector
            attachment.connection_info = {**info, "attachment_id": attachment.id}
            attachment.attached_host = connector.get("host")
            # Nova names the guest device in the connector; the volume shows it as "device".
            attachment.mountpoint = connector.get("mountpoint") or attachment.mountpoint
            attachment.attach_mode = str(connector.get("mode") or attachment.attach_mode)
            if attachment.attach_status == states.ATTACHMENT_RESERVED:
                attachment.attach_status = states.ATTACHMENT_ATTACHING
                await svc.transition(attachment.volume_id, (states.RESERVED,),
                                     states.ATTACHING)
            await svc.session.flush()
            return attachment


class VolumeService:
    """Block storage's operations within one database transaction."""

    def __init__(self, runtime: VolumeRuntime, session: AsyncSession) -> None:
        self.runtime = runtime
        self.session = session
        self.options = runtime.options
        self.quotas = QuotaManager(session, runtime.options)

    # Volume types --------------------------------------------------------------------------

    async def ensure_default_type(self) -> VolumeType:
        name = self.options.default_volume_type
        existing = await self.session.scalar(select(VolumeType).where(
            VolumeType.name == name, VolumeType.deleted_at.is_(None)))
        if existing is not None:
            return existing
        vtype = VolumeType(id=str(uuid.uuid4()), name=name,
                           description="Default Volume Type", is_public=True, extra_specs={})
        self.session.add(vtype)
        await self.session.flush()
        return vtype

    async def list_types(self, *, admin: bool) -> list[VolumeType]:
        query = select(VolumeType).where(VolumeType.deleted_at.is_(None)).order_by(
            VolumeType.created_at, VolumeType.name)
        if not admin:
            query = query.where(VolumeType.is_public.is_(True))
        return list(await self.session.scalars(query))

    async def get_type(self, ref: str) -> VolumeType:
        """A type by id, else by name."""
        vtype = await self.session.get(VolumeType, ref)
        if vtype is None or vtype.deleted_at is not None:
            vtype = await self.session.scalar(select(VolumeType).where(
                VolumeType.name == ref, VolumeType.deleted_at.is_(None)))
        if vtype is None:
            raise NotFound(f"Volume type {ref} could not be found.")
        return vtype

    async def create_type(self, *, name: str, description: str | None, is_public: bool,
                          extra_specs: dict[str, str]) -> VolumeType:
        if await self.session.scalar(select(VolumeType).where(
                VolumeType.name == name, VolumeType.deleted_at.is_(None))) is not None:
            raise Conflict(f"Volume Type {name} already exists.")
        vtype = VolumeType(id=str(uuid.uuid4()), name=name, description=description,
                           is_public=is_public, extra_specs=dict(extra_specs))
        self.session.add(vtype)
        await self.session.flush()
        return vtype

    async def delete_type(self, ref: str) -> None:
        vtype = await self.get_type(ref)
        if vtype.name == self.options.default_volume_type:
            raise BadRequest("Default volume type can not be deleted.")
        if await self.session.scalar(select(func.count()).select_from(Volume).where(
                Volume.volume_type_id == vtype.id, Volume.deleted_at.is_(None))):
            raise BadRequest(f"Target volume type is still in use: {vtype.id}.")
        # Keep the row (volumes deleted long ago still name it) but free the name.
        vtype.deleted_at = utcnow()
        vtype.name = f"{vtype.name}.deleted-{vtype.id}"
        await self.session.flush()

    async def types_by_id(self, ids: Iterable[str | None]) -> dict[str, VolumeType]:
        wanted = {i for i in ids if i}
        if not wanted:
            return {}
        rows = await self.session.scalars(select(VolumeType).where(VolumeType.id.in_(wanted)))
        return {row.id: row for row in rows}

    # Hosts ---------------------------------------------------------------------------------

    async def up_hosts(self) -> list[ServiceRecord]:
        rows = await self.session.scalars(select(ServiceRecord).where(
            ServiceRecord.disabled.is_(False)))
        return [r for r in rows if is_up(r.last_seen_up, self.options.service_down_time)]

    async def list_services(self) -> list[ServiceRecord]:
        return list(await self.session.scalars(select(ServiceRecord).order_by(
            ServiceRecord.host)))

    async def report(self, host: str, backend: str, availability_zone: str) -> None:
        row = await self.session.get(ServiceRecord, host)
        if row is None:
            self.session.add(ServiceRecord(host=host, backend=backend,
                                           availability_zone=availability_zone))
        else:
            row.last_seen_up = utcnow()
            row.backend = backend
            row.availability_zone = availability_zone
        await self.session.flush()

    # Volumes -------------------------------------------------------------------------------

    async def get_volume(self, volume_id: str, project_id: str | None = None, *,
                         include_deleted: bool = False) -> Volume:
        """The volume; ``project_id`` None means any project (admin)."""
        volume = await self.session.get(Volume, volume_id, populate_existing=True)
        if (volume is None or (volume.deleted_at is not None and not include_deleted)
                or (project_id is not None and volume.project_id != project_id)):
            raise NotFound(f"Volume {volume_id} could not be found.")
        return volume

    async def new_volume(self, ctx: RequestContext, request: NewVolume) -> Volume:
        """Validate and insert (status ``creating``); call under the project's quota lock."""
        assert ctx.project_id is not None
        project = None if ctx.is_admin else ctx.project_id
        size = request.size
        host: str | None = None
        source: Volume | None = None
        snapshot: Snapshot | None = None
        if request.snapshot_id is not None:
            try:
                snapshot = await self.get_snapshot(request.snapshot_id, project)
            except NotFound as exc:
                raise NotFound(f"Snapshot {request.snapshot_id} could not be found.") from exc
            if snapshot.status != states.AVAILABLE:
                raise BadRequest(f"Invalid snapshot: Originating snapshot status must be "
                                 f"one of 'available' values (is {snapshot.status}).")
            size = snapshot.size if size is None else size
            if size < snapshot.size:
                raise BadRequest(f"Invalid input received: Volume size '{size}'GB cannot be "
                                 f"smaller than the snapshot size {snapshot.size}GB.")
            host = (await self.get_volume(snapshot.volume_id, include_deleted=True)).host
        if request.source_volid is not None:
            source = await self.get_volume(request.source_volid, project)
            if source.status not in (states.AVAILABLE, states.IN_USE):
                raise BadRequest(f"Invalid volume: Volume {source.id} status must be "
                                 f"available or in-use (is {source.status}).")
            size = source.size if size is None else size
            if size < source.size:
                raise BadRequest(f"Invalid input received: Volume size '{size}'GB cannot be "
                                 f"smaller than the source volume size {source.size}GB.")
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
                vtype = await self.get_type(request.volume_type)
            except NotFound as exc:
                raise NotFound(f"Volume type with name {request.volume_type} could not "
                               "be found.") from exc
        else:
            vtype = await self.ensure_default_type()
        await self.quotas.check(ctx.project_id, volumes=1, gigabytes=size, volume_size=size)
        status = states.CREATING
        if host is None and snapshot is None and source is None:
            hosts = await self.up_hosts()
            if hosts:
                host = random.choice(hosts).host
        if host is None:
            LOG.error("volume create: no volume-manager is up to hold the volume")
            status = states.ERROR
        volume = Volume(
            id=str(uuid.uuid4()), project_id=ctx.project_id, user_id=ctx.user_id,
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

    async def list_volumes(self, project_id: str | None, *, filters: dict[str, Any],
                           sort: list[tuple[str, str]], limit: int | None,
                           marker: str | None, offset: int = 0) -> list[Volume]:
        query = select(Volume).where(Volume.deleted_at.is_(None))
        if project_id is not None:
            query = query.where(Volume.project_id == project_id)
        metadata = filters.pop("metadata", None)
        for key, value in filters.items():
            column = getattr(Volume, key)
            query = query.where(column == value)
        order = []
        for key, direction in sort or [("created_at", "desc")]:
            column = getattr(Volume, key)
            order.append(column.desc() if direction == "desc" else column.asc())
        order.append(Volume.id.desc() if (sort or [("", "desc")])[-1][1] == "desc"
                     else Volume.id.asc())
        rows = list(await self.session.scalars(query.order_by(*order)))
        if metadata:
            rows = [v for v in rows if all((v.metadata_ or {}).get(k) == str(val)
                                           for k, val in metadata.items())]
        if marker is not None:
            ids = [v.id for v in rows]
            if marker not in ids:
                raise BadRequest(f"Invalid input received: marker [{marker}] not found.")
            rows = rows[ids.index(marker) + 1:]
        rows = rows[offset:]
        return rows if limit is None else rows[:limit]

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

    async def set_volume_status(self, volume_id: str, status: str, *,
                                reason: str | None = None) -> None:
        volume = await self.get_volume(volume_id, include_deleted=True)
        volume.status = status
        if reason is not None:
            volume.error_reason = reason
        await self.session.flush()

    async def mark_volume_deleted(self, volume_id: str) -> None:
        volume = await self.get_volume(volume_id, include_deleted=True)
        volume.status = states.DELETED
        volume.deleted_at = volume.deleted_at or utcnow()
        await self.session.flush()

    # Snapshots -----------------------------------------------------------------------------

    async def get_snapshot(self, snapshot_id: str, project_id: str | None = None, *,
                           include_deleted: bool = False) -> Snapshot:
        snapshot = await self.session.get(Snapshot, snapshot_id, populate_existing=True)
        if (snapshot is None or (snapshot.deleted_at is not None and not include_deleted)
                or (project_id is not None and snapshot.project_id != project_id)):
            raise NotFound(f"Snapshot {snapshot_id} could not be found.")
        return snapshot

    async def live_snapshots(self, volume_id: str) -> list[Snapshot]:
        return list(await self.session.scalars(select(Snapshot).where(
            Snapshot.volume_id == volume_id, Snapshot.deleted_at.is_(None))))

    async def list_snapshots(self, project_id: str | None, *, filters: dict[str, Any],
                             limit: int | None, marker: str | None) -> list[Snapshot]:
        query = select(Snapshot).where(Snapshot.deleted_at.is_(None))
        if project_id is not None:
            query = query.where(Snapshot.project_id == project_id)
        for key, value in filters.items():
            query = query.where(getattr(Snapshot, key) == value)
        rows = list(await self.session.scalars(query.order_by(Snapshot.created_at.desc(),
                                                               Snapshot.id.desc())))
        if marker is not None:
            ids = [s.id for s in rows]
            if marker not in ids:
                raise BadRequest(f"Invalid input received: marker [{marker}] not found.")
            rows = rows[ids.index(marker) + 1:]
        return rows if limit is None else rows[:limit]

    # Attachments ---------------------------------------------------------------------------

    async def get_attachment(self, attachment_id: str, project_id: str | None = None
                             ) -> Attachment:
        attachment = await self.session.get(Attachment, attachment_id, populate_existing=True)
        if attachment is None or attachment.deleted_at is not None:
            raise NotFound(f"Attachment {attachment_id} could not be found.")
        if project_id is not None:
            volume = await self.session.get(Volume, attachment.volume_id)
            if volume is None or volume.project_id != project_id:
                raise NotFound(f"Attachment {attachment_id} could not be found.")
        return attachment

    async def live_attachments(self, volume_ids: Iterable[str]) -> dict[str, list[Attachment]]:
        ids = list(volume_ids)
        found: dict[str, list[Attachment]] = {i: [] for i in ids}
        if not ids:
            return found
        for row in await self.session.scalars(select(Attachment).where(
                Attachment.volume_id.in_(ids), Attachment.deleted_at.is_(None)).order_by(
                Attachment.created_at)):
            found[row.volume_id].append(row)
        return found

    async def list_attachments(self, project_id: str | None, *,
                               volume_id: str | None = None,
                               instance_id: str | None = None) -> list[Attachment]:
        query = select(Attachment).join(Volume, Volume.id == Attachment.volume_id).where(
            Attachment.deleted_at.is_(None))
        if project_id is not None:
            query = query.where(Volume.project_id == project_id)
        if volume_id is not None:
            query = query.where(Attachment.volume_id == volume_id)
        if instance_id is not None:
            query = query.where(Attachment.instance_uuid == instance_id)
        return list(await self.session.scalars(query.order_by(Attachment.created_at)))

    async def create_attachment(self, volume_id: str, project_id: str | None, *,
                                instance_uuid: str | None, mode: str = "rw") -> Attachment:
        """Reserve the volume for the instance. Of two racing reservations of a volume that
        is not multiattach, exactly one succeeds; the other is a 400."""
        volume = await self.get_volume(volume_id, project_id)
        allowed = [states.AVAILABLE]
        if volume.multiattach:
            allowed += [states.IN_USE, states.RESERVED, states.ATTACHING]
        if instance_uuid is not None and volume.multiattach:
            for existing in (await self.live_attachments([volume.id]))[volume.id]:
                if existing.instance_uuid == instance_uuid:
                    raise BadRequest(f"Invalid volume: Volume {volume.id} is already "
                                     f"attached to instance {instance_uuid}.")
        # A multiattach volume keeps ``in-use`` while another attachment holds it.
        new_status = (volume.status if volume.status == states.IN_USE else states.RESERVED)
        if not await self.transition(volume.id, allowed, new_status):
            current = await self.get_volume(volume.id)
            raise BadRequest(f"Invalid volume: Volume {volume.id} status must be available "
                             f"or downloading to reserve, but the current status is "
                             f"{current.status}.")
        attachment = Attachment(id=str(uuid.uuid4()), volume_id=volume.id,
                                instance_uuid=instance_uuid, attach_mode=mode,
                                attach_status=states.ATTACHMENT_RESERVED)
        self.session.add(attachment)
        await self.session.flush()
        return attachment

    async def complete_attachment(self, attachment_id: str, project_id: str | None) -> None:
        attachment = await self.get_attachment(attachment_id, project_id)
        if attachment.attach_status == states.ATTACHMENT_ATTACHED:
            return
        if attachment.attach_status != states.ATTACHMENT_ATTACHING:
            raise BadRequest(f"Invalid attachment: it has no connector yet (status "
                             f"{attachment.attach_status}).")
        attachment.attach_status = states.ATTACHMENT_ATTACHED
        attachment.attach_time = utcnow()
        volume = await self.get_volume(attachment.volume_id)
        volume.status = states.IN_USE
        volume.attach_status = states.ATTACHED
        await self.session.flush()

    async def delete_attachment(self, attachment_id: str,
                                project_id: str | None) -> list[Attachment]:
        """Detach; the volume is ``available`` again once no attachment holds it. Returns
        the volume's remaining attachments."""
        attachment = await self.get_attachment(attachment_id, project_id)
        attachment.attach_status = states.ATTACHMENT_DETACHED
        attachment.detach_time = utcnow()
        attachment.deleted_at = utcnow()
        await self.session.flush()
        remaining = (await self.live_attachments([attachment.volume_id]))[attachment.volume_id]
        volume = await self.get_volume(attachment.volume_id)
        if not remaining:
            volume.status = states.AVAILABLE
            volume.attach_status = states.DETACHED
        elif not any(a.attach_status == states.ATTACHMENT_ATTACHED for a in remaining):
            volume.status = states.RESERVED
            volume.attach_status = states.DETACHED
        await self.session.flush()
        return remaining
