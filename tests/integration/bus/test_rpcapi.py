"""The ``rpcapi.py`` pattern: a unit's typed client over RPCClient, its manager the server.

Real units bring their own (``stratus/compute/rpcapi.py`` ...); this example shows the shape on
both transports: typed arguments (pydantic models) go in, typed results come out, nobody names
a method by string outside the rpcapi class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from stratus.core.bus import RPCAPI, RPCServer, Target
from stratus.core.context import RequestContext
from tests.integration.bus.conftest import TransportFactory, context, eventually


class RequestSpec(BaseModel):
    flavor: str
    vcpus: int
    az: str | None = None


class Destination(BaseModel):
    host: str
    node: str


class PlannerAPI(RPCAPI):
    """What a compute-api would hold to talk to a scheduler-like unit."""

    TOPIC = "planner"
    VERSION = "1.1"

    async def select_destinations(self, ctx: RequestContext, spec: RequestSpec,
                                  count: int = 1) -> list[Destination]:
        result = await self.client.call(ctx, "select_destinations", spec=spec, count=count)
        return self.result(list[Destination], result)

    async def build(self, ctx: RequestContext, host: str, instance_id: str) -> None:
        await self.client.prepare(server=host).cast(ctx, "build", instance_id=instance_id)

    async def refresh(self, ctx: RequestContext) -> None:
        await self.client.fanout(ctx, "refresh")


class PlannerManager:
    """The server side: the methods the allow-list names, typed."""

    METHODS = ("select_destinations", "build", "refresh")

    def __init__(self, host: str) -> None:
        self.host = host
        self.built: list[str] = []
        self.refreshed = 0

    async def select_destinations(self, ctx: RequestContext, spec: RequestSpec,
                                  count: int = 1) -> list[Destination]:
        return [Destination(host=self.host, node=f"{spec.flavor}-{i}") for i in range(count)]

    async def build(self, ctx: RequestContext, instance_id: str) -> None:
        self.built.append(instance_id)

    async def refresh(self, ctx: RequestContext) -> None:
        self.refreshed += 1

    async def not_exposed(self, ctx: RequestContext) -> None:
        raise AssertionError("not on the allow-list")


async def test_typed_rpcapi_on_both_transports(
        transports: TransportFactory,
        servers: Callable[..., Awaitable[RPCServer]]) -> None:
    managers = {host: PlannerManager(host) for host in ("h1", "h2")}
    for host, manager in managers.items():
        await servers(await transports(), Target(PlannerAPI.TOPIC, server=host,
                                                 version="1.1"),
                      manager, PlannerManager.METHODS)
    api = PlannerAPI(await transports(), timeout=10)
    ctx = context()

    destinations = await api.select_destinations(ctx, RequestSpec(flavor="m1", vcpus=2),
                                                 count=2)
    assert all(isinstance(d, Destination) for d in destinations)
    assert [d.node for d in destinations] == ["m1-0", "m1-1"]
    assert destinations[0].host in managers

    await api.build(ctx, "h2", "instance-1")
    await api.refresh(ctx)
    await eventually(lambda: managers["h2"].built == ["instance-1"])
    await eventually(lambda: all(m.refreshed == 1 for m in managers.values()))
    assert managers["h1"].built == []
