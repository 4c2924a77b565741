"""The compute agent's event waiters (``stratus.compute.agent.events``)."""

from __future__ import annotations

import asyncio

import pytest

from stratus.compute.agent.events import (
    EventFailed,
    EventsCancelled,
    EventTimeout,
    InstanceEvents,
)
from stratus.compute.objects import ExternalEvent

UUID = "6f1a2b3c-0000-4000-8000-000000000001"


def plugged(port: str, status: str = "completed") -> ExternalEvent:
    return ExternalEvent(name="network-vif-plugged", tag=port, status=status)


async def test_an_event_that_arrives_before_the_wait_is_kept() -> None:
    events = InstanceEvents()
    waiter = events.prepare(UUID, ["network-vif-plugged:p1", "network-vif-plugged:p2"])
    assert events.dispatch(UUID, plugged("p1"))
    assert events.waiting(UUID) == ["network-vif-plugged:p2"]
    later = asyncio.get_running_loop().call_later(0.01, events.dispatch, UUID, plugged("p2"))
    try:
        statuses = await waiter.wait(5)
    finally:
        later.cancel()
    assert statuses == {"network-vif-plugged:p1": "completed",
                        "network-vif-plugged:p2": "completed"}
    assert events.waiting(UUID) == []
    assert not events.dispatch(UUID, plugged("p1")), "a finished waiter takes nothing more"


async def test_a_timeout_names_the_missing_events_and_forgets_the_waiter() -> None:
    events = InstanceEvents()
    waiter = events.prepare(UUID, ["network-vif-plugged:p1", "network-vif-plugged:p2"])
    events.dispatch(UUID, plugged("p2"))
    with pytest.raises(EventTimeout) as caught:
        await waiter.wait(0.01)
    assert caught.value.missing == ["network-vif-plugged:p1"]
    assert "network-vif-plugged:p1" in str(caught.value) and UUID in str(caught.value)
    assert events.waiting(UUID) == []
    assert not events.dispatch(UUID, plugged("p1"))


async def test_events_for_nobody_are_dropped() -> None:
    events = InstanceEvents()
    events.prepare(UUID, ["network-vif-plugged:p1"])
    assert not events.dispatch(UUID, plugged("other-port"))
    assert not events.dispatch("another-instance", plugged("p1"))
    assert not events.dispatch(UUID, ExternalEvent(name="network-changed", tag="p1"))
    assert events.waiting(UUID) == ["network-vif-plugged:p1"]


async def test_untagged_events_are_matched_by_name() -> None:
    events = InstanceEvents()
    waiter = events.prepare(UUID, ["volume-extended"])
    assert events.dispatch(UUID, ExternalEvent(name="volume-extended"))
    assert await waiter.wait(1) == {"volume-extended": "completed"}


async def test_a_failed_event_fails_the_wait_unless_asked_not_to() -> None:
    events = InstanceEvents()
    waiter = events.prepare(UUID, ["network-vif-plugged:p1"])
    events.dispatch(UUID, plugged("p1", "failed"))
    with pytest.raises(EventFailed) as caught:
        await waiter.wait(1)
    assert caught.value.failed == ["network-vif-plugged:p1"]
    tolerant = events.prepare(UUID, ["network-vif-plugged:p1"])
    events.dispatch(UUID, plugged("p1", "failed"))
    assert await tolerant.wait(1, fail_on_failed=False) == {"network-vif-plugged:p1": "failed"}


async def test_cancelling_wakes_every_waiter_of_the_instance() -> None:
    events = InstanceEvents()
    first = events.prepare(UUID, ["network-vif-plugged:p1"])
    second = events.prepare(UUID, ["network-vif-plugged:p2"])
    other = events.prepare("another", ["network-vif-plugged:p3"])
    waits = [asyncio.create_task(w.wait(5)) for w in (first, second)]
    await asyncio.sleep(0)
    events.cancel_all(UUID)
    for task in waits:
        with pytest.raises(EventsCancelled):
            await task
    assert events.waiting(UUID) == []
    assert events.waiting("another") == ["network-vif-plugged:p3"]
    other.close()
    assert events.waiting("another") == []


async def test_two_waiters_of_one_instance_each_get_their_events() -> None:
    events = InstanceEvents()
    first = events.prepare(UUID, ["network-vif-plugged:p1"])
    second = events.prepare(UUID, ["network-vif-plugged:p1"])
    assert events.dispatch(UUID, plugged("p1"))
    assert events.dispatch(UUID, plugged("p1"))
    assert await first.wait(1) == {"network-vif-plugged:p1": "completed"}
    assert await second.wait(1) == {"network-vif-plugged:p1": "completed"}
