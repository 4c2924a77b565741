"""Weighers: rank the hosts that passed the filters.

Each weigher scores every candidate, the scores are scaled to 0..1 across the candidates and
multiplied by the weigher's multiplier; the host with the highest sum wins. A positive
multiplier spreads instances (most free first), a negative one packs them. Resource
weighers read a ``HostView`` column; the others score host by host. NumPy
(``arrays.np``) is loaded by the first ``weigh``, not with the module (see ``filters``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stratus.compute.placement import DISK_GB, MEMORY_MB, VCPU
from stratus.compute.scheduler import arrays
from stratus.compute.scheduler.host_state import HostState
from stratus.compute.scheduler.request_spec import RequestSpec

if TYPE_CHECKING:
    from stratus.compute.scheduler.arrays import Floats
    from stratus.compute.scheduler.host_view import HostView

    Column = Callable[[HostView], Floats]

Score = Callable[[HostState, RequestSpec], float]


@dataclass(frozen=True)
class Weigher:
    name: str
    score: Score
    column: Column | None = None


def _soft_affinity(host: HostState, spec: RequestSpec) -> float:
    if spec.group_policy == "soft-affinity":
        return 1.0 if host.host in spec.group_hosts else 0.0
    if spec.group_policy == "soft-anti-affinity":
        return 0.0 if host.host in spec.group_hosts else 1.0
    return 0.0


def _free(rc: str) -> tuple[Score, Column]:
    return (lambda h, s: h.available.get(rc, 0.0)), (lambda view: view.available[rc])


WEIGHERS: dict[str, Weigher] = {w.name: w for w in (
    Weigher("RAMWeigher", *_free(MEMORY_MB)),
    Weigher("CPUWeigher", *_free(VCPU)),
    Weigher("DiskWeigher", *_free(DISK_GB)),
    Weigher("ServerGroupSoftAffinityWeigher", _soft_affinity),
)}

DEFAULT_MULTIPLIERS = {"RAMWeigher": 1.0, "CPUWeigher": 1.0, "DiskWeigher": 1.0,
                       "ServerGroupSoftAffinityWeigher": 1.0}


def weigh(view: HostView, candidates: Sequence[int], spec: RequestSpec,
          multipliers: dict[str, float], best: int | None = None) -> list[int]:
    """Indexes into ``view`` of the best candidates, best first (ties keep view order)."""
    idx = arrays.np.asarray(candidates, dtype=arrays.np.int64)
    totals = arrays.np.zeros(len(idx))
    for name, multiplier in multipliers.items():
        if not multiplier:
            continue
        weigher = WEIGHERS[name]
        if weigher.column is not None:
            raw = weigher.column(view)[idx]
        else:
            raw = arrays.np.array([weigher.score(view.hosts[i], spec) for i in idx], dtype=float)
        low, high = raw.min(), raw.max()
        if high > low:  # equal scores rank nothing
            totals += multiplier * (raw - low) / (high - low)
    order = arrays.np.argsort(-totals, kind="stable")
    if best is not None:
        order = order[:best]
    return [int(idx[j]) for j in order]
