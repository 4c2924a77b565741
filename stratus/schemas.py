"""Every service's schema: the Alembic history it owns and the version table that tracks it.

Each service keeps its migrations in its own package (``stratus.<service>.migrations``) and
its own version table, so services can share one database or each have their own. This is
the one list of them, for the tools that work on all at once (``stratus db upgrade``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from stratus.core.db import Database

SERVICES = ("identity", "image", "compute", "network", "volume")


@dataclass(frozen=True)
class Schema:
    service: str
    script_location: str
    version_table: str
    head: str

    async def upgrade(self, db: Database) -> str | None:
        """Bring ``db`` to this schema's head; the revision it is at afterwards."""
        await db.upgrade(self.script_location, self.version_table, known_head=self.head)
        return await db.current_revision(self.version_table)


def schema_of(service: str) -> Schema:
    """The schema ``service`` owns: ``SCRIPT_LOCATION``, ``VERSION_TABLE`` and ``HEAD`` of
    its ``migrations`` package (which imports nothing of the service's domain)."""
    migrations = importlib.import_module(f"stratus.{service}.migrations")
    return Schema(service, migrations.SCRIPT_LOCATION, migrations.VERSION_TABLE,
                  migrations.HEAD)


def all_schemas() -> list[Schema]:
    return [schema_of(service) for service in SERVICES]
