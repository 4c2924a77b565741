"""A compute host's external events reach it while its builds fill its cast queue.

A build (a cast) holds its delivery while it waits for ``network-vif-plugged``; the host
takes at most ``prefetch`` casts at a time. Events must not queue behind the builds that wait
for them (issue 20's chaos run: an L2 agent away for 20 s left more builds waiting on one host
than its prefetch, and all of them stalled until the 300 s plugging timeout).
"""

from __future__ import annotations

import asyncio
from typing import Any

from stratus.compute.objects import ExternalEvent
from stratus.compute.rpcapi import COMPUTE_TOPIC, ComputeAgentAPI
from stratus.core.bus import RPCClient, Target
from stratus.core.context import RequestContext
from tests.integration.bus.conftest import ServerFactory, TransportFactory, eventually


class WaitingHost:
    """Builds that wait for their instance's event, as a compute host's do."""

    METHODS = ("build_and_run_instance", "external_instance_event")

    def __init__(self) -> None:
        self.plugged: dict[str, asyncio.Event] = {}
        self.built: list[str] = []

    def _event(self, instance_uuid: str) -> asyncio.Event:
        return self.plugged.setdefault(instance_uuid, asyncio.Event())

    async def build_and_run_instance(self, ctx: RequestContext, instance_uuid: str) -> None:
        await self._event(instance_uuid).wait()
        self.built.append(instance_uuid)

    async def external_instance_event(self, ctx: RequestContext, instance_uuid: str,
                                      events: list[Any]) -> None:
        self._event(instance_uuid).set()


async def test_events_reach_a_host_whose_builds_fill_its_cast_queue(
        transports: TransportFactory, servers: ServerFactory) -> None:
    host = WaitingHost()
    await servers(await transports(), Target(COMPUTE_TOPIC, server="host-1"), host,
                  WaitingHost.METHODS, prefetch=2)
    ctx = RequestContext.for_service("compute-api")
    builds = RPCClient(await transports(), Target(COMPUTE_TOPIC, server="host-1"))
    for n in range(3):  # more than the host takes at once
        await builds.cast(ctx, "build_and_run_instance", instance_uuid=f"i-{n}")
    agents = ComputeAgentAPI(await transports())
    plugged = [ExternalEvent(name="network-vif-plugged", tag="p")]
    await asyncio.gather(*(asyncio.wait_for(
        agents.external_instance_event(ctx, "host-1", f"i-{n}", plugged), 30)
        for n in range(3)))
    await eventually(lambda: sorted(host.built) == ["i-0", "i-1", "i-2"])
