"""Weighers: rank the hosts that passed the filters.

Each weigher scores every host, the scores are scaled to 0..1 across the candidates and
multiplied by the weigher's multiplier; the host with the highest sum wins. A positive
multiplier spreads instances (most free first), a negative one packs them.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from stratus.compute.scheduler.host_state import HostState
from stratus.compute.scheduler.placement import DISK_GB, MEMORY_MB, VCPU
from stratus.compute.scheduler.request_spec import RequestSpec

Score = Callable[[HostState, RequestSpec], float]


@dataclass(frozen=True)
class Weigher:
    name: str
    score: Score


def _soft_affinity(host: HostState, spec: RequestSpec) -> float:
    if spec.group_policy == "soft-affinity":
        return 1.0 if host.host in spec.group_hosts else 0.0
    if spec.group_policy == "soft-anti-affinity":
        return 0.0 if host.host in spec.group_hosts else 1.0
    return 0.0


WEIGHERS: dict[str, Weigher] = {w.name: w for w in (
    Weigher("RAMWeigher", lambda h, s: h.available.get(MEMORY_MB, 0.0)),
    Weigher("CPUWeigher", lambda h, s: h.available.get(VCPU, 0.0)),
    Weigher("DiskWeigher", lambda h, s: h.available.get(DISK_GB, 0.0)),
    Weigher("ServerGroupSoftAffinityWeigher", _soft_affinity),
)}

DEFAULT_MULTIPLIERS = {"RAMWeigher": 1.0, "CPUWeigher": 1.0, "DiskWeigher": 1.0,
                       "ServerGroupSoftAffinityWeigher": 1.0}


def weigh(hosts: list[HostState], spec: RequestSpec, multipliers: dict[str, float],
          best: int | None = None) -> list[tuple[float, HostState]]:
    """(total weight, host), best first: every host, or only the ``best`` few."""
    totals = [0.0] * len(hosts)
    for name, multiplier in multipliers.items():
        if not multiplier:
            continue
        score = WEIGHERS[name].score
        raw = [score(h, spec) for h in hosts]
        low, high = min(raw), max(raw)
        if high == low:
            continue  # no difference between hosts: nothing to rank on
        span = high - low
        for i, value in enumerate(raw):
            totals[i] += multiplier * (value - low) / span
    if best is None:
        order = sorted(range(len(hosts)), key=totals.__getitem__, reverse=True)
    else:
        order = heapq.nlargest(best, range(len(hosts)), key=totals.__getitem__)
    return [(totals[i], hosts[i]) for i in order]
