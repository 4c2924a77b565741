"""The compute agent's one writer of an instance's ``network_info`` at a time: an interface
change and a floating-IP refresh of one server wait for each other, other servers do not,
and no lock outlives its users."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from stratus.compute.agent.manager import ComputeAgentManager
from stratus.compute.rpcapi import ConductorAPI
from stratus.compute.virt.fake import FakeDriver


def _agent() -> ComputeAgentManager:
    return ComputeAgentManager("lock-host", FakeDriver(), cast(ConductorAPI, None))


async def test_writers_of_one_instance_take_turns_and_others_do_not_wait() -> None:
    agent = _agent()
    order: list[str] = []
    release = asyncio.Event()

    async def writer(instance: str, name: str, hold: bool) -> None:
        async with agent._network_info_lock(instance):
            order.append(f"{name} in")
            if hold:
                await release.wait()
            order.append(f"{name} out")

    first = asyncio.create_task(writer("vm-1", "attach", hold=True))
    await asyncio.sleep(0)
    second = asyncio.create_task(writer("vm-1", "refresh", hold=False))
    other = asyncio.create_task(writer("vm-2", "other", hold=False))
    await asyncio.wait_for(other, 5)
    assert order == ["attach in", "other in", "other out"]  # vm-1's refresh still waits
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert order[3:] == ["attach out", "refresh in", "refresh out"]
    assert agent._network_info_locks == {}


async def test_a_third_writer_arriving_while_the_lock_changes_hands_still_waits() -> None:
    agent = _agent()
    inside: list[int] = []
    most = 0

    async def writer() -> None:
        nonlocal most
        async with agent._network_info_lock("vm-1"):
            inside.append(1)
            most = max(most, len(inside))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            inside.pop()

    async def staggered(delay_steps: int) -> Any:
        for _ in range(delay_steps):
            await asyncio.sleep(0)
        await writer()

    await asyncio.wait_for(asyncio.gather(*(staggered(i) for i in range(6))), 5)
    assert most == 1
    assert agent._network_info_locks == {}
