"""Bus tests run once on ``memory://`` and once on the machine's RabbitMQ (a vhost per test).

Each transport made by the ``transports`` fixture stands for one process: servers on
different transports compete like servers on different hosts, and closing a transport is what
the broker sees when a process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from stratus.core.bus import RPCServer, Target, Transport, get_transport
from stratus.core.context import RequestContext, current_request_id
from stratus.core.exceptions import NotFound

#: Options every test transport gets: quick reconnection, a short poison limit.
TEST_OPTIONS: dict[str, Any] = {"reconnect_max": 1.0, "max_attempts": 3}

TransportFactory = Callable[..., Awaitable[Transport]]
T = TypeVar("T")


async def eventually(predicate: Callable[[], bool], within: float = 10.0,
                     message: str = "condition") -> None:
    """Wait until ``predicate()`` holds; fail the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {within}s")
        await asyncio.sleep(0.005)


async def answered(call: Callable[[], Awaitable[T]], within: float = 15.0,
                   message: str = "a call") -> T:
    """The first result of ``call()``, called again while it fails (the failure is what the
    test waits out); fail the test if no call has returned after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(Exception):
            return await call()
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not answered within {within}s")
        await asyncio.sleep(0.005)


async def wait_pending(transport: Transport, queue: str, count: int,
                       within: float = 10.0) -> None:
    """Wait until ``queue`` holds ``count`` ready messages."""
    deadline = time.monotonic() + within
    while (found := await transport.pending(queue)) != count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{queue} holds {found} messages, not {count}")
        await asyncio.sleep(0.02)


def context(**fields: Any) -> RequestContext:
    base: dict[str, Any] = {"user_id": "u-1", "project_id": "p-1", "roles": ["member"]}
    base.update(fields)
    return RequestContext(**base)


class Thing(BaseModel):
    name: str
    size: int = 1


class Recorder:
    """A manager whose methods record what they receive."""

    METHODS = ("record", "add", "echo", "thing", "fail", "not_found", "whoami", "slow",
               "block")

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.items: Counter[Any] = Counter()
        self.contexts: list[RequestContext] = []
        self.running = 0
        self.max_running = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.finished = 0

    async def record(self, ctx: RequestContext, item: int | str) -> None:
        self.items[item] += 1
        self.contexts.append(ctx)

    async def add(self, ctx: RequestContext, a: int, b: int = 1) -> int:
        return a + b

    async def echo(self, ctx: RequestContext, value: Any) -> Any:
        return value

    async def thing(self, ctx: RequestContext, thing: Thing, grow: int) -> Thing:
        return Thing(name=thing.name.upper(), size=thing.size + grow)

    async def fail(self, ctx: RequestContext, message: str) -> None:
        self.items[message] += 1
        raise ValueError(message)

    async def not_found(self, ctx: RequestContext) -> None:
        raise NotFound("no such thing")

    async def whoami(self, ctx: RequestContext) -> dict[str, Any]:
        return {
            "request_id": ctx.request_id,
            "global_request_id": ctx.global_request_id,
            "current_request_id": current_request_id(),
            "user_id": ctx.user_id,
            "project_id": ctx.project_id,
            "domain_id": ctx.domain_id,
            "roles": ctx.roles,
            "service_roles": ctx.service_roles,
            "auth_token": ctx.auth_token,
            "service_token": ctx.service_token,
            "server": self.name,
        }

    async def slow(self, ctx: RequestContext, seconds: float, item: int = 0) -> None:
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.started.set()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.running -= 1
        self.items[item] += 1
        self.finished += 1

    async def block(self, ctx: RequestContext, item: int = 0) -> None:
        """Runs until ``release`` is set."""
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.started.set()
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        self.items[item] += 1
        self.finished += 1


@pytest.fixture
async def transports(bus_url: str) -> AsyncIterator[TransportFactory]:
    """Makes started transports on the test's bus; closes them all afterwards."""
    made: list[Transport] = []

    async def make(**options: Any) -> Transport:
        transport = get_transport(bus_url, **{**TEST_OPTIONS, **options})
        await transport.start()
        made.append(transport)
        return transport

    yield make
    for transport in reversed(made):
        await transport.close()


ServerFactory = Callable[..., Awaitable[RPCServer]]


@pytest.fixture
async def servers(transports: TransportFactory) -> AsyncIterator[ServerFactory]:
    """Makes started servers; stops them (before their transports close) afterwards."""
    made: list[RPCServer] = []

    async def make(transport: Transport, target: Target, manager: object,
                   methods: tuple[str, ...] = Recorder.METHODS, **kwargs: Any) -> RPCServer:
        server = RPCServer(transport, target, manager, methods, **kwargs)
        await server.start()
        made.append(server)
        return server

    yield make
    for server in reversed(made):
        await server.stop(drain_timeout=0.5)
