"""Each service's models and its migration history describe the same schema.

A model edited without a migration (or the reverse) shows here as Alembic's autogenerate
diff, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from stratus.core.db import Database
from stratus.schemas import SERVICES, schema_of


def _schema_diff(connection: Connection, metadata: Any, version_table: str) -> list[Any]:
    context = MigrationContext.configure(connection, opts={
        "version_table": version_table, "compare_type": True,
        "include_name": lambda name, kind, _parent: not (
            kind == "table" and name is not None and name.startswith("alembic_version"))})
    return compare_metadata(context, metadata)


@pytest.mark.parametrize("service", SERVICES)
async def test_models_match_the_migrations(service: str, empty_db_url: str) -> None:
    schema = schema_of(service)
    metadata = importlib.import_module(f"stratus.{service}.models").Base.metadata
    db = Database(empty_db_url)
    try:
        await schema.upgrade(db)
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(_schema_diff, metadata, schema.version_table)
    finally:
        await db.dispose()
    assert diff == []
