"""The network service's ``network-vif-plugged`` sender across a compute-api restart."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from stratus.core.clients.compute import ComputeClient
from stratus.core.exceptions import BadRequest, ServiceUnavailable, StratusError
from stratus.network.events import ComputeEventSender, ServerEvent


class Compute:
    """compute-api: answers each post with the next of ``outcomes`` (an error or a status)."""

    def __init__(self, *outcomes: StratusError | int) -> None:
        self.outcomes = list(outcomes)
        self.posts: list[list[dict[str, Any]]] = []

    async def server_external_events(self, events: list[dict[str, Any]]) -> int:
        self.posts.append(events)
        outcome = self.outcomes.pop(0) if self.outcomes else 200
        if isinstance(outcome, StratusError):
            raise outcome
        return outcome


async def sent(compute: Compute, *, retry_for: float = 5.0) -> list[list[dict[str, Any]]]:
    sender = ComputeEventSender(cast(ComputeClient, compute), retry_for=retry_for,
                                backoff=(0.01, 0.02))
    await sender.start()
    sender.send(ServerEvent("network-vif-plugged", "server-1", "port-1"))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if not compute.outcomes and compute.posts and sender.queue.empty():
            break
    await asyncio.sleep(0.05)
    await sender.stop()
    return compute.posts


async def test_an_event_reaches_compute_api_once_it_is_back() -> None:
    down = ServiceUnavailable("Compute service is unreachable.")
    posts = await sent(Compute(down, down, down))
    # Dropped at the first failure, the build waiting for it would hang until its
    # vif_plugging_timeout.
    assert len(posts) == 4
    assert posts[-1] == [{"name": "network-vif-plugged", "server_uuid": "server-1",
                          "tag": "port-1", "status": "completed"}]


async def test_a_refused_event_is_not_sent_again() -> None:
    posts = await sent(Compute(BadRequest("No such event.")))
    assert len(posts) == 1


async def test_an_event_is_dropped_once_compute_stayed_away_too_long() -> None:
    down = ServiceUnavailable("Compute service is unreachable.")
    compute = Compute(*([down] * 1000))
    posts = await sent(compute, retry_for=0.1)
    assert 2 <= len(posts) < 50
