"""At-least-once delivery on both transports: load, consumers that die, poison messages."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from stratus.core.bus import RPCClient, RPCServer, Target
from stratus.core.bus.envelope import decode_request
from stratus.core.bus.target import dead_letter_queue
from stratus.core.bus.transport import Incoming, QueueSpec
from tests.integration.bus.conftest import (
    Recorder,
    TransportFactory,
    context,
    eventually,
    wait_pending,
)

ServerFactory = Callable[..., Awaitable[RPCServer]]


async def test_10000_casts_across_3_consumers_each_handled_once(
        transports: TransportFactory, servers: ServerFactory) -> None:
    managers = [Recorder(f"c{i}") for i in range(3)]
    for manager in managers:
        await servers(await transports(), Target("load"), manager)
    client = RPCClient(await transports(), Target("load"))
    ctx = context()
    gate = asyncio.Semaphore(200)

    async def cast(item: int) -> None:
        async with gate:
            await client.cast(ctx, "record", item=item)

    await asyncio.gather(*(cast(item) for item in range(10_000)))
    await eventually(lambda: sum(sum(m.items.values()) for m in managers) >= 10_000,
                     within=60, message="10,000 casts handled")
    await asyncio.sleep(0.2)
    total: Counter[int] = Counter()
    for manager in managers:
        total.update(manager.items)
    assert len(total) == 10_000 and set(total.values()) == {1}
    assert all(sum(m.items.values()) > 0 for m in managers), "every consumer took a share"


async def test_consumer_killed_mid_handler_does_not_lose_its_message(
        transports: TransportFactory, servers: ServerFactory) -> None:
    doomed_transport = await transports()
    doomed = Recorder("doomed")
    doomed_server = RPCServer(doomed_transport, Target("fragile"), doomed, Recorder.METHODS)
    await doomed_server.start()
    client = RPCClient(await transports(), Target("fragile"))
    await client.cast(context(), "block", item=1)
    await asyncio.wait_for(doomed.started.wait(), 10)

    survivor = Recorder("survivor")
    survivor.release.set()
    await servers(await transports(), Target("fragile"), survivor)
    await asyncio.sleep(0.2)
    assert survivor.finished == 0, "the message is held by the consumer handling it"

    await doomed_transport.close()  # the process dies: its connection goes away
    await eventually(lambda: survivor.items[1] == 1, message="redelivery to the survivor")
    doomed.release.set()
    await doomed_server.stop(drain_timeout=1)  # its late ack goes nowhere
    await asyncio.sleep(0.2)
    assert survivor.items[1] == 1


async def test_poison_message_ends_in_the_dead_letter_queue(
        transports: TransportFactory, servers: ServerFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    transport = await transports()
    manager = Recorder()
    await servers(await transports(), Target("poison"), manager)
    client = RPCClient(transport, Target("poison"))
    ctx = context()
    with caplog.at_level(logging.WARNING, logger="stratus.core.bus"):
        await client.cast(ctx, "fail", message="always")
        await wait_pending(transport, dead_letter_queue("poison"), 1)
    assert manager.items["always"] == transport.options.max_attempts == 3
    dead_lines = [r.getMessage() for r in caplog.records
                  if "dead-letter queue after 3 attempts" in r.getMessage()]
    assert len(dead_lines) == 1 and ctx.request_id in dead_lines[0]
    assert dead_lines[0].count("ValueError: always") == 1

    # The dead letter is the message as sent, request id and all.
    got: list[Incoming] = []
    subscription = await transport.subscribe(QueueSpec.dead("poison"), got.append,
                                             prefetch=10)
    await eventually(lambda: len(got) == 1)
    dead = decode_request(got[0].body)
    assert (dead.method, dead.context.request_id, dead.args) == (
        "fail", ctx.request_id, {"message": "always"})
    await got[0].ack()
    await subscription.close()

    # The server goes on with the next message.
    await client.cast(ctx, "record", item=5)
    await eventually(lambda: manager.items[5] == 1)


async def test_messages_that_can_never_succeed_are_dead_lettered_at_once(
        transports: TransportFactory, servers: ServerFactory) -> None:
    transport = await transports()
    manager = Recorder()
    await servers(await transports(), Target("garbage"), manager)
    client = RPCClient(transport, Target("garbage"))
    await transport.send(QueueSpec.cast("garbage"), b"\x00not json", msg_id="x1")
    await transport.send(QueueSpec.cast("garbage"), b'{"v": 99, "id": "x2"}', msg_id="x2")
    await client.cast(context(), "record", item="wrong", extra=1)
    await client.cast(context(), "no_such_method")
    await wait_pending(transport, dead_letter_queue("garbage"), 4)
    assert not manager.items


async def test_consumer_that_keeps_dying_on_a_message_gets_it_dead_lettered(
        transports: TransportFactory) -> None:
    """Delivery counting is the broker's: it holds even when no handler ever returns."""
    client_transport = await transports()
    client = RPCClient(client_transport, Target("crashy"))
    await client.cast(context(), "block", item=1)
    deliveries = 0
    for _ in range(10):
        if await client_transport.pending(dead_letter_queue("crashy")) == 1:
            break
        transport = await transports()
        manager = Recorder()
        server = RPCServer(transport, Target("crashy"), manager, Recorder.METHODS)
        await server.start()
        try:
            await asyncio.wait_for(manager.started.wait(), 2)
            deliveries += 1
        except TimeoutError:
            pass
        await transport.close()
        await server.stop(drain_timeout=0)
    await wait_pending(client_transport, dead_letter_queue("crashy"), 1)
    # max_attempts (3) deliveries the server counts, plus the broker's own last one.
    assert deliveries == client_transport.options.max_attempts + 1
