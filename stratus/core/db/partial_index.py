"""A partial index PostgreSQL alone makes, declared without loading PostgreSQL's dialect.

``Index(..., postgresql_where=...)`` validates its option at the model's import by loading
``sqlalchemy.dialects.postgresql`` (its package imports every driver: 21 modules, ~2 MB of
a process's memory). A cloud on SQLite never uses them, yet the compute models are imported
by every ``stratus up``. ``PostgresqlPartialIndex`` keeps the ``WHERE`` clause aside and
hands it to SQLAlchemy when PostgreSQL's options of the index are first read: by
PostgreSQL's DDL compiler (``CREATE INDEX ... WHERE``), by Alembic's comparison on
PostgreSQL, or by ``index.dialect_options["postgresql"]`` / ``dialect_kwargs``. Only then is
the dialect loaded, as it is anyway wherever PostgreSQL is in use.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Index, text
from sqlalchemy.util import PopulateDict


class PostgresqlPartialIndex(Index):
    """``Index(name, *columns, postgresql_where=text(where)).ddl_if(dialect="postgresql")``,
    the same on every database, without loading PostgreSQL's dialect until its options are
    read. Columns are given by name, as ``__table_args__`` indexes are."""

    def __init__(self, name: str, *columns: str, where: str) -> None:
        super().__init__(name, *columns)
        self._postgresql_where = where
        self.ddl_if(dialect="postgresql")

    @property
    def dialect_options(self) -> PopulateDict[str, Any]:
        """As ``Index.dialect_options``, with ``where`` in PostgreSQL's entry when made."""
        options: PopulateDict[str, Any] | None = self.__dict__.get("_partial_options")
        if options is None:
            options = self.__dict__["_partial_options"] = PopulateDict(self._options_for)
        return options

    def _options_for(self, dialect_name: str) -> Any:
        # SQLAlchemy's own defaults for the dialect (the same call its ``dialect_options``
        # makes on a miss); for PostgreSQL the clause is then set as the keyword would.
        options = self._kw_reg_for_dialect_cls(dialect_name)
        if dialect_name == "postgresql":
            options["where"] = text(self._postgresql_where)
        return options
