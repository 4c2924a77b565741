"""Instance passwords: what a guest agent (cloudbase-init, for example) posts, encrypted
with the instance's public key, to the metadata service, for its owner to read back with
``os-server-password``. A password is set once; only its owner's clearing lets a guest set
another. At most 4 x 255 characters, as Nova keeps it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from stratus.compute.models import InstancePassword
from stratus.core.exceptions import BadRequest, Conflict

MAX_LENGTH = 4 * 255


async def get(session: AsyncSession, instance_uuid: str) -> str:
    """The stored password, or ``""`` when none is."""
    row = await session.get(InstancePassword, instance_uuid)
    return row.password if row is not None else ""


async def set_once(session: AsyncSession, instance_uuid: str, password: str) -> None:
    if len(password) > MAX_LENGTH:
        raise BadRequest(f"The password is longer than {MAX_LENGTH} characters.")
    if await session.get(InstancePassword, instance_uuid) is not None:
        raise Conflict("The instance already has a password.")
    session.add(InstancePassword(instance_uuid=instance_uuid, password=password))
    await session.flush()


async def clear(session: AsyncSession, instance_uuid: str) -> None:
    row = await session.get(InstancePassword, instance_uuid)
    if row is not None:
        await session.delete(row)
        await session.flush()
