"""What only RabbitMQ can show: connections closed by the broker, the broker restarted, a
consumer process killed with SIGKILL, several nodes in the URL.

Every test that stops the broker starts it again in a ``finally``: the broker is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from stratus.core.bus import (
    BusUnavailable,
    DeliveryFailed,
    RPCClient,
    RPCServer,
    Target,
    Transport,
    get_transport,
)
from stratus.core.bus.url import TransportURL
from stratus.core.context import RequestContext
from tests.conftest import rabbitmqctl
from tests.integration.bus.conftest import Recorder, answered, context, eventually

pytestmark = pytest.mark.rabbitmq

#: Casts per stream.
COUNT = 1000
#: Fast reconnection; casts may wait out a broker restart.
OPTIONS = {"reconnect_min": 0.05, "reconnect_max": 0.5, "send_timeout": 60}


def _vhost(url: str) -> str:
    return TransportURL.parse(url).virtual_host


@contextlib.asynccontextmanager
async def started(url: str, **options: object) -> AsyncIterator[Transport]:
    transport = get_transport(url, **{**OPTIONS, **options})
    await transport.start()
    try:
        yield transport
    finally:
        await transport.close()


async def broker_running() -> None:
    """Start the RabbitMQ app if it is stopped, and wait until it serves."""
    status = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "start_app", stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    await status.wait()
    await rabbitmqctl("await_startup")


class Idempotent:
    """Applies each sequence number once, however often it is delivered."""

    def __init__(self) -> None:
        self.applied: set[int] = set()
        self.invocations: Counter[int] = Counter()

    async def apply(self, ctx: RequestContext, seq: int) -> None:
        self.invocations[seq] += 1
        self.applied.add(seq)


class Stream:
    """What a stream of casts went through."""

    def __init__(self) -> None:
        self.manager = Idempotent()
        self.slowest_cast = 0.0
        self.connections_made: list[int] = []


async def stream_through(url: str, disrupt: Callable[[], Awaitable[None]],
                         count: int = COUNT) -> Stream:
    """Cast ``count`` messages at a steady pace (about 3 s), calling ``disrupt`` once a fifth
    of them went out; return once every message was handled."""
    stream = Stream()
    manager = stream.manager
    async with started(url) as server_transport, started(url) as client_transport:
        server = RPCServer(server_transport, Target("stream"), manager, ["apply"])
        await server.start()
        client = RPCClient(client_transport, Target("stream"))
        ctx = context()
        gate = asyncio.Semaphore(20)
        failures: list[BaseException] = []

        async def cast(seq: int) -> None:
            async with gate:
                began = time.monotonic()
                try:
                    await client.cast(ctx, "apply", seq=seq)
                except Exception as exc:
                    failures.append(exc)
                stream.slowest_cast = max(stream.slowest_cast, time.monotonic() - began)

        queued: list[int] = []

        async def produce() -> None:
            tasks = []
            for seq in range(count):
                tasks.append(asyncio.create_task(cast(seq)))
                queued.append(seq)
                await asyncio.sleep(0.003)
            await asyncio.gather(*tasks)

        producer = asyncio.create_task(produce())
        await eventually(lambda: len(queued) >= count // 5 and len(manager.applied) > 0,
                         within=30)
        await disrupt()
        await asyncio.wait_for(producer, 90)
        assert not failures, f"casts failed: {failures[:3]}"
        await eventually(lambda: len(manager.applied) == count, within=60,
                         message=f"all {count} casts handled")
        await asyncio.sleep(0.3)
        await server.stop(drain_timeout=5)
        for transport in (server_transport, client_transport):
            stream.connections_made.append(getattr(transport, "connections_made", 0))
    return stream


async def test_connections_closed_by_the_broker_during_a_stream_of_casts(
        rabbit_url: str) -> None:
    async def close_all() -> None:
        await rabbitmqctl("close_all_connections", "--vhost", _vhost(rabbit_url),
                          "stratus test: forced close")

    stream = await stream_through(rabbit_url, close_all)
    assert stream.connections_made == [2, 2], "both processes reconnected once"
    assert stream.manager.applied == set(range(COUNT))
    assert max(stream.manager.invocations.values()) == 1, "no message handled twice"


@pytest.mark.exclusive  # stops the broker every other test uses
async def test_broker_restart_during_a_stream_of_casts(rabbit_url: str) -> None:
    async def restart() -> None:
        try:
            await rabbitmqctl("stop_app")
            await asyncio.sleep(1.0)  # casts made now wait for the broker
        finally:
            await broker_running()

    try:
        stream = await stream_through(rabbit_url, restart)
    finally:
        await broker_running()
    assert stream.connections_made == [2, 2], "both processes reconnected once"
    assert stream.slowest_cast > 1.0, "some casts waited for the broker to come back"
    assert stream.manager.applied == set(range(COUNT))
    assert max(stream.manager.invocations.values()) == 1, "no message handled twice"


@pytest.mark.exclusive  # stops the broker every other test uses
async def test_cast_during_a_long_outage_fails_clearly_and_the_bus_recovers(
        rabbit_url: str) -> None:
    manager = Recorder()
    async with started(rabbit_url) as server_transport, started(rabbit_url) as transport:
        server = RPCServer(server_transport, Target("outage"), manager, Recorder.METHODS)
        await server.start()
        client = RPCClient(transport, Target("outage"), send_timeout=1.0)
        await client.cast(context(), "record", item="before")
        try:
            await rabbitmqctl("stop_app")
            began = time.monotonic()
            with pytest.raises(DeliveryFailed, match=r"not confirmed|unreachable"):
                await client.cast(context(), "record", item="during")
            assert time.monotonic() - began < 5
        finally:
            await broker_running()
        # Senders and consumers resume by themselves.
        await client.prepare(send_timeout=30).cast(context(), "record", item="after")
        await eventually(lambda: manager.items["after"] == 1, within=30)
        assert manager.items["before"] == 1 and manager.items["during"] == 0
        await server.stop()


async def test_consumer_process_killed_mid_handler_does_not_lose_its_message(
        rabbit_url: str) -> None:
    child = f"""
import asyncio, sys
sys.path.insert(0, {os.getcwd()!r})
from stratus.core.bus import RPCServer, Target, get_transport

class Stuck:
    async def block(self, ctx, item: int = 0) -> None:
        print("handling", flush=True)
        await asyncio.Event().wait()

async def main():
    transport = get_transport(sys.argv[1])
    await transport.start()
    await RPCServer(transport, Target("fragile"), Stuck(), ["block"]).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", child, rabbit_url, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    try:
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"ready\n"
        async with started(rabbit_url) as transport:
            await RPCClient(transport, Target("fragile")).cast(context(), "block", item=3)
            assert await asyncio.wait_for(process.stdout.readline(), 10) == b"handling\n"
            survivor = Recorder()
            survivor.release.set()
            async with RPCServer(transport, Target("fragile"), survivor, Recorder.METHODS):
                await asyncio.sleep(0.2)
                assert survivor.finished == 0, "the child holds the message"
                os.kill(process.pid, signal.SIGKILL)
                await eventually(lambda: survivor.items[3] == 1, within=10,
                                 message="redelivery after the consumer died")
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_several_nodes_in_the_url_are_tried_in_turn(rabbit_url: str) -> None:
    parsed = TransportURL.parse(rabbit_url)
    good = parsed.hosts[0]
    url = (f"rabbit://{good.username}:{good.password}@127.0.0.1:1,{good.host}:{good.port}"
           f"/{parsed.virtual_host}")
    manager = Recorder()
    async with started(url) as transport:
        async with RPCServer(transport, Target("cluster"), manager, Recorder.METHODS):
            assert await RPCClient(transport, Target("cluster")).call(context(), "add",
                                                                      a=1) == 2

    with pytest.raises(BusUnavailable, match=r"127\.0\.0\.1:1"):
        async with started(f"rabbit://guest:guest@127.0.0.1:1/{parsed.virtual_host}",
                           connect_timeout=0.5):
            pass


async def test_a_queue_deleted_behind_a_transports_back_is_declared_again_on_subscribe(
        rabbit_url: str) -> None:
    """The transport remembers which queues it declared; a consumer's queue deleted by an
    operator is answered 404 on ``basic.consume`` until it is declared again."""
    manager = Recorder()
    manager.release.set()
    async with started(rabbit_url) as transport:
        server = RPCServer(transport, Target("vanishing"), manager, Recorder.METHODS)
        await server.start()
        await server.stop(drain_timeout=1)
        await rabbitmqctl("delete_queue", "-p", _vhost(rabbit_url), "stratus.cast.vanishing")
        async with RPCServer(transport, Target("vanishing"), manager, Recorder.METHODS):
            await RPCClient(transport, Target("vanishing")).cast(context(), "record", item=5)
            await eventually(lambda: manager.items[5] == 1, within=10,
                             message="the cast reached the consumer of the new queue")


async def test_a_consumer_cancelled_by_the_broker_subscribes_again(rabbit_url: str) -> None:
    """RabbitMQ cancels the consumers of a queue that goes away: deleted by an operator, or
    a classic call queue hosted on a cluster node that stopped. The server declares its queue
    again and consumes it: calls are answered again, without a reconnection (the periodic
    queue check turned off, so the cancel alone does it)."""
    await _answered_again_once_its_call_queue_is_deleted(rabbit_url, "cancelled",
                                                         queue_check_interval=0)


async def test_a_call_queue_gone_without_a_cancel_is_subscribed_again(
        rabbit_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call queue hosted on a cluster node that stops can take its consumers on other
    nodes with it without RabbitMQ telling them (no Basic.Cancel). Here the Basic.Cancel
    of a deleted queue is ignored to stand for that: the transport's periodic check finds
    the queue gone and subscribes again, and calls are answered again."""
    from stratus.core.bus.transport import amqp

    monkeypatch.setattr(amqp._AmqpSubscription, "_on_broker_cancel", lambda self, frame: None)
    await _answered_again_once_its_call_queue_is_deleted(rabbit_url, "silent",
                                                         queue_check_interval=0.5)


async def _answered_again_once_its_call_queue_is_deleted(
        rabbit_url: str, topic: str, *, queue_check_interval: float) -> None:
    """A server of ``topic`` answers a call, its call queue is deleted behind its back,
    and calls are answered again, on the server transport's first connection."""
    manager = Recorder()
    async with started(rabbit_url, queue_check_interval=queue_check_interval) \
            as server_transport, started(rabbit_url) as client_transport:
        async with RPCServer(server_transport, Target(topic), manager, Recorder.METHODS):
            client = RPCClient(client_transport, Target(topic), timeout=1)
            assert await client.call(context(), "add", a=1) == 2
            await rabbitmqctl("delete_queue", "-p", _vhost(rabbit_url), f"stratus.call.{topic}")
            assert await answered(lambda: client.call(context(), "add", a=2),
                                  message="a call after the queue went") == 3
        assert server_transport.connections_made == 1, "no reconnection was needed"


async def test_the_queue_check_looks_at_each_queue_once_for_all_its_servers(
        rabbit_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers of one process sharing a queue (a compute agent's hosts all consume their
    topic's shared queues) cost the broker one passive declaration per check, not one each;
    when that queue goes without a word, every one of them consumes it again."""
    from stratus.core.bus.transport import amqp

    looked: list[str] = []
    consumers_of = amqp._Link.consumers_of

    async def counted(self: amqp._Link, name: str) -> int | None:
        looked.append(name)
        return await consumers_of(self, name)

    monkeypatch.setattr(amqp._Link, "consumers_of", counted)
    monkeypatch.setattr(amqp._AmqpSubscription, "_on_broker_cancel", lambda self, frame: None)
    managers = [Recorder(f"host-{n}") for n in range(3)]
    async with started(rabbit_url, queue_check_interval=0.3) as transport, \
            started(rabbit_url) as client_transport:
        servers = [RPCServer(transport, Target("shared", server=m.name), m, Recorder.METHODS)
                   for m in managers]
        for server in servers:
            await server.start()
        # Rounds counted from here: a round made while the later servers were still starting
        # (many, under load) looked at fewer queues.
        looked.clear()
        try:
            await eventually(lambda: len(looked) >= 8 * 7, within=20)
            rounds = Counter(looked)
            # Each host's own cast and call queue, and the two shared ones: once a round.
            assert len(rounds) == 8
            assert max(rounds.values()) - min(rounds.values()) <= 1
            shared = "stratus.call.shared"
            before = {s._tag for s in transport._subscriptions if s.queue_name == shared}
            assert len(before) == 3
            await rabbitmqctl("delete_queue", "-p", _vhost(rabbit_url), shared)
            await eventually(lambda: len({s._tag for s in transport._subscriptions
                                          if s.queue_name == shared} - before) == 3,
                             within=10, message="every server consuming the queue again")
            client = RPCClient(client_transport, Target("shared"), timeout=2)
            assert await answered(lambda: client.call(context(), "add", a=2)) == 3
        finally:
            for server in servers:
                await server.stop(drain_timeout=1)


async def test_the_queue_check_leaves_healthy_consumers_alone(rabbit_url: str) -> None:
    """The periodic check subscribes again only where a queue is gone or has no consumer: a
    served call and cast queue keep their consumers through many checks (subscribing again
    would give their unacknowledged deliveries back, counting towards the dead-letter
    limit)."""
    from stratus.core.bus.transport import amqp

    manager = Recorder()
    async with started(rabbit_url, queue_check_interval=0.2) as transport:
        assert isinstance(transport, amqp.AmqpTransport)
        async with RPCServer(transport, Target("healthy"), manager, Recorder.METHODS):
            consumers = {s.queue_name: s._tag for s in transport._subscriptions}
            assert {"stratus.call.healthy", "stratus.cast.healthy"} <= set(consumers)
            await asyncio.sleep(2)  # about ten checks
            assert {s.queue_name: s._tag for s in transport._subscriptions} == consumers


async def test_a_consumer_channel_closed_by_the_broker_subscribes_again(
        rabbit_url: str) -> None:
    """A channel error (here an acknowledgement of a delivery the channel never had) makes
    RabbitMQ close that consumer's channel while the connection lives on: the server consumes
    again on a new channel."""
    from stratus.core.bus.transport import amqp

    manager = Recorder()
    async with started(rabbit_url) as server_transport, \
            started(rabbit_url) as client_transport:
        assert isinstance(server_transport, amqp.AmqpTransport)
        async with RPCServer(server_transport, Target("channel-error"), manager,
                             Recorder.METHODS):
            client = RPCClient(client_transport, Target("channel-error"), timeout=2)
            assert await client.call(context(), "add", a=1) == 2
            (subscription,) = [s for s in server_transport._subscriptions
                               if s.queue_name == "stratus.call.channel-error"]
            broken = subscription._raw
            assert broken is not None
            await broken.basic_ack(424242)
            await eventually(lambda: broken.is_closed, within=10,
                             message="the broker closed the channel")
            assert await answered(lambda: client.call(context(), "add", a=2),
                                  message="a call after the channel closed") == 3
        assert server_transport.connections_made == 1, "no reconnection was needed"


async def test_a_connection_lost_while_subscribing_is_tried_again(
        rabbit_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What RabbitMQ does when two processes declare and consume the same new quorum queue
    at once: the second ``basic.consume`` can find the queue's replica not yet running and
    the broker closes that connection (INTERNAL_ERROR). The subscription must come up on
    the next connection, not fail the process that asked for it."""
    from stratus.core.bus.transport import amqp

    attach = amqp._AmqpSubscription.attach
    closed: list[int] = []

    async def attach_on_a_dying_connection(self: amqp._AmqpSubscription,
                                           link: amqp._Link) -> None:
        if self.queue_name == "stratus.cast.flaky" and not closed:
            closed.append(1)
            await link.connection.close()
        await attach(self, link)

    monkeypatch.setattr(amqp._AmqpSubscription, "attach", attach_on_a_dying_connection)
    manager = Recorder()
    manager.release.set()
    async with started(rabbit_url) as transport:
        async with RPCServer(transport, Target("flaky"), manager, Recorder.METHODS):
            assert closed, "the first attach ran on a closed connection"
            assert transport.connections_made == 2
            await RPCClient(transport, Target("flaky")).cast(context(), "record", item=7)
            await eventually(lambda: manager.items[7] == 1, within=10,
                             message="the cast reached the consumer")
