"""``ImageRecords`` (``stratus.core.image_caches``): per image and caller, bounded, off until
told it will hear of changes, nothing kept from a fetch that raced a change, nothing served
while the bus is down or kept across a reconnection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stratus.core.context import RequestContext
from stratus.core.image_caches import ImageRecords

EP = "http://test/image"
ALICE = RequestContext(user_id="u-a", project_id="p-a", roles=["reader", "member"])


def records(size: int = 8) -> ImageRecords:
    kept = ImageRecords(size)
    kept.enabled = True
    return kept


def put(kept: ImageRecords, image_id: str, ctx: RequestContext = ALICE) -> None:
    kept.put(image_id, EP, ctx, {"id": image_id, "properties": {"a": "1"}}, kept.generation)


def test_off_until_enabled() -> None:
    kept = ImageRecords()
    put(kept, "i1")
    assert kept.get("i1", EP, ALICE) is None and len(kept) == 0


def test_a_record_is_per_caller_as_policy_sees_it_and_per_endpoint() -> None:
    kept = records()
    put(kept, "i1")
    assert kept.get("i1", EP, ALICE) == {"id": "i1", "properties": {"a": "1"}}
    # Same roles in another order: the same caller.
    assert kept.get("i1", EP, RequestContext(user_id="u-a", project_id="p-a",
                                             roles=["member", "reader"])) is not None
    for other in (RequestContext(user_id="u-a", project_id="p-b", roles=["reader", "member"]),
                  RequestContext(user_id="u-b", project_id="p-a", roles=["reader", "member"]),
                  RequestContext(user_id="u-a", project_id="p-a", roles=["reader"]),
                  RequestContext(user_id="u-a", project_id="p-a",
                                 roles=["reader", "member", "admin"])):
        assert kept.get("i1", EP, other) is None
    assert kept.get("i1", "http://elsewhere/image", ALICE) is None


def test_the_caller_gets_a_copy() -> None:
    kept = records()
    put(kept, "i1")
    got = kept.get("i1", EP, ALICE)
    assert got is not None
    got["properties"]["a"] = "changed"
    assert kept.get("i1", EP, ALICE) == {"id": "i1", "properties": {"a": "1"}}


def test_invalidate_drops_every_callers_record_of_the_image() -> None:
    kept = records()
    bob = RequestContext(user_id="u-b", project_id="p-b", roles=["reader"])
    put(kept, "i1")
    put(kept, "i1", bob)
    put(kept, "i2")
    kept.invalidate(["i1", "unknown"])
    assert kept.get("i1", EP, ALICE) is None and kept.get("i1", EP, bob) is None
    assert kept.get("i2", EP, ALICE) is not None and len(kept) == 1


def test_a_fetch_that_raced_a_change_is_not_kept() -> None:
    kept = records()
    started = kept.generation
    kept.invalidate(["i9"])  # any change told while the fetch was under way
    kept.put("i1", EP, ALICE, {"id": "i1"}, started)
    assert kept.get("i1", EP, ALICE) is None


def test_bounded_least_recently_used_first() -> None:
    kept = records(size=2)
    put(kept, "i1")
    put(kept, "i2")
    assert kept.get("i1", EP, ALICE) is not None  # i1 used: i2 is the oldest now
    put(kept, "i3")
    assert len(kept) == 2
    assert kept.get("i2", EP, ALICE) is None
    assert kept.get("i1", EP, ALICE) is not None and kept.get("i3", EP, ALICE) is not None
    kept.invalidate(["i2"])  # its index entry went with it
    assert len(kept) == 2


def test_nothing_served_while_disconnected_nor_kept_across_a_reconnection() -> None:
    kept = records()
    state: dict[str, int | None] = {"epoch": 1}
    kept.epoch = lambda: state["epoch"]
    put(kept, "i1")
    assert kept.get("i1", EP, ALICE) is not None
    state["epoch"] = None
    assert kept.get("i1", EP, ALICE) is None
    put(kept, "i2")
    state["epoch"] = 2
    assert kept.get("i1", EP, ALICE) is None and kept.get("i2", EP, ALICE) is None
    put(kept, "i1")
    assert kept.get("i1", EP, ALICE) is not None
    state["epoch"] = 3  # a reconnection noticed only afterwards: still dropped
    assert kept.get("i1", EP, ALICE) is None


def test_needs_room() -> None:
    with pytest.raises(ValueError):
        ImageRecords(0)


def test_a_record_is_not_served_past_its_age_even_with_no_change_told() -> None:
    now = [100.0]
    kept = ImageRecords(8, max_age=60.0, clock=lambda: now[0])
    kept.enabled = True
    put(kept, "i1")
    now[0] = 159.9
    assert kept.get("i1", EP, ALICE) is not None
    now[0] = 160.0
    assert kept.get("i1", EP, ALICE) is None and len(kept) == 0
    put(kept, "i1")  # fetched again: kept from now on
    assert kept.get("i1", EP, ALICE) is not None


class Fetches:
    """A fetch of image ``i1`` held open until ``release``; counts its calls."""

    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.calls = 0
        self.answer = answer if answer is not None else {"id": "i1", "status": "active"}
        self.gate = asyncio.Event()
        self.error: Exception | None = None

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        await self.gate.wait()
        if self.error is not None and self.calls == 1:
            raise self.error
        return dict(self.answer)


def usable(record: dict[str, Any]) -> bool:
    return record.get("status") == "active"


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrent_misses_share_one_fetch_and_each_gets_its_own_copy() -> None:
    kept = records()
    fetch = Fetches()
    waiting = [asyncio.create_task(kept.fetched("i1", EP, ALICE, fetch, usable))
               for _ in range(5)]
    await settle()
    fetch.gate.set()
    got = await asyncio.gather(*waiting)
    assert fetch.calls == 1
    assert all(g == {"id": "i1", "status": "active"} for g in got)
    got[0]["status"] = "changed"  # one caller's copy is not another's
    assert got[1]["status"] == "active"
    assert kept.get("i1", EP, ALICE) == {"id": "i1", "status": "active"}


async def test_another_caller_or_image_does_not_join_a_fetch() -> None:
    kept = records()
    fetch = Fetches()
    bob = RequestContext(user_id="u-b", project_id="p-b", roles=["reader"])
    waiting = [asyncio.create_task(kept.fetched("i1", EP, ALICE, fetch, usable)),
               asyncio.create_task(kept.fetched("i1", EP, bob, fetch, usable)),
               asyncio.create_task(kept.fetched("i2", EP, ALICE, fetch, usable))]
    await settle()
    fetch.gate.set()
    await asyncio.gather(*waiting)
    assert fetch.calls == 3


async def test_a_request_after_a_change_does_not_join_a_fetch_from_before_it() -> None:
    kept = records()
    fetch = Fetches()
    first = asyncio.create_task(kept.fetched("i1", EP, ALICE, fetch, usable))
    await settle()
    kept.invalidate(["i1"])  # told (and answered) while the first fetch is under way
    second = asyncio.create_task(kept.fetched("i1", EP, ALICE, fetch, usable))
    await settle()
    fetch.gate.set()
    await asyncio.gather(first, second)
    assert fetch.calls == 2
    assert kept.get("i1", EP, ALICE) is not None  # the second's, fetched after the change


async def test_joiners_of_a_failed_fetch_ask_for_themselves() -> None:
    kept = records()
    fetch = Fetches()
    fetch.error = RuntimeError("the image service failed")
    first = asyncio.create_task(kept.fetched("i1", EP, ALICE, fetch, usable))
    await settle()
    others = [asyncio.create_task(kept.fetched("i1", EP, ALICE, fetch, usable))
              for _ in range(2)]
    await settle()
    fetch.gate.set()
    with pytest.raises(RuntimeError):
        await first
    assert [await o for o in others] == [{"id": "i1", "status": "active"}] * 2
    assert fetch.calls == 3


async def test_an_answer_not_to_keep_is_not_shared_nor_kept() -> None:
    kept = records()
    fetch = Fetches({"id": "i1", "status": "queued"})
    waiting = [asyncio.create_task(kept.fetched("i1", EP, ALICE, fetch, usable))
               for _ in range(3)]
    await settle()
    fetch.gate.set()
    assert [await w for w in waiting] == [{"id": "i1", "status": "queued"}] * 3
    assert fetch.calls == 3 and len(kept) == 0


async def test_a_cancelled_fetch_leaves_no_one_waiting() -> None:
    kept = records()
    fetch = Fetches()
    first = asyncio.create_task(kept.fetched("i1", EP, ALICE, fetch, usable))
    await settle()
    joiner = asyncio.create_task(kept.fetched("i1", EP, ALICE, fetch, usable))
    await settle()
    first.cancel()
    await settle()
    fetch.gate.set()
    assert await asyncio.wait_for(joiner, 5) == {"id": "i1", "status": "active"}
    assert fetch.calls == 2


async def test_nothing_is_shared_while_records_are_not_served() -> None:
    kept = ImageRecords()  # off: nothing tells it of changes
    fetch = Fetches()
    waiting = [asyncio.create_task(kept.fetched("i1", EP, ALICE, fetch, usable))
               for _ in range(3)]
    await settle()
    fetch.gate.set()
    await asyncio.gather(*waiting)
    assert fetch.calls == 3
