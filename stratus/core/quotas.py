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
- Every resource in ``adding`` is checked, 0 included (a project already over a lowered
  limit stays over); the first resource over its limit raises ``table.over(Overage)``.
- ``set`` and ``reset`` write override rows only; they do not validate resource names or
  values (each API's dialect words those errors).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import Select, bindparam, delete, select

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


@dataclass(frozen=True)
class QuotaTable:
    """A service's quotas: its override ``model``, its ``defaults``, the ``scope`` naming
    its lock keys, and ``over``, which makes the error its API answers."""

    model: Any
    defaults: Mapping[str, int]
    scope: str
    over: Callable[[Overage], Exception] = _forbidden

    @cached_property
    def limits_query(self) -> Select[Any]:
        """The project's overrides (``project_id`` bound), built once: every create that
        checks a quota asks it, and a Core select of two columns costs a fraction of
        building one and loading its rows as objects."""
        table = self.model.__table__
        return select(table.c.resource, table.c.hard_limit).where(
            table.c.project_id == bindparam("project_id"))


class Quotas:
    """The quotas of ``table`` within one transaction."""

    def __init__(self, txn: Txn, table: QuotaTable) -> None:
        self.txn = txn
        self.session = txn.session
        self.table = table
        self.model = table.model

    async def lock(self, project_id: str) -> None:
        """Hold the project's quota lock until the transaction ends."""
        await self.txn.lock("quota", self.table.scope, project_id)

    async def limits(self, project_id: str) -> dict[str, int]:
        """The defaults, overridden by the project's rows."""
        limits = dict(self.table.defaults)
        for resource, hard_limit in await self.session.execute(self.table.limits_query,
                                                               {"project_id": project_id}):
            limits[resource] = hard_limit
        return limits

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

    async def check(self, project_id: str, adding: Mapping[str, int], used: Usage) -> None:
        """Raise ``table.over(...)`` unless ``adding`` more of each resource fit; under the
        project's lock (see the module docstring). ``used``: the usage, or a coroutine
        function counting it (called only when some checked limit is set)."""
        await self.lock(project_id)
        limits = await self.limits(project_id)
        if all(limits.get(resource, -1) < 0 for resource in adding):
            return
        usage = used if isinstance(used, Mapping) else await used()
        for resource, amount in adding.items():
            limit = limits.get(resource, -1)
            if limit >= 0 and usage.get(resource, 0) + amount > limit:
                raise self.table.over(Overage(resource, amount, usage.get(resource, 0), limit))


__all__ = ["Overage", "QuotaTable", "Quotas", "Usage"]
