"""``os-simple-tenant-usage``: what each project's servers used over a period, as Nova
counts it.

A server counts from its launch (``launched_at``) to its end (``terminated_at``, set when it
is deleted) or to the end of the period, whichever comes first, and from the start of the
period at the earliest: hours times its flavor's vCPUs, RAM and disk (root + ephemeral) are
the totals. Deleted servers count for the time they lived; servers never launched count
nothing and are not listed. Nova's report ignores stops and pauses, and so does this one.

From 2.40 the servers come in pages (``limit``, ``marker`` = the last server's id), ordered
by project then server id, and the totals are those of the page's servers; Horizon and the
clients add the pages up until a page comes back empty.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.compute.models import Instance
from stratus.core.db import utcnow
from stratus.core.db.paging import SortKey, page
from stratus.core.exceptions import BadRequest, MarkerNotFound

#: The time formats Nova reads in ``start`` and ``end``.
_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S.%f")


def parse_time(text: str | None, now: dt.datetime) -> dt.datetime:
    """A ``start``/``end`` parameter as UTC; absent or empty means now."""
    if not text:
        return now
    for fmt in _FORMATS:
        try:
            parsed = dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed.replace(tzinfo=dt.UTC)
    raise BadRequest("Invalid start/end time: Datetime is in invalid format")


@dataclass(frozen=True)
class Period:
    start: dt.datetime
    stop: dt.datetime

    @classmethod
    def of(cls, start: str | None, end: str | None) -> Period:
        """The period the parameters ask for, its stop no later than now (Nova's rule)."""
        now = utcnow()
        # Nova reads "now" twice, the end after the start: absent both, an empty period.
        first = parse_time(start, now)
        last = parse_time(end, now + dt.timedelta(microseconds=1))
        if not first < last:
            raise BadRequest("Invalid start time. The start time cannot occur after the end "
                             "time.")
        return cls(first, min(last, now))


@dataclass(frozen=True)
class ServerUsage:
    instance: Instance
    hours: float

    @property
    def local_gb(self) -> int:
        flavor = self.instance.flavor or {}
        return int(flavor.get("disk", 0)) + int(flavor.get("ephemeral", 0))


@dataclass
class ProjectUsage:
    project_id: str
    servers: list[ServerUsage] = field(default_factory=list)
    hours: float = 0.0
    vcpu_hours: float = 0.0
    memory_mb_hours: float = 0.0
    local_gb_hours: float = 0.0

    def add(self, usage: ServerUsage) -> None:
        self.servers.append(usage)
        self.hours += usage.hours
        self.vcpu_hours += usage.instance.vcpus * usage.hours
        self.memory_mb_hours += usage.instance.memory_mb * usage.hours
        self.local_gb_hours += usage.local_gb * usage.hours


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def hours_for(instance: Instance, period: Period) -> float:
    launched, ended = _aware(instance.launched_at), _aware(instance.terminated_at)
    if launched is None or launched > period.stop:
        return 0.0
    if ended is not None and ended < period.start:
        return 0.0
    start = max(launched, period.start)
    stop = min(period.stop, ended) if ended is not None else period.stop
    return max(0.0, (stop - start).total_seconds() / 3600.0)


@dataclass(frozen=True)
class UsagePage:
    projects: list[ProjectUsage]
    #: The id of the page's last server when more may follow (None: the last page).
    next_marker: str | None


async def usage(session: AsyncSession, period: Period, *, project_id: str | None = None,
                limit: int | None = None, marker: str | None = None) -> UsagePage:
    """The usage of the servers alive at some time in ``period`` (one project's, or all),
    a page of ``limit`` servers after ``marker`` (any server's id, deleted ones too)."""
    query = select(Instance).where(
        Instance.launched_at.is_not(None), Instance.launched_at < period.stop,
        Instance.terminated_at.is_(None) | (Instance.terminated_at > period.start))
    if project_id is not None:
        query = query.where(Instance.project_id == project_id)
    try:
        found = await page(session, query,
                           sort_columns={"project_id": Instance.project_id,
                                         "uuid": Instance.uuid},
                           sort=[SortKey("project_id", "asc"), SortKey("uuid", "asc")],
                           marker_id=marker, limit=limit, id_column=Instance.uuid,
                           marker_query=select(Instance))
    except MarkerNotFound as exc:
        raise BadRequest(f"Marker {exc.marker} could not be found.") from exc
    projects: dict[str, ProjectUsage] = {}
    for instance in found.rows:
        projects.setdefault(instance.project_id, ProjectUsage(instance.project_id)).add(
            ServerUsage(instance, hours_for(instance, period)))
    last = found.rows[-1].uuid if found.more and found.rows else None
    return UsagePage(list(projects.values()), last)
