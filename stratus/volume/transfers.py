"""Volume transfers of one transaction (``os-volume-transfer``, ``volume-transfers``).

The owner offers an ``available`` volume (it is then ``awaiting-transfer``) and gets a
random auth key, shown once; any project that presents the transfer's id and that key
takes the volume (and, unless ``no_snapshots``, its snapshots): they become the accepting
project's, counted against its quota (usage is counted from the rows, so the donor's
quota is freed by the same move), and the volume is ``available`` again. Withdrawing the
offer (delete) makes the volume ``available`` to its owner. Only a salted SHA-256 of the key
is stored; a wrong key is a 400 that says no more.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.context import RequestContext
from stratus.core.db import utcnow
from stratus.core.exceptions import BadRequest, NotFound
from stratus.volume import states
from stratus.volume.models import Snapshot, Transfer
from stratus.volume.quotas import Quotas
from stratus.volume.volumes import Volumes

#: Characters of a new auth key (Cinder's keys are 16 characters too).
KEY_LENGTH = 16

__all__ = ["Transfer", "Transfers"]


def _hash(salt: str, key: str) -> str:
    return hashlib.sha256(f"{salt}{key}".encode()).hexdigest()


class Transfers:
    """Volume transfers within one transaction."""

    def __init__(self, session: AsyncSession, volumes: Volumes, quotas: Quotas) -> None:
        self.session = session
        self.volumes = volumes
        self.quotas = quotas

    async def create(self, ctx: RequestContext, volume_id: str, *, name: str | None,
                     no_snapshots: bool) -> tuple[Transfer, str]:
        """Offer the caller's volume; the transfer and its auth key (never stored)."""
        volume = await self.volumes.get(volume_id, None if ctx.is_admin else ctx.project_id)
        if not await self.volumes.transition(volume.id, (states.AVAILABLE,),
                                             states.AWAITING_TRANSFER,
                                             attach_status=states.DETACHED):
            raise BadRequest(f"Invalid volume: status must be available to transfer volume "
                             f"{volume.id} (it is {volume.status}).")
        key = secrets.token_hex(KEY_LENGTH // 2)
        salt = secrets.token_hex(16)
        transfer = Transfer(id=str(uuid.uuid4()), volume_id=volume.id, name=name, salt=salt,
                            key_hash=_hash(salt, key), source_project_id=volume.project_id,
                            no_snapshots=no_snapshots, accepted=False)
        self.session.add(transfer)
        await self.session.flush()
        return transfer, key

    async def get(self, transfer_id: str, project_id: str | None) -> Transfer:
        """An open transfer of ``project_id``'s (None: any project's)."""
        transfer = await self.session.get(Transfer, transfer_id, populate_existing=True)
        if (transfer is None or transfer.deleted_at is not None
                or (project_id is not None and transfer.source_project_id != project_id)):
            raise NotFound(f"Transfer {transfer_id} could not be found.")
        return transfer

    async def list(self, project_id: str | None) -> list[Transfer]:
        """The open transfers of ``project_id`` (None: every project's), oldest first."""
        query = select(Transfer).where(Transfer.deleted_at.is_(None))
        if project_id is not None:
            query = query.where(Transfer.source_project_id == project_id)
        return list(await self.session.scalars(query.order_by(Transfer.created_at,
                                                               Transfer.id)))

    async def accept(self, ctx: RequestContext, transfer_id: str, auth_key: str) -> Transfer:
        """Give the volume (and its snapshots) to the caller's project."""
        project_id = ctx.require_project()
        transfer = await self.get(transfer_id, None)
        if not hmac.compare_digest(_hash(transfer.salt, auth_key), transfer.key_hash):
            raise BadRequest(f"Invalid auth key: Attempt to transfer {transfer.id} with "
                             "invalid auth key.")
        await self.quotas.lock(project_id)
        volume = await self.volumes.get(transfer.volume_id)
        snapshots = [] if transfer.no_snapshots else list(await self.session.scalars(
            select(Snapshot).where(Snapshot.volume_id == volume.id,
                                   Snapshot.deleted_at.is_(None))))
        await self.quotas.check(project_id, volumes=1, snapshots=len(snapshots),
                                gigabytes=volume.size + sum(s.size for s in snapshots),
                                volume_size=volume.size)
        if not await self.volumes.transition(volume.id, (states.AWAITING_TRANSFER,),
                                             states.AVAILABLE, project_id=project_id,
                                             user_id=ctx.user_id):
            raise BadRequest(f"Invalid volume: volume {volume.id} is no longer awaiting "
                             "this transfer.")
        for snapshot in snapshots:
            snapshot.project_id = project_id
            snapshot.user_id = ctx.user_id
        transfer.destination_project_id = project_id
        transfer.accepted = True
        transfer.deleted_at = utcnow()
        await self.session.flush()
        return transfer

    async def close_for(self, volume_id: str) -> None:
        """Close the open offers of a volume being deleted (a force delete takes an offered
        volume too)."""
        for transfer in await self.session.scalars(select(Transfer).where(
                Transfer.volume_id == volume_id, Transfer.deleted_at.is_(None))):
            transfer.deleted_at = utcnow()
        await self.session.flush()

    async def delete(self, transfer_id: str, project_id: str | None) -> None:
        """Withdraw the offer: the volume is its owner's and ``available`` again."""
        transfer = await self.get(transfer_id, project_id)
        await self.volumes.transition(transfer.volume_id, (states.AWAITING_TRANSFER,),
                                      states.AVAILABLE)
        transfer.deleted_at = utcnow()
        await self.session.flush()
