"""Volume types of one transaction: the default type, admin CRUD and extra specs.

A deleted type keeps its row (volumes deleted long ago still name it) but frees its name.
The default type (``volume.default_volume_type``) can be neither renamed nor deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.config import VolumeSettings
from stratus.core.db import utcnow
from stratus.core.exceptions import BadRequest, Conflict, NotFound
from stratus.volume.models import Volume, VolumeType


class Types:
    """Volume types within one transaction."""

    def __init__(self, session: AsyncSession, options: VolumeSettings) -> None:
        self.session = session
        self.options = options

    async def ensure_default(self) -> VolumeType:
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

    async def list_all(self, *, admin: bool) -> list[VolumeType]:
        query = select(VolumeType).where(VolumeType.deleted_at.is_(None)).order_by(
            VolumeType.created_at, VolumeType.name)
        if not admin:
            query = query.where(VolumeType.is_public.is_(True))
        return list(await self.session.scalars(query))

    async def get(self, ref: str) -> VolumeType:
        """A type by id, else by name."""
        vtype = await self.session.get(VolumeType, ref)
        if vtype is None or vtype.deleted_at is not None:
            vtype = await self.session.scalar(select(VolumeType).where(
                VolumeType.name == ref, VolumeType.deleted_at.is_(None)))
        if vtype is None:
            raise NotFound(f"Volume type {ref} could not be found.")
        return vtype

    async def get_visible(self, ref: str, *, admin: bool) -> VolumeType:
        """A type the caller may see: private types only for admins."""
        vtype = await self.get(ref)
        if not vtype.is_public and not admin:
            raise NotFound(f"Volume type {ref} could not be found.")
        return vtype

    async def create(self, *, name: str, description: str | None, is_public: bool,
                     extra_specs: dict[str, str]) -> VolumeType:
        if await self.session.scalar(select(VolumeType).where(
                VolumeType.name == name, VolumeType.deleted_at.is_(None))) is not None:
            raise Conflict(f"Volume Type {name} already exists.")
        vtype = VolumeType(id=str(uuid.uuid4()), name=name, description=description,
                           is_public=is_public, extra_specs=dict(extra_specs))
        self.session.add(vtype)
        await self.session.flush()
        return vtype

    async def update(self, ref: str, *, name: str | None, description: str | None,
                     set_description: bool, is_public: bool | None) -> VolumeType:
        """Rename (not the default type, not onto a taken name), describe, publish."""
        vtype = await self.get(ref)
        if name is not None and name != vtype.name:
            if vtype.name == self.options.default_volume_type:
                raise Conflict("The default volume type cannot be renamed.")
            try:
                await self.get(name)
            except NotFound:
                vtype.name = name
            else:
                raise Conflict(f"Volume Type {name} already exists.")
        if set_description:
            vtype.description = description
        if is_public is not None:
            vtype.is_public = is_public
        await self.session.flush()
        return vtype

    async def delete(self, ref: str) -> None:
        vtype = await self.get(ref)
        if vtype.name == self.options.default_volume_type:
            raise BadRequest("Default volume type can not be deleted.")
        if await self.session.scalar(select(func.count()).select_from(Volume).where(
                Volume.volume_type_id == vtype.id, Volume.deleted_at.is_(None))):
            raise BadRequest(f"Target volume type is still in use: {vtype.id}.")
        # Keep the row (volumes deleted long ago still name it) but free the name.
        vtype.deleted_at = utcnow()
        vtype.name = f"{vtype.name}.deleted-{vtype.id}"
        await self.session.flush()

    async def extra_specs(self, ref: str) -> dict[str, str]:
        return dict((await self.get(ref)).extra_specs or {})

    async def set_extra_specs(self, ref: str, specs: dict[str, str]) -> None:
        vtype = await self.get(ref)
        vtype.extra_specs = {**(vtype.extra_specs or {}), **specs}
        await self.session.flush()

    async def delete_extra_spec(self, ref: str, key: str) -> None:
        vtype = await self.get(ref)
        if key not in (vtype.extra_specs or {}):
            raise NotFound(f"Volume Type {ref} has no extra specs with key {key}.")
        vtype.extra_specs = {k: v for k, v in vtype.extra_specs.items() if k != key}
        await self.session.flush()

    async def by_id(self, ids: Iterable[str | None]) -> dict[str, VolumeType]:
        wanted = {i for i in ids if i}
        if not wanted:
            return {}
        rows = await self.session.scalars(select(VolumeType).where(VolumeType.id.in_(wanted)))
        return {row.id: row for row in rows}
