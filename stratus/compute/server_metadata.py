"""Server metadata (the user's key/value pairs on an instance): Nova's rules on them.

Keys are 1 to 255 characters, values strings of at most 255, and a server holds at most
the project's ``metadata_items`` quota of them (403 beyond it). Changes are allowed while
the server is at rest (active, stopped, paused, suspended, no task running), else 409.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stratus.compute import states
from stratus.compute.errors import QuotaExceeded
from stratus.compute.models import Instance
from stratus.compute.quotas import Quotas
from stratus.core.db import Txn
from stratus.core.exceptions import BadRequest, Conflict

MAX_KEY_LENGTH = 255
MAX_VALUE_LENGTH = 255
#: vm_states in which a server's metadata may change (with no task running).
MUTABLE_STATES = (states.ACTIVE, states.PAUSED, states.SUSPENDED, states.STOPPED)


def validate(items: Any, field: str = "metadata") -> dict[str, str]:
    """``items`` as checked metadata, or ``BadRequest`` saying what is wrong."""
    if not isinstance(items, dict):
        raise BadRequest(f"Invalid input for field '{field}': it must be an object.")
    for key, value in items.items():
        if not 1 <= len(key) <= MAX_KEY_LENGTH:
            raise BadRequest(f"Invalid input for field '{field}': metadata keys are 1 to "
                             f"{MAX_KEY_LENGTH} characters long.")
        if not isinstance(value, str):
            raise BadRequest(f"Invalid input for field '{field}/{key}': the value must be "
                             "a string.")
        if len(value) > MAX_VALUE_LENGTH:
            raise BadRequest(f"Invalid input for field '{field}/{key}': values are at most "
                             f"{MAX_VALUE_LENGTH} characters long.")
    return dict(items)


def check_mutable(instance: Instance, action: str) -> None:
    if instance.vm_state not in MUTABLE_STATES or instance.task_state is not None:
        raise Conflict(f"Cannot '{action}' instance {instance.uuid} while it is in vm_state "
                       f"{instance.vm_state} and task_state {instance.task_state}.")


class ServerMetadata:
    """Servers' metadata items within one transaction, under the project's quota."""

    def __init__(self, txn: Txn, quotas: Quotas) -> None:
        self.txn = txn
        self.quotas = quotas

    @property
    def session(self) -> AsyncSession:
        """The transaction's ORM session, made when first used (a boot's metadata check
        needs none)."""
        return self.txn.session

    async def check_quota(self, project_id: str, count: int, *,
                          limits: Mapping[str, int] | None = None) -> None:
        """Raise ``QuotaExceeded`` (403) when ``count`` items on a server are more than the
        quota allows; ``limits``: the project's, if read already in this transaction."""
        if limits is None:
            limits = await self.quotas.limits(project_id)
        limit = limits["metadata_items"]
        if 0 <= limit < count:
            raise QuotaExceeded(f"Quota exceeded for metadata_items: Requested {count}, but "
                                f"the limit is {limit} per server.")

    async def replace(self, instance: Instance, items: dict[str, str], *,
                      merge: bool) -> dict[str, str]:
        """Set the server's metadata to ``items`` (``merge``: on top of what it has)."""
        new = {**(instance.server_metadata or {}), **items} if merge else dict(items)
        await self.check_quota(instance.project_id, len(new))
        instance.server_metadata = new  # a new dict, so the JSON column sees the change
        await self.session.flush()
        return new

    async def delete_key(self, instance: Instance, key: str) -> None:
        current = dict(instance.server_metadata or {})
        current.pop(key)
        instance.server_metadata = current
        await self.session.flush()

