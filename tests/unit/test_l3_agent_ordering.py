"""The l3-agent under overlapping events: a router state the server was asked for earlier
never replaces one asked for later, whichever answer comes back first (a slow answer must
not take a new floating IP away until the next resync)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from stratus.core.context import RequestContext
from stratus.network.agents.l3.manager import L3AgentManager, L3AgentOptions
from stratus.network.agents.l3.router import AppliedRouter
from stratus.network.objects import FloatingIPInfo, RouterInfo

ROUTER = RouterInfo(id="r1", project_id="p1")
WITH_FIP = ROUTER.model_copy(update={"floating_ips": [FloatingIPInfo(
    id="f1", floating_ip_address="198.18.0.10", fixed_ip_address="10.0.0.5",
    port_id="port1")]})


class Server:
    """get_routers answers from a queue of (state, gate): each answer waits for its gate."""

    def __init__(self) -> None:
        self.answers: list[tuple[list[RouterInfo], asyncio.Event]] = []
        self.statuses: list[dict[str, str]] = []

    async def get_routers(self, ctx: RequestContext, host: str,
                          router_ids: Sequence[str] | None = None) -> list[RouterInfo]:
        state, gate = self.answers.pop(0)
        await gate.wait()
        return state

    async def update_floatingip_statuses(self, ctx: RequestContext, router_id: str,
                                         statuses: dict[str, str]) -> None:
        self.statuses.append(statuses)


class Driver:
    def __init__(self) -> None:
        self.in_force: dict[str, RouterInfo] = {}

    def apply(self, router: RouterInfo, *, verify: bool = False) -> AppliedRouter:
        self.in_force[router.id] = router
        return AppliedRouter(router.id, tuple(f.id for f in router.floating_ips))

    def remove(self, router_id: str) -> bool:
        return self.in_force.pop(router_id, None) is not None


def agent(tmp_path: Path) -> tuple[L3AgentManager, Server, Driver]:
    server, driver = Server(), Driver()
    manager = L3AgentManager("h1", server, L3AgentOptions(state_dir=tmp_path),  # type: ignore[arg-type]
                             driver=driver)  # type: ignore[arg-type]
    return manager, server, driver


async def test_a_slow_older_answer_does_not_undo_a_newer_one(tmp_path: Path) -> None:
    manager, server, driver = agent(tmp_path)
    slow, fast = asyncio.Event(), asyncio.Event()
    server.answers = [([ROUTER], slow), ([WITH_FIP], fast)]
    ctx = RequestContext.for_service("test")
    older = asyncio.create_task(manager.routers_updated(ctx, ["r1"]))
    await asyncio.sleep(0)
    newer = asyncio.create_task(manager.routers_updated(ctx, ["r1"]))
    fast.set()
    await newer
    assert driver.in_force["r1"].floating_ips, "the newer state is in force"
    slow.set()
    await older
    assert driver.in_force["r1"] == WITH_FIP
    assert server.statuses == [{"f1": "ACTIVE"}]  # never reported DOWN by the stale answer


async def test_a_resync_listed_before_an_event_does_not_undo_it(tmp_path: Path) -> None:
    manager, server, driver = agent(tmp_path)
    listed, fast = asyncio.Event(), asyncio.Event()
    # The resync's list is asked for first (without the floating IP, nor a second router
    # the event then creates), and answers last.
    server.answers = [([ROUTER], listed), ([WITH_FIP], fast)]
    resync = asyncio.create_task(manager.resync())
    await asyncio.sleep(0)
    fast.set()
    await manager.routers_updated(RequestContext.for_service("test"), ["r1"])
    listed.set()
    await resync
    assert driver.in_force["r1"] == WITH_FIP


async def test_a_stale_answer_does_not_bring_a_deleted_router_back(tmp_path: Path) -> None:
    manager, server, driver = agent(tmp_path)
    slow = asyncio.Event()
    server.answers = [([ROUTER], slow)]
    older = asyncio.create_task(manager.routers_updated(RequestContext.for_service("t"),
                                                        ["r1"]))
    await asyncio.sleep(0)
    await manager.router_deleted(RequestContext.for_service("t"), "r1")
    slow.set()
    await older
    assert "r1" not in driver.in_force
    assert not (tmp_path / "r1").exists()


async def test_in_order_answers_all_apply(tmp_path: Path) -> None:
    manager, server, driver = agent(tmp_path)
    first, second = asyncio.Event(), asyncio.Event()
    first.set()
    second.set()
    server.answers = [([WITH_FIP], first), ([ROUTER], second)]
    ctx = RequestContext.for_service("test")
    await manager.routers_updated(ctx, ["r1"])
    await manager.routers_updated(ctx, ["r1"])
    assert driver.in_force["r1"] == ROUTER
    assert server.statuses == [{"f1": "ACTIVE"}, {"f1": "DOWN"}]
