"""What a boot reads before it writes its rows (the flavor, the project's quota limits and,
when they are counted, its usage), in one statement where the backend allows.

Every boot used to read them one statement each (after a statement of its own for the
project's quota lock on PostgreSQL); through SQLAlchemy's asyncio Core each statement costs
the API process ~130 Python calls and, on PostgreSQL, a round trip. Now:

- PostgreSQL: one statement takes the quota lock (``Txn.lock_by_statement``: the lock's
  function is one of its columns) and reads the flavor and the limits. Its snapshot predates
  its wait for the lock, which is fine for those two: the lock's other holders (boots of
  the project) write neither. The usage, which they do write, is counted after it, in a
  statement of its own (``Quotas.check_instances``), only when a limit is set.
- SQLite: the write transaction is exclusive already (no lock statement); the usage is
  counted in the same statement when the project's last check here counted it
  (``QuotaTable.probably_unlimited``): a project with limits (the defaults are limits)
  reads everything in one statement.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, select, true

from stratus.compute import flavors
from stratus.compute.models import QuotaLimit
from stratus.compute.objects import FlavorInfo
from stratus.compute.quotas import USAGE, Quotas
from stratus.core.db import Txn
from stratus.core.db.txn import LOCK_COLUMNS

_LIMITS = cast(Table, QuotaLimit.__table__)
#: The project's usage (``Quotas.usage``'s count) as a one-row table to join.
_USAGE = USAGE.subquery("usage")


@dataclass(frozen=True)
class BootFacts:
    flavor: FlavorInfo
    #: The project's quota limits (defaults and overrides).
    limits: dict[str, int]
    #: The project's usage, if counted in the same statement (else None).
    usage: dict[str, int] | None


@functools.cache
def _statement(lock: bool | None, usage: bool) -> Select[Any]:
    """The flavor ``f_id`` (``flavors.INFO_COLUMNS``), one row per override of project
    ``p_project``'s quota (NULLs when it has none); ``lock`` (shared or not): also the
    quota lock's column (``LOCK_COLUMNS``); ``usage``: also the project's usage. Built and
    compiled once per variant."""
    source: Any = flavors.FLAVORS.outerjoin(_LIMITS,
                                            _LIMITS.c.project_id == bindparam("p_project"))
    columns: list[Any] = [*flavors.INFO_COLUMNS, _LIMITS.c.resource, _LIMITS.c.hard_limit]
    if usage:
        source = source.join(_USAGE, true())
        columns += [_USAGE.c.used_instances, _USAGE.c.used_cores, _USAGE.c.used_ram]
    if lock is not None:
        columns.append(LOCK_COLUMNS[lock])
    return select(*columns).select_from(source).where(
        flavors.FLAVORS.c.id == bindparam("f_id"))


async def read(txn: Txn, quotas: Quotas, *, flavor_id: str, project_id: str, admin: bool,
               shared: bool) -> BootFacts:
    """The flavor a boot names (``NotFound`` if the caller may not use it,
    ``flavors.info_of``), with the project's quota lock (``shared`` or not) taken and its
    limits read; its usage too where that costs no statement of its own (see the module
    docstring). If this raises, the transaction must end."""
    table = quotas.table.table
    lock_key = quotas.lock_by_statement(project_id, shared=shared)
    # With the lock taken in the statement (PostgreSQL) the count must come after it.
    usage = lock_key is None and not table.probably_unlimited(project_id)
    params: dict[str, Any] = {"f_id": flavor_id, "p_project": project_id}
    if lock_key is not None:
        params["lock_key"] = lock_key
    connection = await txn.connection()
    rows = (await connection.execute(
        _statement(None if lock_key is None else shared, usage), params)).all()
    first = rows[0] if rows else None
    flavor = flavors.info_of(first, flavor_id, project_id=project_id, admin=admin)
    assert first is not None
    limits = table.with_overrides((row.resource, row.hard_limit) for row in rows
                                  if row.resource is not None)
    used = None
    if usage:
        used = {"instances": int(first.used_instances), "cores": int(first.used_cores),
                "ram": int(first.used_ram)}
    return BootFacts(flavor, limits, used)
