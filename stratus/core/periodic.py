"""Work a unit repeats for as long as it runs: heartbeats, resyncs, watchdogs, state syncs.

Contracts:
- ``Periodic.start`` runs the action first one interval after the start (the unit did its
  start-up run itself), then one interval after the end of each run: runs never overlap.
- A run that raises is logged with its traceback under the periodic's name, and the next run
  still comes: periodic work must outlive a broker restart or a database hiccup.
- ``stop`` cancels the task and waits until it has ended; stopping twice, or before starting,
  does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

LOG = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[object] | None) -> None:
    """Cancel ``task`` and wait until it has ended; its cancellation is not re-raised."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Periodic:
    """``action`` every ``interval`` seconds, in a task of its own, until ``stop``."""

    def __init__(self, name: str, interval: float,
                 action: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self.interval = interval
        self.action = action
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._forever(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.action()
            except Exception:
                LOG.exception("%s failed; will run again in %.0f s", self.name, self.interval)
