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
import json
from pathlib import Path
from typing import Any

import pytest

from stratus.compute.agent.manager import ComputeAgentManager
from stratus.compute.objects import ExternalEvent
from stratus.compute.rpcapi import COMPUTE_EVENTS_TOPIC, COMPUTE_TOPIC, ComputeAgentAPI
from stratus.compute.units import serve_agent
from stratus.core.bus import RPCClient, Target, Transport
from stratus.core.bus.target import call_queue, cast_queue, fanout_exchange
from stratus.core.bus.url import TransportURL
from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.stack import Stack
from tests.conftest import rabbitmqctl
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
                  WaitingHost.EVENT_METHODS, host_only=True)
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


class WaitingAgent(WaitingHost):
    """A ``WaitingHost`` as ``serve_agent`` takes a compute host's manager."""

    METHODS = WaitingHost.BUILD_METHODS
    EVENT_PREFETCH = ComputeAgentManager.EVENT_PREFETCH

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host


async def _declared(vhost: str, what: str) -> set[str]:
    """The names of ``what`` (``queues``, ``exchanges``) in ``vhost``, as the broker lists
    them."""
    listed = await rabbitmqctl(f"list_{what}", "-p", vhost, "--formatter", "json", "name")
    return {entry["name"] for entry in json.loads(listed)}


@pytest.mark.rabbitmq
async def test_a_hosts_events_topic_is_its_own_queues_only(rabbit_url: str,
                                                           tmp_path: Path) -> None:
    """``serve_agent`` serves ``compute-events`` for its host only: events are always sent
    to a host, so the topic's shared queues and its fanout are not declared on RabbitMQ
    (nor consumed), while the ``compute`` topic's are; the host's events still arrive."""
    stack = Stack(Settings(data_dir=tmp_path, bus_url=rabbit_url))
    host = WaitingAgent("host-1")
    try:
        await serve_agent(stack, host)  # type: ignore[arg-type]
        vhost = TransportURL.parse(rabbit_url).virtual_host
        queues = await _declared(vhost, "queues")
        assert {cast_queue(COMPUTE_EVENTS_TOPIC, "host-1"),
                call_queue(COMPUTE_EVENTS_TOPIC, "host-1")} <= queues
        assert not queues & {cast_queue(COMPUTE_EVENTS_TOPIC), call_queue(COMPUTE_EVENTS_TOPIC)}
        assert not any(name.startswith(fanout_exchange(COMPUTE_EVENTS_TOPIC))
                       for name in queues)  # a fanout's queues are named after its exchange
        assert fanout_exchange(COMPUTE_EVENTS_TOPIC) not in await _declared(vhost, "exchanges")
        # The builds' topic, served as before: shared queues beside the host's.
        assert {cast_queue(COMPUTE_TOPIC), cast_queue(COMPUTE_TOPIC, "host-1")} <= queues

        assert stack.bus is not None
        waiting = host._event("i-0")
        await ComputeAgentAPI(stack.bus).external_instance_event(
            RequestContext.for_service("compute-api"), "host-1", "i-0", PLUGGED)
        await eventually(waiting.is_set, message="the event handled")
    finally:
        await stack.aclose()
