"""``PostgresqlPartialIndex``: the same index as ``Index(..., postgresql_where=...)
.ddl_if(dialect="postgresql")`` wherever it is read, without loading PostgreSQL's dialect
when declared (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import Column, Integer, MetaData, Table, create_engine, inspect
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex

from stratus.compute.models import Instance
from stratus.core.db.partial_index import PostgresqlPartialIndex


def _table() -> Table:
    return Table("t", MetaData(), Column("id", Integer, primary_key=True),
                 Column("a", Integer), Column("gone", Integer),
                 PostgresqlPartialIndex("ix_t_a_live", "a", where="gone IS NULL"))


def test_postgresql_makes_it_partial() -> None:
    index = next(iter(_table().indexes))
    ddl = str(CreateIndex(index).compile(dialect=postgresql.asyncpg.dialect()))
    assert ddl == "CREATE INDEX ix_t_a_live ON t (a) WHERE gone IS NULL"
    assert str(index.dialect_kwargs["postgresql_where"]) == "gone IS NULL"
    assert str(index.dialect_options["postgresql"]["where"]) == "gone IS NULL"


def test_sqlite_does_not_make_it() -> None:
    table = _table()
    engine = create_engine("sqlite://")
    table.metadata.create_all(engine)
    with engine.connect() as connection:
        assert inspect(connection).get_indexes("t") == []


def test_the_compute_models_keep_their_partial_indexes() -> None:
    where = {index.name: str(index.dialect_kwargs.get("postgresql_where"))
             for index in Instance.__table__.indexes}
    assert where["ix_instance_project_usage"] == "deleted_at IS NULL"
    assert where["ix_instance_project_live_order"] == "deleted_at IS NULL"
    assert where["ix_instance_host"] == "None"


def test_declaring_them_does_not_load_postgresqls_dialect() -> None:
    script = ("import sys; import stratus.compute.models, stratus.compute.hosts, "
              "stratus.compute.placement; "
              "print([m for m in sys.modules if m.startswith('sqlalchemy.dialects.postgresql')])")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.strip() == "[]"
