"""The volume-manager hosts of one transaction: their reports and which of them are up.

A host is up when it reported within ``volume.service_down_time`` seconds (a setting, as
compute's own liveness is; volume does not import compute). Each report carries what the
host's backend can do (``HostCapabilities``), so a volume goes only to a host that can make
it, and a request no host can do is refused with what is missing where.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core import hosttools
from stratus.core.config import VolumeSettings
from stratus.core.db import utcnow
from stratus.core.exceptions import BadRequest, ServiceUnavailable
from stratus.volume.models import ServiceRecord


def is_up(last_seen_up: dt.datetime, down_after: float) -> bool:
    return (utcnow() - last_seen_up).total_seconds() <= down_after


@dataclass(frozen=True)
class HostCapabilities:
    """What a volume-manager's backend can do on its host."""

    #: Image disk formats it can write into a volume (the image service's names).
    image_formats: list[str] = field(default_factory=list)
    #: Host programs it lacks (``qemu-img``), which is why ``image_formats`` is short.
    missing_tools: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, record: ServiceRecord) -> HostCapabilities | None:
        """The host's report; None when its manager reported none (take it as able)."""
        raw = record.capabilities
        if raw is None:
            return None
        return cls(image_formats=list(raw.get("image_formats") or []),
                   missing_tools=list(raw.get("missing_tools") or []))


def able_to_write(records: list[ServiceRecord], disk_format: str) -> list[ServiceRecord]:
    """The hosts among ``records`` that can write an image of ``disk_format`` into a volume;
    when none can (and some are up) the refusal: ``ServiceUnavailable`` naming the missing
    program and its package per host, or ``BadRequest`` when no backend writes the format."""
    able = []
    lacking: list[str] = []
    for record in records:
        capabilities = HostCapabilities.of(record)
        if capabilities is None or disk_format in capabilities.image_formats:
            able.append(record)
        else:
            lacking.extend(hosttools.missing(tool, record.host)
                           for tool in capabilities.missing_tools)
    if able or not records:
        return able
    if lacking:
        raise ServiceUnavailable(f"No volume host can write a {disk_format} image into a "
                                 f"volume: {'; '.join(lacking)}.")
    raise BadRequest(f"Invalid input received: an image of disk format {disk_format} "
                     "cannot be written to a volume.")


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

    async def require_up(self, host: str | None, disk_format: str) -> str:
        """``host`` when its volume-manager is up and can read a volume out as
        ``disk_format``; otherwise the refusal (``ServiceUnavailable``, or
        ``able_to_write``'s)."""
        record = await self.session.get(ServiceRecord, host) if host is not None else None
        if host is None or record is None or record.disabled or not self.is_up(record):
            raise ServiceUnavailable(f"The volume's host {host} is not up.")
        able_to_write([record], disk_format)
        return host

    async def list_all(self) -> list[ServiceRecord]:
        return list(await self.session.scalars(select(ServiceRecord).order_by(
            ServiceRecord.host)))

    async def report(self, host: str, backend: str, availability_zone: str,
                     capabilities: HostCapabilities | None = None) -> None:
        reported = asdict(capabilities) if capabilities is not None else None
        row = await self.session.get(ServiceRecord, host)
        if row is None:
            self.session.add(ServiceRecord(host=host, backend=backend,
                                           availability_zone=availability_zone,
                                           capabilities=reported))
        else:
            row.last_seen_up = utcnow()
            row.backend = backend
            row.availability_zone = availability_zone
            row.capabilities = reported
        await self.session.flush()
