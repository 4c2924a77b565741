"""``ImageRecords`` (``stratus.core.image_caches``): per image and caller, bounded, off until
told it will hear of changes, nothing kept from a fetch that raced a change, nothing served
while the bus is down or kept across a reconnection."""

from __future__ import annotations

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
