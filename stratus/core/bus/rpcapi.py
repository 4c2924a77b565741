"""The base of a unit's typed bus client: ``stratus/<service>/rpcapi.py``.

Each unit that serves bus methods ships one ``rpcapi`` class: one typed method per remote
method, so callers never name methods by string or build messages. For example::

    class SchedulerAPI(RPCAPI):
        TOPIC = "scheduler"
        VERSION = "1.0"

        async def select_destinations(self, ctx: RequestContext,
                                      spec: RequestSpec) -> list[str]:
            return self.result(list[str], await self.client.call(
                ctx, "select_destinations", spec=spec))

        async def build(self, ctx: RequestContext, host: str, instance_id: str) -> None:
            await self.client.prepare(server=host).cast(ctx, "build", instance_id=instance_id)

The unit's manager is the matching :class:`~stratus.core.bus.server.RPCServer`, serving
``TOPIC`` with an allow-list of the same method names (``stratus.core.bus.contract`` checks
that the two agree).

``ERRORS`` lists the ``StratusError`` types the manager raises that callers handle: a call
re-raises them as themselves (still ``RemoteError`` too), so callers catch types::

    class ConductorAPI(RPCAPI):
        TOPIC = "conductor"
        ERRORS = (UnexpectedTaskState,)
    ...
    try:
        await conductor.instance_update(ctx, uuid, update, expected)
    except UnexpectedTaskState:
        ...
"""

from __future__ import annotations

from collections.abc import Hashable
from functools import lru_cache
from typing import Any, ClassVar, TypeVar, cast

from pydantic import TypeAdapter

from stratus.core.bus.client import DEFAULT_CALL_TIMEOUT, RPCClient
from stratus.core.bus.target import Target
from stratus.core.bus.transport.base import Transport
from stratus.core.exceptions import StratusError

T = TypeVar("T")


@lru_cache(maxsize=512)
def _adapter(kind: Hashable) -> TypeAdapter[Any]:
    return TypeAdapter(cast(Any, kind))


class RPCAPI:
    """Holds an :class:`RPCClient` for ``TOPIC`` at ``VERSION``."""

    TOPIC: ClassVar[str]
    VERSION: ClassVar[str] = "1.0"
    #: Remote error types re-raised by name (an allow-list; see ``errors.remote_error``).
    ERRORS: ClassVar[tuple[type[StratusError], ...]] = ()

    def __init__(self, transport: Transport, *, timeout: float = DEFAULT_CALL_TIMEOUT) -> None:
        self.client = RPCClient(transport, Target(self.TOPIC, version=self.VERSION),
                                timeout=timeout, errors=self.ERRORS)

    @staticmethod
    def result(kind: type[T], value: Any) -> T:
        """``value`` (a call's JSON result) validated and converted to ``kind``."""
        adapted: T = _adapter(cast(Hashable, kind)).validate_python(value)
        return adapted
