"""A compute host's external events reach it while its builds fill its cast queue, and a
dead host does not hold their sender.

A build (a cast) holds its delivery while it waits for ``network-vif-plugged``; the host
takes at most ``prefetch`` casts at a time. Events must not queue behind the builds that wait
for them (issue 20's chaos run: an L2 agent away for 20 s left more builds waiting on one host
than its prefetch, and all of them stalled until the 300 s plugging timeout). They are casts
on the host's own events topic, served apart from its builds (as ``serve_agent`` does).
"""

from __future__ import annotations

import asyncio
from typing import Any

from stratus.compute.agent.manager import ComputeAgentManager
from stratus.compute.objects import ExternalEvent
from stratus.compute.rpcapi import COMPUTE_EVENTS_TOPIC, COMPUTE_TOPIC, ComputeAgentAPI
from stratus.core.bus import RPCClient, Target, Transport
from stratus.core.bus.target import cast_queue
from stratus.core.context import RequestContext
from tests.integration.bus.conftest import (
    ServerFactory,
    TransportFactory,
    eventually,
    wait_pending,
)

PLUGGED = [ExternalEvent(name="network-vif-plugged", tag="p")]


class WaitingHost:
    """Builds that wait for their instance's event, as a compute host's do."""

    BUILD_METHODS = ("build_and_run_instance",)
    EVENT_METHODS = ComputeAgentManager.EVENT_METHODS

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


async def _serve(servers: ServerFactory, transport: Transport, host: WaitingHost,
                 name: str) -> None:
    """The host's builds (two at a time) on ``compute.<name>``; its events on a consumer of
    their own. The build queue's server does not take events: one sent there would be
    refused (and the build waiting for it would never finish)."""
    await servers(transport, Target(COMPUTE_EVENTS_TOPIC, server=name), host,
                  WaitingHost.EVENT_METHODS)
    await servers(transport, Target(COMPUTE_TOPIC, server=name), host,
                  WaitingHost.BUILD_METHODS, prefetch=2)


async def test_events_reach_a_host_whose_builds_fill_its_cast_queue(
        transports: TransportFactory, servers: ServerFactory) -> None:
    host = WaitingHost()
    await _serve(servers, await transports(), host, "host-1")
    ctx = RequestContext.for_service("compute-api")
    builds = RPCClient(await transports(), Target(COMPUTE_TOPIC, server="host-1"))
    for n in range(3):  # more than the host takes at once
        await builds.cast(ctx, "build_and_run_instance", instance_uuid=f"i-{n}")
    # The host holds two builds, both waiting; the third waits in the queue behind them.
    await eventually(lambda: len(host.plugged) == 2, message="two builds taken")
    agents = ComputeAgentAPI(await transports())
    for n in range(3):
        await agents.external_instance_event(ctx, "host-1", f"i-{n}", PLUGGED)
    await eventually(lambda: sorted(host.built) == ["i-0", "i-1", "i-2"])


async def test_an_event_for_a_dead_host_waits_in_its_queue_not_in_the_sender(
        transports: TransportFactory, servers: ServerFactory) -> None:
    """No host consumes ``compute-events.host-2``: sending returns once the broker holds the
    event (a call would wait for an answer until its timeout, then fail); the host takes
    it when it comes back."""
    ctx = RequestContext.for_service("compute-api")
    sender = await transports()
    agents = ComputeAgentAPI(sender)
    await agents.external_instance_event(ctx, "host-2", "i-0", PLUGGED)
    await wait_pending(sender, cast_queue(COMPUTE_EVENTS_TOPIC, "host-2"), 1)

    host = WaitingHost()
    waiting = host._event("i-0")
    await _serve(servers, await transports(), host, "host-2")
    await eventually(waiting.is_set, message="the queued event handled")
    await wait_pending(sender, cast_queue(COMPUTE_EVENTS_TOPIC, "host-2"), 0)
