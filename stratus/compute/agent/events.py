"""Waiting on a compute host for events other services report about an instance.

The network service tells compute when a port is wired (``network-vif-plugged``), unwired,
changed; compute-api receives those reports (``os-server-external-events``) and casts them
to the instance's host, where they land here.

Contract, for build code and the like:

* Register BEFORE triggering the action the events answer, so an event that arrives fast
  is never missed::

      waiter = agent.events.prepare(uuid, [f"network-vif-plugged:{port_id}"])
      ...  # ask the network service to bind the port
      statuses = await waiter.wait(timeout)   # {"network-vif-plugged:<port>": "completed"}

* ``wait`` raises :class:`EventTimeout` naming the events that never came, and
  :class:`EventFailed` when one arrived with status ``failed`` (unless the caller passes
  ``fail_on_failed=False``). Either way the waiter is forgotten: nothing leaks.
* ``dispatch`` completes the matching waiter; an event nobody waits for is logged and
  dropped (it is normal: e.g. a port re-plugged after a host restart).
* ``cancel_all(uuid)`` (instance deleted) wakes every waiter of the instance with
  :class:`EventsCancelled`.

A key is ``<name>:<tag>`` for tagged events (the tag is the port id for the network
events) and the bare name otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from stratus.compute.objects import ExternalEvent

LOG = logging.getLogger(__name__)


class EventError(Exception):
    """Base of the ways a wait for instance events can end badly."""


class EventTimeout(EventError):
    def __init__(self, instance_uuid: str, missing: list[str], timeout: float) -> None:
        self.instance_uuid = instance_uuid
        self.missing = missing
        super().__init__(f"Timed out after {timeout:g} s waiting for event(s) "
                         f"{', '.join(missing)} of instance {instance_uuid}.")


class EventFailed(EventError):
    def __init__(self, instance_uuid: str, failed: list[str]) -> None:
        self.instance_uuid = instance_uuid
        self.failed = failed
        super().__init__(f"Event(s) {', '.join(failed)} of instance {instance_uuid} "
                         "reported failure.")


class EventsCancelled(EventError):
    def __init__(self, instance_uuid: str, reason: str) -> None:
        self.instance_uuid = instance_uuid
        super().__init__(f"Waiting for events of instance {instance_uuid} was cancelled: "
                         f"{reason}")


class EventWaiter:
    """The events one piece of code waits for on one instance."""

    def __init__(self, registry: InstanceEvents, instance_uuid: str,
                 keys: list[str]) -> None:
        self.registry = registry
        self.instance_uuid = instance_uuid
        loop = asyncio.get_running_loop()
        self._futures: dict[str, asyncio.Future[str]] = {k: loop.create_future() for k in keys}
        self._closed = False

    @property
    def keys(self) -> list[str]:
        return list(self._futures)

    def _offer(self, event: ExternalEvent) -> bool:
        future = self._futures.get(event.key)
        if future is None or future.done():
            return False
        future.set_result(event.status)
        return True

    def _cancel(self, reason: str) -> None:
        for future in self._futures.values():
            if not future.done():
                future.set_exception(EventsCancelled(self.instance_uuid, reason))

    async def wait(self, timeout: float, *,  # noqa: ASYNC109 - the timeout names the events
                   fail_on_failed: bool = True) -> dict[str, str]:
        """Every awaited event's status, once all arrived; see the module's contract."""
        try:
            if self._futures:
                done, pending = await asyncio.wait(self._futures.values(), timeout=timeout)
                if pending:
                    missing = [k for k, f in self._futures.items() if not f.done()]
                    raise EventTimeout(self.instance_uuid, missing, timeout)
                for future in done:
                    future.result()  # raises EventsCancelled if the wait was cancelled
            statuses = {k: f.result() for k, f in self._futures.items()}
        finally:
            self.close()
        failed = [k for k, status in statuses.items() if status == "failed"]
        if failed and fail_on_failed:
            raise EventFailed(self.instance_uuid, failed)
        return statuses

    def close(self) -> None:
        """Stop waiting (idempotent); later events for these keys are dropped."""
        if self._closed:
            return
        self._closed = True
        for future in self._futures.values():
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # mark retrieved: no "never retrieved" warnings
        self.registry._forget(self)


class InstanceEvents:
    """The registry of a compute host's waiters, by instance."""

    def __init__(self) -> None:
        self._waiters: dict[str, list[EventWaiter]] = {}

    def prepare(self, instance_uuid: str, keys: Iterable[str]) -> EventWaiter:
        waiter = EventWaiter(self, instance_uuid, list(dict.fromkeys(keys)))
        self._waiters.setdefault(instance_uuid, []).append(waiter)
        return waiter

    def waiting(self, instance_uuid: str) -> list[str]:
        """The keys still awaited for the instance (for logs and tests)."""
        return [k for w in self._waiters.get(instance_uuid, [])
                for k, f in w._futures.items() if not f.done()]

    def dispatch(self, instance_uuid: str, event: ExternalEvent) -> bool:
        """Deliver ``event``; True if a waiter took it, False if it was dropped."""
        for waiter in self._waiters.get(instance_uuid, []):
            if waiter._offer(event):
                return True
        LOG.info("event %s (%s) for instance %s: nobody waits for it; dropped", event.key,
                 event.status, instance_uuid)
        return False

    def cancel_all(self, instance_uuid: str, reason: str = "the instance is being deleted",
                   ) -> None:
        for waiter in list(self._waiters.get(instance_uuid, [])):
            waiter._cancel(reason)

    def _forget(self, waiter: EventWaiter) -> None:
        waiters = self._waiters.get(waiter.instance_uuid)
        if waiters is None:
            return
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            del self._waiters[waiter.instance_uuid]
