"""Per-project quotas, one helper for every service: limits are defaults plus per-project
override rows, and a check runs under the project's lock so two requests cannot both take
the last unit.

A service describes its quotas once, in a ``QuotaTable`` kept for the life of the process:
the model of its override table (any mapped class with ``project_id``, ``resource`` and
``hard_limit`` columns: compute's and volume's ``QuotaLimit``, network's ``Quota``), the
defaults (from settings), a lock scope and how its API words "over quota". Each
transaction then works through ``Quotas(txn, table)``.

Contracts:

- A limit below 0 means unlimited. Override rows for a resource the defaults do not name
  are reported too (an API may store resources it does not enforce).
- ``check`` takes ``txn.lock("quota", scope, project_id)`` first; the lock is held to the
  end of the transaction, so the rows made after a successful check are counted by the
  next check. Usage is counted by the service (``used``), from its own rows, after the
  lock is taken; with every checked limit unlimited it is not counted at all.
- ``check(..., shared=True)`` takes that lock shared (``Txn.lock``): checks that find every
  checked limit unlimited (they count nothing) run side by side, where under the exclusive
  lock one project's creates ran one at a time; a check that counts still takes the lock
  exclusively, so it waits for those to commit and counts their rows. A shared check that
  finds a limit set raises ``NeedsExclusiveLock``: its transaction is rolled back and run
  again with ``shared=False`` (a limit set meanwhile). ``table.probably_unlimited`` says
  what the last check of the project in this process found, to choose with.
- Every resource in ``adding`` is checked, 0 included (a project already over a lowered
  limit stays over); the first resource over its limit raises ``table.over(Overage)``.
- ``set`` and ``reset`` write override rows only; they do not validate resource names or
  values (each API's dialect words those errors).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from stratus.core.db.txn import Txn
from stratus.core.exceptions import Forbidden, StratusError

Usage = Mapping[str, int] | Callable[[], Awaitable[Mapping[str, int]]]


@dataclass(frozen=True)
class Overage:
    """What a failed check found: ``requested`` more of ``resource`` would pass ``limit``."""

    resource: str
    requested: int
    used: int
    limit: int


def _forbidden(over: Overage) -> StratusError:
    return Forbidden(f"Quota exceeded for {over.resource}: Requested {over.requested}, but "
                     f"already used {over.used} of {over.limit} {over.resource}")


class NeedsExclusiveLock(Exception):
    """A check under the shared quota lock found a limit to count against: roll the
    transaction back and run it again under the exclusive lock."""


#: Projects ``QuotaTable`` remembers as unlimited at most (then it forgets them all).
_UNLIMITED_REMEMBERED = 10_000


@dataclass(frozen=True)
class QuotaTable:
    """A service's quotas: its override ``model``, its ``defaults``, the ``scope`` naming
    its lock keys, and ``over``, which makes the error its API answers."""

    model: Any
    defaults: Mapping[str, int]
    scope: str
    over: Callable[[Overage], Exception] = _forbidden
    #: Projects whose last check in this process found the checked limits unlimited.
    _unlimited: set[str] = field(default_factory=set, compare=False, repr=False)

    def probably_unlimited(self, project_id: str) -> bool:
        """Whether the last check of the project in this process counted nothing (a hint
        for ``check(shared=...)``: the check itself reads the limits under the lock)."""
        return project_id in self._unlimited

    def with_overrides(self, rows: Iterable[tuple[str, int]]) -> dict[str, int]:
        """The defaults, overridden by a project's ``(resource, hard_limit)`` rows."""
        limits = dict(self.defaults)
        for resource, hard_limit in rows:
            limits[resource] = hard_limit
        return limits

    def _found(self, project_id: str, unlimited: bool) -> None:
        if not unlimited:
            self._unlimited.discard(project_id)
            return
        if len(self._unlimited) >= _UNLIMITED_REMEMBERED:
            self._unlimited.clear()
        self._unlimited.add(project_id)


class Quotas:
    """The quotas of ``table`` within one transaction."""

    def __init__(self, txn: Txn, table: QuotaTable) -> None:
        self.txn = txn
        self.table = table
        self.model = table.model

    @property
    def session(self) -> AsyncSession:
        return self.txn.session

    async def lock(self, project_id: str, *, shared: bool = False) -> None:
        """Hold the project's quota lock (or ``shared``) until the transaction ends."""
        await self.txn.lock("quota", self.table.scope, project_id, shared=shared)

    def lock_by_statement(self, project_id: str, *, shared: bool = False) -> int | None:
        """``lock`` taken by the caller's next statement (``Txn.lock_by_statement``): the
        ``lock_key`` it binds, or None when it need not take it."""
        return self.txn.lock_by_statement("quota", self.table.scope, project_id,
                                          shared=shared)

    async def limits(self, project_id: str) -> dict[str, int]:
        """The defaults, overridden by the project's rows."""
        connection = await self.txn.connection()
        return self.table.with_overrides(
            await connection.execute(_limits_of(self.model), {"p_project": project_id}))

    async def set(self, project_id: str, changes: Mapping[str, int]) -> dict[str, int]:
        """Store ``changes`` as the project's overrides; the limits after the change."""
        for resource, value in changes.items():
            row = await self.session.get(self.model, (project_id, resource))
            if row is None:
                self.session.add(self.model(project_id=project_id, resource=resource,
                                            hard_limit=value))
            else:
                row.hard_limit = value
        await self.session.flush()
        return await self.limits(project_id)

    async def reset(self, project_id: str) -> None:
        """Drop the project's overrides: the defaults apply again."""
        await self.session.execute(delete(self.model).where(self.model.project_id == project_id))

    async def projects_with_quotas(self) -> list[str]:
        """The projects that have at least one override."""
        return list(await self.session.scalars(
            select(self.model.project_id).distinct().order_by(self.model.project_id)))

    async def check(self, project_id: str, adding: Mapping[str, int], used: Usage, *,
                    shared: bool = False, limits: Mapping[str, int] | None = None) -> None:
        """Raise ``table.over(...)`` unless ``adding`` more of each resource fit; under the
        project's lock (see the module docstring). ``used``: the usage, or a coroutine
        function counting it (called only when some checked limit is set). ``shared``:
        under the shared lock, raising ``NeedsExclusiveLock`` when there is a limit.
        ``limits``: the project's limits (``limits()``), read by the caller in this
        transaction with the lock held or taken (a boot reads them with its flavor)."""
        await self.lock(project_id, shared=shared)
        if limits is None:
            limits = await self.limits(project_id)
        unlimited = all(limits.get(resource, -1) < 0 for resource in adding)
        self.table._found(project_id, unlimited)
        if unlimited:
            return
        if shared:
            raise NeedsExclusiveLock(project_id)
        usage = used if isinstance(used, Mapping) else await used()
        for resource, amount in adding.items():
            limit = limits.get(resource, -1)
            if limit >= 0 and usage.get(resource, 0) + amount > limit:
                raise self.table.over(Overage(resource, amount, usage.get(resource, 0), limit))


@functools.cache
def _limits_of(model: Any) -> Select[Any]:
    """A project's override rows of ``model``'s table as (resource, limit): a Core statement
    built (and its SQL compiled) once, not an ORM load per check (every boot checks)."""
    table = model.__table__
    return select(table.c.resource, table.c.hard_limit).where(
        table.c.project_id == bindparam("p_project"))


__all__ = ["NeedsExclusiveLock", "Overage", "QuotaTable", "Quotas", "Usage"]
