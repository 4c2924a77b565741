"""Moves of servers between hosts as rows (``os-migrations``, ``servers/{id}/migrations``).

Statuses follow Nova's, per kind of move:

- resize and cold migration: ``pre-migrating`` → ``migrating`` → ``post-migrating`` →
  ``finished`` (the server is ``VERIFY_RESIZE``) → ``confirming`` → ``confirmed``, or
  ``reverting`` → ``reverted``; ``error`` when it failed (the server went back);
- live migration: ``accepted`` → ``preparing`` → ``running`` → ``completed``, ``error`` or
  ``cancelled`` (aborted);
- evacuation: ``accepted`` → ``pre-migrating`` → ``done`` or ``failed``.
"""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Select, Table, or_, select
from sqlalchemy import update as sa_update

from stratus.compute.models import Instance, Migration
from stratus.compute.objects import FlavorInfo, LiveMigrationProgress, MigrationRecord
from stratus.core.db import Txn, utcnow
from stratus.core.db.paging import SortKey, page
from stratus.core.exceptions import BadRequest, NotFound

if TYPE_CHECKING:
    from sqlalchemy.engine import Row

__all__ = ["COLD", "EVACUATION", "IN_PROGRESS_LIVE", "LIVE", "RESIZE", "MigrationFilter",
           "Migrations"]

_MIGRATIONS = cast(Table, Migration.__table__)

RESIZE, COLD, LIVE, EVACUATION = "resize", "migration", "live-migration", "evacuation"
TYPES = (RESIZE, COLD, LIVE, EVACUATION)
#: The statuses of a live migration ``servers/{id}/migrations`` lists (under way).
IN_PROGRESS_LIVE = ("queued", "accepted", "preparing", "running")
#: A resize or cold migration waiting for its confirm or revert.
FINISHED = "finished"


@dataclass(frozen=True)
class MigrationFilter:
    """``GET /os-migrations``'s query, as Nova reads it."""

    instance_uuid: str | None = None
    status: str | None = None
    #: Source or destination compute host.
    host: str | None = None
    source_compute: str | None = None
    migration_type: str | None = None
    changes_since: dt.datetime | None = None
    changes_before: dt.datetime | None = None
    user_id: str | None = None
    project_id: str | None = None


class Migrations:
    """The ``migration`` table within one transaction."""

    def __init__(self, txn: Txn) -> None:
        self.session = txn.session

    async def create(self, instance: Instance, migration_type: str, new_flavor: FlavorInfo,
                     *, status: str, dest_host: str | None = None) -> Migration:
        row = Migration(uuid=str(uuidlib.uuid4()), instance_uuid=instance.uuid,
                        migration_type=migration_type, status=status,
                        source_compute=instance.host, source_node=instance.node or instance.host,
                        dest_host=dest_host, old_flavor=dict(instance.flavor),
                        new_flavor=new_flavor.model_dump(), old_vm_state=instance.vm_state,
                        project_id=instance.project_id, user_id=instance.user_id,
                        updated_at=utcnow())
        self.session.add(row)
        await self.session.flush()
        return row

    async def get(self, migration_uuid: str) -> Migration:
        row = await self.session.scalar(select(Migration).where(Migration.uuid == migration_uuid))
        if row is None:
            raise NotFound(f"Migration {migration_uuid} could not be found.")
        return row

    async def of_instance(self, instance_uuid: str, migration_id: str) -> Migration:
        """A server's migration by its id (the integer, as ``servers/{id}/migrations``
        names it) or uuid."""
        query = select(Migration).where(Migration.instance_uuid == instance_uuid)
        if migration_id.isdigit():
            query = query.where(Migration.id == int(migration_id))
        else:
            query = query.where(Migration.uuid == migration_id)
        row = await self.session.scalar(query)
        if row is None:
            raise NotFound(f"Migration {migration_id} for instance {instance_uuid} could not "
                           "be found.")
        return row

    async def latest(self, instance_uuid: str, statuses: tuple[str, ...],
                     types: tuple[str, ...] = TYPES) -> Migration | None:
        row: Migration | None = await self.session.scalar(
            select(Migration).where(Migration.instance_uuid == instance_uuid,
                                    Migration.status.in_(statuses),
                                    Migration.migration_type.in_(types))
            .order_by(Migration.id.desc()).limit(1))
        return row

    async def set_status(self, migration: str | Migration, status: str, *,
                         expected: tuple[str, ...] | None = None) -> Migration:
        """Move a migration (its uuid, or its row loaded in this transaction) on; with
        ``expected``, only from one of those statuses (``BadRequest`` otherwise: another
        request moved it first)."""
        row = await self.get(migration) if isinstance(migration, str) else migration
        if expected is not None and row.status not in expected:
            raise BadRequest(f"Migration {row.uuid} is {row.status}, not "
                             f"{' or '.join(expected)}.")
        row.status = status
        row.updated_at = utcnow()
        await self.session.flush()
        return row

    async def step(self, migration_uuid: str, status: str | None = None) -> MigrationRecord:
        """A move's step: its status set (None: left as it is) in one statement that reads
        the row back (no ORM object: the caller must not hold this migration as one in the
        same transaction); ``NotFound`` when there is no such migration."""
        table = _MIGRATIONS
        if status is None:
            statement: Any = select(table).where(table.c.uuid == migration_uuid)
        else:
            statement = (sa_update(table).where(table.c.uuid == migration_uuid)
                         .values(status=status, updated_at=utcnow()).returning(*table.c))
        row = (await self.session.execute(statement)).one_or_none()
        if row is None:
            raise NotFound(f"Migration {migration_uuid} could not be found.")
        return self.record(row)

    async def set_destination(self, migration_uuid: str, host: str) -> None:
        """The destination the scheduler claimed, as one statement (in the claim's
        transaction, which holds no ORM object of the migration)."""
        table = _MIGRATIONS
        done = await self.session.execute(
            sa_update(table).where(table.c.uuid == migration_uuid)
            .values(dest_compute=host, dest_node=host, updated_at=utcnow()))
        if not done.rowcount:  # type: ignore[attr-defined]
            raise NotFound(f"Migration {migration_uuid} could not be found.")

    async def set_progress(self, migration_uuid: str, progress: LiveMigrationProgress) -> None:
        row = await self.get(migration_uuid)
        for field in ("memory_total", "memory_processed", "memory_remaining", "disk_total",
                      "disk_processed", "disk_remaining"):
            setattr(row, field, getattr(progress, field))
        row.updated_at = utcnow()
        await self.session.flush()

    async def unconfirmed_before(self, before: dt.datetime) -> list[str]:
        """Resizes and cold migrations finished before ``before`` and never confirmed."""
        return list(await self.session.scalars(select(Migration.uuid).where(
            Migration.status == FINISHED, Migration.migration_type.in_((RESIZE, COLD)),
            Migration.updated_at < before).order_by(Migration.id)))

    def _filtered(self, wanted: MigrationFilter) -> Select[Any]:
        query = select(Migration)
        if wanted.instance_uuid:
            query = query.where(Migration.instance_uuid == wanted.instance_uuid)
        if wanted.status:
            query = query.where(Migration.status == wanted.status)
        if wanted.host:
            query = query.where(or_(Migration.source_compute == wanted.host,
                                    Migration.dest_compute == wanted.host))
        if wanted.source_compute:
            query = query.where(Migration.source_compute == wanted.source_compute)
        if wanted.migration_type:
            query = query.where(Migration.migration_type == wanted.migration_type)
        if wanted.changes_since is not None:
            query = query.where(Migration.updated_at >= wanted.changes_since)
        if wanted.changes_before is not None:
            query = query.where(Migration.updated_at <= wanted.changes_before)
        if wanted.user_id:
            query = query.where(Migration.user_id == wanted.user_id)
        if wanted.project_id:
            query = query.where(Migration.project_id == wanted.project_id)
        return query

    async def page(self, wanted: MigrationFilter, *, marker: str | None = None,
                   limit: int | None = None) -> tuple[list[Migration], bool]:
        """Newest first (as Nova: created_at, then id, descending), paged after the
        migration whose uuid is ``marker``; the rows and whether more follow."""
        found = await page(self.session, self._filtered(wanted),
                           sort_columns={"created_at": Migration.created_at,
                                         "id": Migration.id},
                           sort=[SortKey("created_at", "desc"), SortKey("id", "desc")],
                           marker_id=marker, limit=limit, id_column=Migration.uuid,
                           marker_query=select(Migration))
        return list(found.rows), found.more

    async def live_in_progress(self, instance_uuid: str) -> list[Migration]:
        return list(await self.session.scalars(select(Migration).where(
            Migration.instance_uuid == instance_uuid, Migration.migration_type == LIVE,
            Migration.status.in_(IN_PROGRESS_LIVE)).order_by(Migration.id)))

    @staticmethod
    def record(row: Migration | Row[Any]) -> MigrationRecord:
        """The migration as the bus carries it, from its ORM object or a row of its
        table."""
        return MigrationRecord(
            uuid=row.uuid, instance_uuid=row.instance_uuid, migration_type=row.migration_type,
            status=row.status, source_compute=row.source_compute,
            dest_compute=row.dest_compute,
            old_flavor=FlavorInfo.model_validate(row.old_flavor),
            new_flavor=FlavorInfo.model_validate(row.new_flavor),
            old_vm_state=row.old_vm_state)
