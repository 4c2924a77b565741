"""A transaction's connection whose Core statements run from their compiled form, kept with
the statement, and on SQLite with no greenlet.

``AsyncConnection.execute`` does, for every statement, work whose outcome is the same for a
prebuilt one (the hot paths' statements are module constants): it asks the statement for
its cache key (memoised) and looks it up in the engine's compiled cache, which hashes the
whole key, a tuple nesting the statement's tree, every time; merges options, distils
parameters, and runs the sync connection's ``execute`` in a new greenlet that must switch
to the event loop at least once (SQLAlchemy refuses an async execution that never awaited).
On SQLite, whose statements ``sqlite_driver`` runs on the loop's thread in one call, that
switch is all the greenlet is for.

``PreparedConnection.execute`` keeps, per statement object, dialect and parameter names,
what ``_compile_w_cache`` answered (the compiled form, the statement's own bound values)
and hands it straight to the connection's execution context, as SQLAlchemy does on a cache
hit. The execution itself is SQLAlchemy's unchanged: the execution context, the parameters'
processing, the ``before_cursor_execute`` events, the error handling and the result. On a
SQLite connection of ``sqlite_driver`` it runs in the caller's task with no greenlet; a
statement that must wait (SQLite's lock taken, or the connection busy with another
statement) raises ``MustWait`` from the cursor having done nothing, and runs again the
greenlet way, which waits. PostgreSQL's statements keep the greenlet (asyncpg awaits).

Anything else (per-execution options, ``before_execute`` listeners, DDL, functions, a
schema translation map, options that change how results are fetched) goes to
``AsyncConnection.execute`` as before.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection, CursorResult, Dialect
from sqlalchemy.engine.util import _distill_params_20
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import compiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.util.concurrency import greenlet_spawn

#: A statement's compiled form, with the bound values its cache key extracted and its
#: collected parameters (what ``_compile_w_cache`` answers), and whether the dialect's
#: driver runs it without a greenlet.
_Entry = tuple[Any, Any, Any, bool]

#: Per statement object (by ``id``, the statement kept with its entries so that the id
#: cannot be reused while they are held): its entries by (dialect, parameter names in the
#: caller's order, executemany). A statement built per call adds one entry and is dropped
#: with the rest when the table is full: it costs what it did (a lookup in the engine's
#: compiled cache), and the prebuilt ones are compiled again once.
_COMPILED: dict[int, tuple[Any, dict[tuple[Any, ...], _Entry]]] = {}
#: Statements held at most (the hot paths' prebuilt statements are a few hundred).
MAX_STATEMENTS = 2048
#: Execution options under which the fast path does not apply.
_OWN_OPTIONS = frozenset({"schema_translate_map", "compiled_cache", "yield_per",
                          "stream_results", "max_row_buffer"})
#: What ``_execute_on_connection`` is for the statements ``_execute_clauseelement`` runs.
_CLAUSE_EXECUTION = ClauseElement._execute_on_connection


class MustWait(Exception):
    """A statement run outside a greenlet had to wait (SQLite's lock taken, or the
    connection busy with another statement): raised by the driver's cursor having done
    nothing, so that it runs again inside one, which waits."""


def runs_without_greenlet(dialect: Dialect) -> bool:
    """Whether ``dialect``'s driver runs a single execution outside a greenlet (or raises
    ``MustWait``): ``sqlite_driver``'s."""
    return bool(getattr(dialect.dbapi, "statements_without_greenlet", False))


def _entry(connection: Connection, statement: Any, names: tuple[str, ...],
           many: bool) -> _Entry:
    dialect: Dialect = connection.dialect
    held = _COMPILED.get(id(statement))
    if held is None or held[0] is not statement:
        if len(_COMPILED) >= MAX_STATEMENTS:
            _COMPILED.clear()
        held = _COMPILED[id(statement)] = (statement, {})
    key = (dialect, names, many)
    entry = held[1].get(key)
    if entry is None:
        compiled, extracted, collected, _hit = statement._compile_w_cache(
            dialect=dialect, compiled_cache=connection.engine._compiled_cache,
            column_keys=sorted(names), for_executemany=many, schema_translate_map=None,
            linting=dialect.compiler_linting | compiler.WARN_LINTING)
        # An executemany stays in a greenlet: SQLAlchemy may split it into several
        # statements (insertmanyvalues), and a wait met after the first could not be
        # taken the slow way without running that one twice.
        entry = held[1][key] = (compiled, extracted, collected,
                                not many and runs_without_greenlet(dialect))
    return entry


def _execute(connection: Connection, statement: Any, distilled: Any, options: Any,
             entry: _Entry) -> CursorResult[Any]:
    """What ``Connection._execute_clauseelement`` does after its compiled-cache lookup."""
    compiled, extracted, collected, _direct = entry
    dialect = connection.dialect
    result: CursorResult[Any] = connection._execute_context(
        dialect, dialect.execution_ctx_cls._init_compiled, compiled, distilled, options,
        compiled, distilled, statement, extracted, cache_hit=dialect.CACHE_HIT,
        param_dict=collected)
    return result


class PreparedConnection(AsyncConnection):
    """``AsyncConnection`` with ``execute`` as the module docstring says. ``Database``'s
    transactions (``txn.py``) run on one."""

    __slots__ = ()

    async def execute(self, statement: Any, parameters: Any = None, *,
                      execution_options: Any = None) -> Any:
        sync = self._proxied
        if (execution_options
                or type(statement)._execute_on_connection is not _CLAUSE_EXECUTION
                or not statement.supports_execution
                or ((sync._has_events or sync.engine._has_events)
                    and (sync.dispatch.before_execute or sync.dispatch.after_execute))):
            return await super().execute(statement, parameters,
                                         execution_options=execution_options)
        options = statement._execution_options.merge_with(sync._execution_options)
        if options and not _OWN_OPTIONS.isdisjoint(options):
            return await super().execute(statement, parameters)
        distilled = _distill_params_20(parameters)
        if distilled:
            names, many = tuple(distilled[0]), len(distilled) > 1
        else:
            names, many = (), False
        entry = _entry(sync, statement, names, many)
        if entry[3]:
            try:
                return _execute(sync, statement, distilled, options, entry)
            except MustWait:  # nothing was done: again, the way that waits
                pass
        result = await greenlet_spawn(_execute, sync, statement, distilled, options, entry,
                                      _require_await=True)
        cursor = result.cursor
        if cursor is not None:  # as AsyncConnection.execute leaves it
            await cursor._async_soft_close()
        return result


__all__ = ["MAX_STATEMENTS", "MustWait", "PreparedConnection", "runs_without_greenlet"]
