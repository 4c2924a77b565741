"""Attachments of one transaction: reserve a volume for an instance, record its connection,
complete, detach.

create (reserve) → ``connect`` with the connection info the volume's host worked out (the
attachment and volume are ``attaching``) → ``complete`` (``in-use``) → ``delete`` (the
volume is ``available`` again once no attachment holds it). Of two racing reservations of a
volume that is not multiattach, exactly one succeeds (``Volumes.transition``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.db import utcnow
from stratus.core.db.paging import SortKey
from stratus.core.exceptions import BadRequest, NotFound
from stratus.volume import states
from stratus.volume.models import Attachment, Volume
from stratus.volume.queries import ListQuery, page_of
from stratus.volume.volumes import Volumes

#: What an attachment list may be sorted by; oldest first unless asked otherwise.
SORT_COLUMNS = {key: getattr(Attachment, key) for key in (
    "id", "volume_id", "instance_uuid", "attach_status", "created_at")}
DEFAULT_SORT = (SortKey("created_at", "asc"),)


class Attachments:
    """Attachments within one transaction."""

    def __init__(self, session: AsyncSession, volumes: Volumes) -> None:
        self.session = session
        self.volumes = volumes

    async def get(self, attachment_id: str, project_id: str | None = None
                             ) -> Attachment:
        attachment = await self.session.get(Attachment, attachment_id, populate_existing=True)
        if attachment is None or attachment.deleted_at is not None:
            raise NotFound(f"Attachment {attachment_id} could not be found.")
        if project_id is not None:
            volume = await self.session.get(Volume, attachment.volume_id)
            if volume is None or volume.project_id != project_id:
                raise NotFound(f"Attachment {attachment_id} could not be found.")
        return attachment

    async def live(self, volume_ids: Iterable[str]) -> dict[str, list[Attachment]]:
        ids = list(volume_ids)
        found: dict[str, list[Attachment]] = {i: [] for i in ids}
        if not ids:
            return found
        for row in await self.session.scalars(select(Attachment).where(
                Attachment.volume_id.in_(ids), Attachment.deleted_at.is_(None)).order_by(
                Attachment.created_at)):
            found[row.volume_id].append(row)
        return found

    async def list_page(self, q: ListQuery, *, volume_id: str | None = None,
                        instance_ids: Sequence[str] | None = None,
                        ) -> tuple[list[Attachment], bool]:
        """The page of live attachments ``q`` asks for (of ``q.project_id``'s volumes, or of
        every project's when None), narrowed to one volume or to the instances
        ``instance_ids`` (any of them), in SQL."""
        query = select(Attachment).join(Volume, Volume.id == Attachment.volume_id).where(
            Attachment.deleted_at.is_(None))
        if q.project_id is not None:
            query = query.where(Volume.project_id == q.project_id)
        if volume_id is not None:
            query = query.where(Attachment.volume_id == volume_id)
        if instance_ids:
            query = query.where(Attachment.instance_uuid.in_(instance_ids))
        return await page_of(self.session, query, q, sort_columns=SORT_COLUMNS,
                             default=DEFAULT_SORT, id_column=Attachment.id)

    async def create(self, volume_id: str, project_id: str | None, *,
                                instance_uuid: str | None, mode: str = "rw") -> Attachment:
        """Reserve the volume for the instance. Of two racing reservations of a volume that
        is not multiattach, exactly one succeeds; the other is a 400. A volume held only by
        the same instance may be reserved for it again (as Cinder allows): a server moving
        to another host holds one attachment on each until the move is settled."""
        volume = await self.volumes.get(volume_id, project_id)
        allowed = [states.AVAILABLE]
        if volume.multiattach:
            allowed += [states.IN_USE, states.RESERVED, states.ATTACHING]
        # A volume in use keeps ``in-use`` while another attachment holds it.
        new_status = (volume.status if volume.status == states.IN_USE else states.RESERVED)
        if not await self.volumes.transition(volume.id, allowed, new_status) \
                and not await self._held_only_by(volume.id, instance_uuid):
            current = await self.volumes.get(volume.id)
            raise BadRequest(f"Invalid volume: Volume {volume.id} status must be available "
                             f"or downloading to reserve, but the current status is "
                             f"{current.status}.")
        attachment = Attachment(id=str(uuid.uuid4()), volume_id=volume.id,
                                instance_uuid=instance_uuid, attach_mode=mode,
                                attach_status=states.ATTACHMENT_RESERVED)
        self.session.add(attachment)
        await self.session.flush()
        return attachment

    async def _held_only_by(self, volume_id: str, instance_uuid: str | None) -> bool:
        """Whether the volume's live attachments are all ``instance_uuid``'s (one or more)."""
        holders = {a.instance_uuid for a in (await self.live([volume_id]))[volume_id]}
        return instance_uuid is not None and holders == {instance_uuid}

    async def complete(self, attachment_id: str, project_id: str | None) -> None:
        attachment = await self.get(attachment_id, project_id)
        if attachment.attach_status == states.ATTACHMENT_ATTACHED:
            return
        if attachment.attach_status != states.ATTACHMENT_ATTACHING:
            raise BadRequest(f"Invalid attachment: it has no connector yet (status "
                             f"{attachment.attach_status}).")
        attachment.attach_status = states.ATTACHMENT_ATTACHED
        attachment.attach_time = utcnow()
        volume = await self.volumes.get(attachment.volume_id)
        volume.status = states.IN_USE
        volume.attach_status = states.ATTACHED
        await self.session.flush()

    async def delete(self, attachment_id: str,
                                project_id: str | None) -> list[Attachment]:
        """Detach; the volume is ``available`` again once no attachment holds it. Returns
        the volume's remaining attachments."""
        attachment = await self.get(attachment_id, project_id)
        attachment.attach_status = states.ATTACHMENT_DETACHED
        attachment.detach_time = utcnow()
        attachment.deleted_at = utcnow()
        await self.session.flush()
        remaining = (await self.live([attachment.volume_id]))[attachment.volume_id]
        volume = await self.volumes.get(attachment.volume_id)
        if not remaining:
            volume.status = states.AVAILABLE
            volume.attach_status = states.DETACHED
        elif not any(a.attach_status == states.ATTACHMENT_ATTACHED for a in remaining):
            volume.status = states.RESERVED
            volume.attach_status = states.DETACHED
        await self.session.flush()
        return remaining

    async def connect(self, attachment_id: str, project_id: str | None,
                      connector: dict[str, Any], info: dict[str, Any]) -> Attachment:
        """Record the connector and the connection info the volume's host gave for it; a
        reserved attachment (and its volume) is then ``attaching``."""
        attachment = await self.get(attachment_id, project_id)
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
            await self.volumes.transition(attachment.volume_id, (states.RESERVED,),
                                          states.ATTACHING)
        await self.session.flush()
        return attachment
