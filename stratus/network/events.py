"""External events to compute-api (``network-vif-plugged`` / ``-unplugged``), sent from a queue.

Port updates only enqueue: a background task posts batches to
``{compute endpoint}/os-server-external-events`` with this service's own token
(``stratus.core.clients.compute.ComputeClient``), so a slow
or absent compute-api never holds up the network API. A 404 (no such server: nothing waits
for the event) is normal; a refusal (another 4xx) is logged and the batch dropped. An
unreachable or failing compute-api (a restart) is tried again with backoff for
``retry_for`` seconds, less than a compute host waits for ``network-vif-plugged``: a batch
dropped then would hold a build until that wait runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

from stratus.core.clients.compute import ComputeClient
from stratus.core.exceptions import NotFound, ServiceUnavailable, StratusError

LOG = logging.getLogger(__name__)

#: Events sent in one request at most.
BATCH = 100


@dataclass(frozen=True)
class ServerEvent:
    name: str  # network-vif-plugged | network-vif-unplugged
    server_uuid: str
    tag: str  # the port id
    status: str = "completed"

    def body(self) -> dict[str, str]:
        return {"name": self.name, "server_uuid": self.server_uuid, "tag": self.tag,
                "status": self.status}


class EventSink(Protocol):
    def send(self, event: ServerEvent) -> None: ...


class DiscardEvents:
    """Where events go when no compute service is configured (tests of the API alone)."""

    def __init__(self) -> None:
        self.sent: list[ServerEvent] = []

    def send(self, event: ServerEvent) -> None:
        self.sent.append(event)


class ComputeEventSender:
    """Queues events and posts them to compute-api in the background."""

    def __init__(self, client: ComputeClient, *, retry_for: float = 120.0,
                 backoff: tuple[float, float] = (0.5, 5.0)) -> None:
        self.client = client
        self.retry_for = retry_for
        self.backoff = backoff
        self.queue: asyncio.Queue[ServerEvent] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def send(self, event: ServerEvent) -> None:
        self.queue.put_nowait(event)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="network-compute-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                await self._post(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                LOG.warning("could not send %d external event(s) to compute: %s",
                            len(batch), exc)

    async def _post(self, batch: list[ServerEvent]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        delay = self.backoff[0]
        while True:
            try:
                await self.client.server_external_events([e.body() for e in batch])
            except NotFound:
                pass  # no such server: nothing waits for the event
            except ServiceUnavailable as exc:  # compute-api unreachable or failing
                if loop.time() + delay > deadline:
                    LOG.warning("compute unreachable for %g s; %d external event(s) dropped: "
                                "%s", self.retry_for, len(batch), exc.message)
                    return
                LOG.info("compute unreachable, %d external event(s) sent again in %g s: %s",
                         len(batch), delay, exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])
                continue
            except StratusError as exc:  # refused
                LOG.warning("compute refused %d external event(s): %s", len(batch),
                            exc.message)
                return
            LOG.debug("external events sent: %s", [e.name for e in batch])
            return
