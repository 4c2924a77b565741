"""Every typed bus client and the manager serving it agree (``stratus.core.bus.contract``):
each method the client sends is on the server's allow-list with the same arguments (names,
annotations, required ones sent), and the allow-list holds nothing no client sends."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import stratus
from stratus.compute.agent.manager import ComputeAgentManager
from stratus.compute.conductor.manager import ConductorManager
from stratus.compute.rpcapi import ComputeAgentAPI, ConductorAPI, SchedulerAPI
from stratus.compute.scheduler.manager import SchedulerManager
from stratus.core.bus import RPCAPI
from stratus.core.bus.contract import check
from stratus.core.context import RequestContext
from stratus.core.image_caches import ImageCacheListener, ImageCachesAPI
from stratus.core.token_caches import TokenCacheListener, TokenCachesAPI
from stratus.network.agents.dhcp.manager import DhcpAgentManager
from stratus.network.agents.l2.manager import L2HostEndpoint
from stratus.network.agents.l3.manager import L3AgentManager
from stratus.network.manager import NetworkServerManager
from stratus.network.rpcapi import DhcpAgentAPI, L2AgentAPI, L3AgentAPI, NetworkServerAPI
from stratus.volume.manager import VolumeManager
from stratus.volume.rpcapi import VolumeManagerAPI

#: Each client and the manager its topic's servers run (see where each unit serves it).
PAIRS: list[tuple[type[RPCAPI], type]] = [
    (SchedulerAPI, SchedulerManager),
    (ConductorAPI, ConductorManager),
    (ComputeAgentAPI, ComputeAgentManager),
    (NetworkServerAPI, NetworkServerManager),
    (DhcpAgentAPI, DhcpAgentManager),
    # The l2-agent serves ``l2_agent.<host>`` through one endpoint per host, which supplies
    # the host the client gave to ``prepare(server=host)``.
    (L2AgentAPI, L2HostEndpoint),
    # The l3-agent serves ``l3_agent.<host>`` for its one host.
    (L3AgentAPI, L3AgentManager),
    (VolumeManagerAPI, VolumeManager),
    # Every process with a token cache serves it (identity fans out to them all).
    (TokenCachesAPI, TokenCacheListener),
    # Every process with image records serves it (the image service fans out to them all).
    (ImageCachesAPI, ImageCacheListener),
]


@pytest.mark.parametrize(("api", "manager"), PAIRS, ids=[a.__name__ for a, _ in PAIRS])
async def test_client_and_server_agree(api: type[RPCAPI], manager: type) -> None:
    assert await check(api, manager) == []


def _all_rpcapis() -> set[type[RPCAPI]]:
    for module in pkgutil.walk_packages(stratus.__path__, "stratus."):
        if module.name.endswith(".rpcapi"):
            importlib.import_module(module.name)
    found: set[type[RPCAPI]] = set()
    pending = [RPCAPI]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub.__module__.startswith("stratus."):
                found.add(sub)
            pending.append(sub)
    return found


def test_every_client_has_its_pair_here() -> None:
    assert _all_rpcapis() == {api for api, _ in PAIRS}


# The checker itself -------------------------------------------------------------------------



class _Client(RPCAPI):
    TOPIC = "t"

    async def ping(self, ctx: RequestContext, host: str, n: int, extra: str = "") -> int:
        return self.result(int, await self.client.prepare(server=host).call(
            ctx, "ping", n=n, note=extra))

    async def lost(self, ctx: RequestContext, value: str, dropped: int) -> None:
        await self.client.cast(ctx, "lost", value=value)


class _Server:
    METHODS = ("ping", "lost", "unused")

    async def ping(self, ctx: RequestContext, n: str, when: float, spare: int = 0) -> str:
        return ""

    async def lost(self, ctx: RequestContext, value: str) -> None:
        return None

    async def unused(self, ctx: RequestContext) -> None:
        return None


async def test_the_checker_names_each_disagreement() -> None:
    problems = await check(_Client, _Server)
    owner = "_Client -> _Server"
    assert sorted(problems) == sorted([
        f"{owner}: lost: parameter 'dropped' is never sent",
        f"{owner}: ping sends call 'ping' with argument 'note', which the server does not "
        "take",
        f"{owner}: ping sends call 'ping': argument 'n' is <class 'int'> on the client and "
        "<class 'str'> on the server",
        f"{owner}: ping sends call 'ping' without 'when', which the server requires",
        f"{owner}: ping sends call 'ping' without 'spare': a parameter no client sets",
        f"{owner}: ping sends call 'ping': the client expects <class 'int'>, the server "
        "returns <class 'str'>",
        f"{owner}: unused is served but no client method sends it",
    ])


class _Misnamed(RPCAPI):
    TOPIC = "t"

    async def hello(self, ctx: RequestContext, value: str) -> None:
        await self.client.cast(ctx, "lost", value=value)

    async def unused(self, ctx: RequestContext, b: int, a: int) -> None:
        await self.client.cast(ctx, "unused", b=b, a=a)


class _Ordered:
    METHODS = ("lost", "unused")

    async def lost(self, ctx: RequestContext, value: str) -> None:
        return None

    async def unused(self, ctx: RequestContext, a: int, b: int) -> None:
        return None


async def test_the_checker_wants_the_same_names_in_the_same_order() -> None:
    owner = "_Misnamed -> _Ordered"
    assert sorted(await check(_Misnamed, _Ordered)) == [
        f"{owner}: hello sends cast 'lost': a client method has the name of the remote "
        "method it sends",
        f"{owner}: unused sends cast 'unused': arguments in the order ['b', 'a'], the "
        "server's order is ['a', 'b']",
    ]
