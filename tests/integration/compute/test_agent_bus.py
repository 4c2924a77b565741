"""The compute agent's event and power-sync messages over each bus (memory, RabbitMQ),
with a real conductor on SQLite and PostgreSQL: the casts and calls carry their typed
arguments (``ExternalEvent``, ``InstanceStates``) across the wire."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratus.compute import states
from stratus.compute.models import Instance
from stratus.compute.objects import ExternalEvent
from stratus.compute.rpcapi import ComputeAgentAPI
from stratus.compute.virt.driver import GuestSpec, PowerState
from stratus.compute.virt.fake import FakeDriver
from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.stack import Stack
from stratus.units import root_app

CTX = RequestContext(user_id="u", project_id="p", roles=["admin"])


@pytest.fixture
async def stack(db_url: str, bus_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    settings = Settings(data_dir=tmp_path, database_url=db_url, bus_url=bus_url,
                        compute={"fake_hosts": 1, "host": "node", "virt_driver": "fake"})
    stack = Stack(settings)
    try:
        await root_app(stack, ["conductor", "compute-agent"])
        yield stack
    finally:
        await stack.aclose()


async def _active_instance(stack: Stack) -> str:
    """An ACTIVE instance on ``node`` with its guest running on the fake hypervisor."""
    uuid = str(uuidlib.uuid4())
    assert stack.compute is not None
    async with stack.compute.service() as svc:
        svc.session.add(Instance(
            uuid=uuid, display_name="vm", hostname="vm", project_id="p", user_id="u",
            reservation_id="r-1", flavor_id="1", vm_state=states.ACTIVE,
            flavor={"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 64, "disk": 1},
            power_state=int(PowerState.RUNNING), host="node", node="node"))
    driver = stack.agents[0].driver
    await driver.spawn(GuestSpec(uuid=uuid, name="vm", vcpus=1, memory_mb=64, root_gb=1))
    return uuid


async def test_external_events_cross_the_bus(stack: Stack) -> None:
    uuid = await _active_instance(stack)
    agent = stack.agents[0]
    waiter = agent.events.prepare(uuid, ["network-vif-plugged:port-1", "network-changed"])
    assert stack.bus is not None
    await ComputeAgentAPI(stack.bus).external_instance_event(CTX, "node", uuid, [
        ExternalEvent(name="network-vif-plugged", tag="port-1", status="completed"),
        ExternalEvent(name="network-changed")])
    assert await waiter.wait(20) == {"network-vif-plugged:port-1": "completed",
                                     "network-changed": "completed"}


async def test_power_sync_through_the_conductor(stack: Stack) -> None:
    uuid = await _active_instance(stack)
    agent = stack.agents[0]
    driver = agent.driver
    assert isinstance(driver, FakeDriver)
    driver.crash(uuid)
    applied = await agent.power_sync.run_once(CTX)
    assert list(applied) == [uuid]
    assert stack.compute is not None
    async with stack.compute.service() as svc:
        row = await svc.instances.get(uuid)
        assert (row.vm_state, row.power_state, row.task_state) == (
            states.STOPPED, int(PowerState.SHUTDOWN), None)
    assert (await driver.get_info(uuid)).power_state == PowerState.SHUTDOWN
    assert await agent.power_sync.run_once(CTX) == {}
