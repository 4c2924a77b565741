"""The volume-manager hosts of one transaction: their reports and which of them are up.

A host is up when it reported within ``volume.service_down_time`` seconds (a setting, as
compute's own liveness is; volume does not import compute).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.config import VolumeSettings
from stratus.core.db import utcnow
from stratus.volume.models import ServiceRecord


def is_up(last_seen_up: dt.datetime, down_after: float) -> bool:
    return (utcnow() - last_seen_up).total_seconds() <= down_after


class Hosts:
    """Volume-manager service records within one transaction."""

    def __init__(self, session: AsyncSession, options: VolumeSettings) -> None:
        self.session = session
        self.options = options

    def is_up(self, record: ServiceRecord) -> bool:
        return is_up(record.last_seen_up, self.options.service_down_time)

    async def up(self) -> list[ServiceRecord]:
        rows = await self.session.scalars(select(ServiceRecord).where(
            ServiceRecord.disabled.is_(False)))
        return [r for r in rows if self.is_up(r)]

    async def list_all(self) -> list[ServiceRecord]:
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
