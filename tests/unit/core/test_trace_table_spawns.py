"""Which seed step a conductor message about a guest is: before its spawn (18) or after (45)."""

from __future__ import annotations

from typing import Any

from stratus.core.spanstore import StoredSpan
from stratus.core.trace_table import table

_CLIENT = 2


def _span(n: int, name: str, *, instance: str | None, trace: str = "t1",
          kind: int = 0, **attributes: Any) -> StoredSpan:
    return StoredSpan(trace_id=trace, span_id=f"s{n}", parent_id=None, name=name, kind=kind,
                      start_ns=1_000 * n, end_ns=1_000 * n + 500, status=0,
                      status_message=None, request_id="req-1", instance_uuid=instance,
                      host="h", pid=1, units="compute-agent", attributes=attributes)


def _spawn(n: int, instance: str, trace: str = "t1") -> StoredSpan:
    return _span(n, "compute.spawn", instance=instance, trace=trace,
                 **{"stratus.seed_step": "43-44"})


def _update(n: int, instance: str | None, trace: str = "t1") -> StoredSpan:
    return _span(n, "bus.call conductor.instance_update", instance=instance, trace=trace,
                 kind=_CLIENT)


def test_each_guest_of_a_multi_boot_is_past_its_spawn_only_after_its_own() -> None:
    rows = table([_spawn(1, "a"), _update(2, "b"), _update(3, "a"), _spawn(4, "b"),
                  _update(5, "b")])
    assert [(r.span_id, r.step) for r in rows] == [
        ("s1", "43-44"), ("s2", "18"), ("s3", "45"), ("s4", "43-44"), ("s5", "45")]


def test_a_spawn_in_another_trace_does_not_move_this_trace_past_spawning() -> None:
    # An earlier attempt at the same guest, traced apart: this trace's update before its own
    # spawn is still the update before spawning.
    rows = table([_spawn(1, "a", trace="t0"), _update(2, "a"), _spawn(3, "a"),
                  _update(4, "a")])
    assert [(r.span_id, r.step) for r in rows] == [
        ("s1", "43-44"), ("s2", "18"), ("s3", "43-44"), ("s4", "45")]


def test_a_message_naming_no_guest_follows_the_first_spawn_of_its_trace() -> None:
    rows = table([_update(1, None), _spawn(2, "a"), _update(3, None)])
    assert [(r.span_id, r.step) for r in rows] == [("s1", "18"), ("s2", "43-44"),
                                                  ("s3", "45")]
