"""Cast, call and fanout on both transports: who receives what, with which context."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stratus.core.bus import (
    InvalidMessage,
    MessagingTimeout,
    RemoteError,
    RPCClient,
    RPCServer,
    Target,
    UnknownMethod,
)
from stratus.core.bus.target import dead_letter_queue
from stratus.core.context import reset_request_id, set_request_id
from stratus.core.exceptions import NotFound
from stratus.core.logging import RequestIdFilter
from stratus.core.tracing import REQUEST_ID_ATTRIBUTE, span
from tests.integration.bus.conftest import (
    Recorder,
    Thing,
    TransportFactory,
    context,
    eventually,
    wait_pending,
)

ServerFactory = Callable[..., Awaitable[RPCServer]]


async def test_cast_reaches_exactly_one_of_n_servers(transports: TransportFactory,
                                                      servers: ServerFactory) -> None:
    managers = [Recorder(f"s{i}") for i in range(3)]
    for i, manager in enumerate(managers):
        await servers(await transports(), Target("work", server=f"s{i}"), manager)
    client = RPCClient(await transports(), Target("work"))
    for item in range(60):
        await client.cast(context(), "record", item=item)

    await eventually(lambda: sum(sum(m.items.values()) for m in managers) >= 60)
    await asyncio.sleep(0.1)  # a duplicate, if any, would arrive now
    total: Counter[Any] = Counter()
    for manager in managers:
        total.update(manager.items)
    assert total == Counter(range(60)), "every cast handled exactly once"
    assert sum(1 for m in managers if m.items) >= 2, "the servers compete for casts"


async def test_cast_to_one_server_reaches_only_that_server(transports: TransportFactory,
                                                            servers: ServerFactory) -> None:
    managers = {name: Recorder(name) for name in ("node-1", "node-2.example.org")}
    for name, manager in managers.items():
        await servers(await transports(), Target("compute", server=name), manager)
    client = RPCClient(await transports(), Target("compute"))
    for item in range(10):
        await client.prepare(server="node-2.example.org").cast(context(), "record", item=item)
    assert await client.prepare(server="node-1").call(context(), "add", a=1) == 2

    await eventually(lambda: sum(managers["node-2.example.org"].items.values()) == 10)
    assert not managers["node-1"].items


async def test_cast_before_any_server_waits_in_its_queue(transports: TransportFactory,
                                                          servers: ServerFactory) -> None:
    client = RPCClient(await transports(), Target("late"))
    for item in range(5):
        await client.cast(context(), "record", item=item)
    manager = Recorder()
    await servers(await transports(), Target("late"), manager)
    await eventually(lambda: manager.items == Counter(range(5)))


async def test_fanout_reaches_every_server(transports: TransportFactory,
                                           servers: ServerFactory) -> None:
    managers = [Recorder(f"agent-{i}") for i in range(3)]
    for i, manager in enumerate(managers):
        await servers(await transports(), Target("dhcp", server=f"agent-{i}"), manager)
    client = RPCClient(await transports(), Target("dhcp"))
    await client.fanout(context(), "record", item="network-1")
    await client.prepare(fanout=True).cast(context(), "record", item="network-2")

    await eventually(lambda: all(sum(m.items.values()) == 2 for m in managers))
    await asyncio.sleep(0.1)
    for manager in managers:
        assert manager.items == Counter({"network-1": 1, "network-2": 1})


async def test_call_returns_values(transports: TransportFactory,
                                   servers: ServerFactory) -> None:
    await servers(await transports(), Target("calc"), Recorder())
    client = RPCClient(await transports(), Target("calc"), timeout=10)
    ctx = context()
    assert await client.call(ctx, "add", a=2, b=3) == 5
    assert await client.call(ctx, "add", a=2) == 3
    value = {"list": [1, "two", None, 3.5], "nested": {"ok": True}, "text": "é ✓"}
    assert await client.call(ctx, "echo", value=value) == value
    result = await client.call(ctx, "thing", thing=Thing(name="disk", size=2), grow=3)
    assert result == {"name": "DISK", "size": 5}
    many = await asyncio.gather(*(client.call(ctx, "add", a=i, b=i) for i in range(50)))
    assert many == [2 * i for i in range(50)]


async def test_call_times_out_with_messaging_timeout(transports: TransportFactory,
                                                     servers: ServerFactory) -> None:
    transport = await transports()
    with pytest.raises(MessagingTimeout, match="nobody"):
        await RPCClient(transport, Target("nobody"), timeout=0.3).call(context(), "add", a=1)

    manager = Recorder()
    await servers(await transports(), Target("sluggish"), manager)
    client = RPCClient(transport, Target("sluggish"), timeout=0.3)
    with pytest.raises(MessagingTimeout):
        await client.call(context(), "slow", seconds=2.0)
    # The transport keeps working after a timeout, and a late reply is ignored.
    assert await client.prepare(timeout=10).call(context(), "add", a=41) == 42


async def test_a_call_cancelled_as_its_reply_lands_is_still_cancelled(
        transports: TransportFactory, servers: ServerFactory) -> None:
    """A cancellation that arrives in the same loop step as the reply must not be dropped:
    a periodic task stopped at that moment would otherwise run on, and its stop() hang."""
    await servers(await transports(), Target("calc"), Recorder())
    transport = await transports()
    client = RPCClient(transport, Target("calc"), timeout=10)
    caller: asyncio.Task[Any] | None = None
    expect_reply = transport.expect_reply

    def cancel_as_reply_lands(msg_id: str) -> asyncio.Future[bytes]:
        future = expect_reply(msg_id)
        # Registered before the caller waits: runs first in the step the reply lands in.
        future.add_done_callback(lambda _: caller.cancel() if caller else None)
        return future

    transport.expect_reply = cancel_as_reply_lands  # type: ignore[method-assign]
    caller = asyncio.create_task(client.call(context(), "add", a=1))
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert caller.cancelled()


async def test_call_raises_remote_error(transports: TransportFactory,
                                        servers: ServerFactory) -> None:
    await servers(await transports(), Target("errors"), Recorder())
    client = RPCClient(await transports(), Target("errors"), timeout=10)

    with pytest.raises(RemoteError) as caught:
        await client.call(context(), "fail", message="disk full")
    assert caught.value.exc_type == "ValueError"
    assert caught.value.message == "disk full"
    assert "Traceback" not in str(caught.value) and "File " not in str(caught.value)

    with pytest.raises(RemoteError) as caught:
        await client.call(context(), "not_found")
    assert (caught.value.exc_type, caught.value.message) == ("NotFound", "no such thing")

    with pytest.raises(RemoteError) as caught:
        await client.call(context(), "no_such_method")
    assert caught.value.exc_type == "UnknownMethod"

    with pytest.raises(ValueError, match="cannot be a bus method"):
        await client.call(context(), "_private")

    with pytest.raises(RemoteError) as caught:
        await client.call(context(), "add", a="not a number")
    assert caught.value.exc_type == "InvalidMessage"
    assert "arg" in caught.value.message or "a" in caught.value.message

    with pytest.raises(RemoteError) as caught:
        await client.call(context(), "add", a=1, unexpected=2)
    assert caught.value.exc_type == "InvalidMessage"


async def test_api_versions(transports: TransportFactory, servers: ServerFactory) -> None:
    transport = await transports()
    await servers(await transports(), Target("versioned", version="1.2"), Recorder())
    client = RPCClient(transport, Target("versioned", version="1.1"), timeout=10)
    assert await client.call(context(), "add", a=1) == 2
    with pytest.raises(RemoteError) as caught:
        await client.prepare(version="1.3").call(context(), "add", a=1)
    assert caught.value.exc_type == "UnsupportedVersion"
    with pytest.raises(RemoteError):
        await client.prepare(version="2.0").call(context(), "add", a=1)
    # A cast the server cannot serve is dead-lettered at once, not retried.
    await client.prepare(version="2.0").cast(context(), "record", item=1)
    await wait_pending(transport, dead_letter_queue("versioned"), 1)


async def test_context_and_request_id_arrive_intact(
        transports: TransportFactory, servers: ServerFactory,
        span_exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture) -> None:
    manager = Recorder("host-a")
    await servers(await transports(), Target("ctx"), manager)
    client = RPCClient(await transports(), Target("ctx"), timeout=10)
    ctx = context(global_request_id="req-00000000-0000-4000-8000-000000000001",
                  domain_id="default", roles=["admin", "member"], service_roles=["service"],
                  auth_token="user-token-1234", service_token="service-token-5678")

    seen = await client.call(ctx, "whoami")  # outside any span: the handler's span only
    assert seen == {
        "request_id": ctx.request_id,
        "global_request_id": ctx.global_request_id,
        "current_request_id": ctx.request_id,
        "user_id": "u-1",
        "project_id": "p-1",
        "domain_id": "default",
        "roles": ["admin", "member"],
        "service_roles": ["service"],
        "auth_token": "user-token-1234",
        "service_token": "service-token-5678",
        "server": "host-a",
    }
    spans = span_exporter.get_finished_spans()
    assert [s.name for s in spans] == ["bus.call ctx.whoami"]
    assert spans[0].attributes is not None
    assert spans[0].attributes[REQUEST_ID_ATTRIBUTE] == ctx.request_id
    assert spans[0].attributes["openstack.global_request_id"] == ctx.global_request_id
    span_exporter.clear()

    caplog.handler.addFilter(RequestIdFilter())
    token = set_request_id(ctx.request_id)
    try:
        with caplog.at_level(logging.WARNING, logger="stratus.core.bus"), \
                span("an API request") as request_span:
            await client.call(ctx, "whoami")
            await client.cast(ctx, "record", item="x")
            await eventually(lambda: manager.items["x"] == 1)
            with pytest.raises(RemoteError):
                await client.call(ctx, "fail", message="boom")
    finally:
        reset_request_id(token)
    received = manager.contexts[-1]
    assert (received.request_id, received.global_request_id) == (ctx.request_id,
                                                                 ctx.global_request_id)
    assert received.roles == ctx.roles and received.auth_token == ctx.auth_token
    failure = [r for r in caplog.records if "boom" in r.getMessage()]
    assert failure and failure[0].request_id == ctx.request_id  # type: ignore[attr-defined]

    # Inside a request's span, sender and handler spans join the request's trace.
    spans = span_exporter.get_finished_spans()
    names = Counter(s.name for s in spans)
    assert names == Counter({"bus.call ctx.whoami": 2, "bus.cast ctx.record": 2,
                             "bus.call ctx.fail": 2, "an API request": 1}), names
    trace_id = request_span.get_span_context().trace_id
    for item in spans:
        assert item.context.trace_id == trace_id
        assert item.attributes is not None
        assert item.attributes.get(REQUEST_ID_ATTRIBUTE) == ctx.request_id


async def test_tokens_never_reach_logs_or_spans(
        transports: TransportFactory, servers: ServerFactory,
        span_exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = ("gAAAAAB-user-token-secret", "gAAAAAB-service-token-secret")
    ctx = context(auth_token=secrets[0], service_token=secrets[1])
    manager = Recorder()
    transport = await transports()
    await servers(await transports(), Target("secret"), manager)
    client = RPCClient(transport, Target("secret"), timeout=10)
    await client.cast(ctx, "record", item=1)
    await client.fanout(ctx, "record", item=2)
    assert (await client.call(ctx, "whoami"))["auth_token"] == secrets[0]
    with pytest.raises(RemoteError):
        await client.call(ctx, "fail", message="failing on purpose")
    await client.cast(ctx, "fail", message="poison")
    await eventually(lambda: manager.items["poison"] == 3, within=20)
    await eventually(lambda: sum(manager.items[i] for i in (1, 2)) == 2)

    text = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert caplog.records, "debug logging was captured"
    for secret in secrets:
        assert secret not in text
        for item in span_exporter.get_finished_spans():
            assert secret not in repr(dict(item.attributes or {}))
            assert all(secret not in repr(dict(e.attributes or {})) for e in item.events)
    assert secrets[0] not in repr(manager.contexts[0])


async def test_graceful_stop_drains_in_flight_handlers(transports: TransportFactory) -> None:
    transport = await transports()
    manager = Recorder()
    server = RPCServer(transport, Target("drain"), manager, Recorder.METHODS)
    await server.start()
    client = RPCClient(await transports(), Target("drain"))
    for item in range(3):
        await client.cast(context(), "slow", seconds=0.3, item=item)
    await eventually(lambda: manager.running == 3)

    await server.stop(drain_timeout=10)
    assert manager.finished == 3 and server.inflight == 0
    # Everything was acknowledged: a new server gets nothing.
    again = Recorder()
    async with RPCServer(transport, Target("drain"), again, Recorder.METHODS):
        await asyncio.sleep(0.3)
    assert again.finished == 0 and again.running == 0


async def test_stop_gives_unfinished_messages_back(transports: TransportFactory,
                                                   servers: ServerFactory) -> None:
    manager = Recorder()
    server = RPCServer(await transports(), Target("giveback"), manager, Recorder.METHODS)
    await server.start()
    client = RPCClient(await transports(), Target("giveback"))
    await client.cast(context(), "block", item=7)
    await manager.started.wait()
    await server.stop(drain_timeout=0.1)

    other = Recorder()
    other.release.set()
    await servers(await transports(), Target("giveback"), other)
    await eventually(lambda: other.items[7] == 1)
    assert manager.finished == 0


async def test_prefetch_bounds_in_flight_messages(transports: TransportFactory,
                                                  servers: ServerFactory) -> None:
    manager = Recorder()
    await servers(await transports(), Target("bounded"), manager, prefetch=2)
    client = RPCClient(await transports(), Target("bounded"))
    for item in range(10):
        await client.cast(context(), "block", item=item)
    await eventually(lambda: manager.running == 2)
    await asyncio.sleep(0.2)
    assert manager.running == 2 and manager.max_running == 2
    manager.release.set()
    await eventually(lambda: manager.finished == 10)
    assert manager.max_running == 2


async def test_allowed_remote_errors_are_raised_as_their_type(
        transports: TransportFactory, servers: ServerFactory) -> None:
    await servers(await transports(), Target("typed"), Recorder())
    typed = RPCClient(await transports(), Target("typed"), timeout=10, errors=[NotFound])

    with pytest.raises(NotFound) as found:
        await typed.call(context(), "not_found")
    # Still a RemoteError with its type name and message, for code that catches those.
    assert isinstance(found.value, RemoteError)
    assert (found.value.exc_type, found.value.message) == ("NotFound", "no such thing")
    assert type(found.value).__name__ == "NotFound" and found.value.status == 404

    # The allow-list travels with prepare(); a type not on it stays a plain RemoteError.
    with pytest.raises(NotFound):
        await typed.prepare(timeout=5).call(context(), "not_found")
    with pytest.raises(RemoteError) as plain:
        await typed.call(context(), "fail", message="disk full")
    assert not isinstance(plain.value, ValueError)
    untyped = RPCClient(await transports(), Target("typed"), timeout=10)
    with pytest.raises(RemoteError) as caught:
        await untyped.call(context(), "not_found")
    assert not isinstance(caught.value, NotFound)

    # The bus's own refusals are typed on every client.
    with pytest.raises(UnknownMethod) as unknown:
        await untyped.call(context(), "no_such_method")
    assert isinstance(unknown.value, RemoteError)
    with pytest.raises(InvalidMessage):
        await untyped.call(context(), "add", a=1, unexpected=2)


class DatabaseAway:
    """A manager whose database is restarting for its first ``outage`` runs of each
    method: the driver's connection refused, as asyncpg raises it."""

    METHODS = ("record", "read")

    def __init__(self, outage: int) -> None:
        self.outage = outage
        self.runs: Counter[str] = Counter()
        self.done: list[str] = []

    def _attempt(self, method: str) -> None:
        self.runs[method] += 1
        if self.runs[method] <= self.outage:
            raise ConnectionRefusedError(111, "Connect call failed")

    async def record(self, ctx: Any, item: str) -> None:
        self._attempt("record")
        self.done.append(item)

    async def read(self, ctx: Any) -> int:
        self._attempt("read")
        return 7


async def test_handlers_wait_out_a_database_restart(transports: TransportFactory,
                                                    servers: ServerFactory) -> None:
    # More failed runs than the transport's 3 attempts: redelivery alone would dead-letter
    # the cast and answer the call with the error, the instance it was about left as is.
    manager = DatabaseAway(outage=4)
    await servers(await transports(), Target("db-away"), manager, DatabaseAway.METHODS)
    client = RPCClient(await transports(), Target("db-away"), timeout=30)
    assert await client.call(context(), "read") == 7
    await client.cast(context(), "record", item="after the restart")
    await eventually(lambda: manager.done == ["after the restart"], within=30)
    assert manager.runs == {"read": 5, "record": 5}


async def test_other_handler_errors_are_not_run_again(transports: TransportFactory,
                                                      servers: ServerFactory) -> None:
    class Broken(DatabaseAway):
        def _attempt(self, method: str) -> None:
            self.runs[method] += 1
            raise ValueError("a bug")

    manager = Broken(outage=0)
    await servers(await transports(), Target("broken"), manager, DatabaseAway.METHODS)
    client = RPCClient(await transports(), Target("broken"), timeout=30)
    with pytest.raises(RemoteError, match="a bug"):
        await client.call(context(), "read")
    assert manager.runs["read"] == 1
