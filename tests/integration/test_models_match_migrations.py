"""Each service's models and its migration history describe the same schema.

A model edited without a migration (or the reverse) shows here as Alembic's autogenerate
diff, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from stratus.core.db import Database
from stratus.schemas import SERVICES, schema_of


def _made_on(connection: Connection) -> Callable[..., bool]:
    """Whether a model's object is one the migrations make on this connection's database:
    an index declared for one database alone (``Index(...).ddl_if(dialect=...)``, which
    ``create_all`` honours and Alembic's comparison does not) is compared there only."""
    dialect = connection.dialect.name

    def include(obj: Any, _name: str | None, kind: str, _reflected: bool,
                _compare_to: Any) -> bool:
        only_on = getattr(getattr(obj, "_ddl_if", None), "dialect", None)
        return kind != "index" or only_on is None or only_on == dialect
    return include


def _schema_diff(connection: Connection, metadata: Any, version_table: str) -> list[Any]:
    context = MigrationContext.configure(connection, opts={
        "version_table": version_table, "compare_type": True,
        "include_name": lambda name, kind, _parent: not (
            kind == "table" and name is not None and name.startswith("alembic_version")),
        "include_object": _made_on(connection)})
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



def _instance_indexes(connection: Connection) -> set[str]:
    return {index["name"] for index in inspect(connection).get_indexes("instance")}


async def test_the_live_order_index_is_made_on_postgresql_alone(empty_db_url: str) -> None:
    """``ix_instance_project_live_order`` serves PostgreSQL's planner only (SQLite pages off
    ``ix_instance_project_live``): on SQLite the migrations do not make it, so no boot
    writes an entry to it there, and a SQLite database the first form of 0012 gave it
    loses it at head."""
    schema = schema_of("compute")
    db = Database(empty_db_url)
    try:
        await db.upgrade(schema.script_location, schema.version_table, "0012")
        async with db.engine.begin() as conn:
            on_postgresql = conn.dialect.name == "postgresql"
            assert ("ix_instance_project_live_order" in await conn.run_sync(_instance_indexes)
                    ) == on_postgresql
            if not on_postgresql:  # as the first form of 0012 made it
                await conn.exec_driver_sql(
                    "CREATE INDEX ix_instance_project_live_order ON instance "
                    "(project_id, created_at, uuid) WHERE deleted_at IS NULL")
        await schema.upgrade(db)
        async with db.engine.connect() as conn:
            made = await conn.run_sync(_instance_indexes)
        assert ("ix_instance_project_live_order" in made) == on_postgresql, made
    finally:
        await db.dispose()
