"""Choosing hosts: filter, weigh, pick, and claim on the database.

``select_hosts`` is the pure decision over an in-memory view of the hosts.
``HostSelector`` keeps that view, claims the chosen host's resources atomically, and
moves on to the next best host when a claim loses a race or no longer fits. The view's
arrays (NumPy, ``arrays.np``) are made at the first decision, so a scheduler that has not
decided yet has not loaded NumPy.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from sqlalchemy.exc import OperationalError

from stratus.compute.errors import ClaimConflict, InsufficientResources, NoValidHost
from stratus.compute.hosts import DEFAULT_DOWN_TIME
from stratus.compute.placement import Placement
from stratus.compute.scheduler import arrays
from stratus.compute.scheduler.filters import DEFAULT_FILTERS, HostFilter, resolve
from stratus.compute.scheduler.host_state import HostState, load_host_states
from stratus.compute.scheduler.host_view import HostView
from stratus.compute.scheduler.request_spec import RequestSpec
from stratus.compute.scheduler.weighers import DEFAULT_MULTIPLIERS, weigh
from stratus.core.db import Database, GroupCommit, Txn

__all__ = ["HostSelector", "NoValidHost", "SchedulerOptions", "select_hosts"]

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchedulerOptions:
    filters: tuple[str, ...] = DEFAULT_FILTERS
    weigher_multipliers: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_MULTIPLIERS))
    #: Pick at random among this many best hosts, so parallel schedulers collide less.
    host_subset_size: int = 1
    #: Other hosts kept, in order, for a reschedule after a failed build.
    max_alternates: int = 3
    #: A host whose last heartbeat is older than this (seconds) is down
    #: (``settings.compute.service_down_time``).
    service_down_time: float = DEFAULT_DOWN_TIME
    #: How long the in-memory host view is trusted before it is reloaded (seconds).
    refresh_interval: float = 10.0
    max_claim_attempts: int = 10


#: Batches of claims one scheduler commits at once on PostgreSQL. One: two batches of one
#: process claiming on the same provider wait for each other's row lock, and under load past
#: the batch's lock timeout (bootcpu on PostgreSQL with 4: 0.45 units a boot run again
#: alone; with 1: none, and fewer commits).
CLAIM_LANES = 1

#: Hosts named per filter in the evidence (the rest are counted): a fault's details and a
#: span stay small when thousands of hosts were removed.
EVIDENCE_HOSTS_PER_FILTER = 10


def explain(hosts: list[HostState], spec: RequestSpec,
            filters: list[HostFilter]) -> NoValidHost:
    """Nova's "No valid host was found." with which filter removed how many hosts, and the
    evidence: each filter's count, then the hosts it removed and why."""
    remaining = hosts
    steps: list[str] = []
    evidence: list[str] = []
    for host_filter in filters:
        kept: list[HostState] = []
        removed: list[HostState] = []
        for h in remaining:
            (kept if host_filter.passes(h, spec) else removed).append(h)
        if removed:
            steps.append(f"{host_filter.name} removed {len(removed)} of "
                         f"{len(remaining)} hosts")
            evidence.append(f"{host_filter.name} removed {len(removed)} of "
                            f"{len(remaining)} hosts:")
            evidence += [f"  {h.host}: {host_filter.reason(h, spec)}"
                         for h in removed[:EVIDENCE_HOSTS_PER_FILTER]]
            if len(removed) > EVIDENCE_HOSTS_PER_FILTER:
                evidence.append(f"  ... and {len(removed) - EVIDENCE_HOSTS_PER_FILTER} more")
        else:
            evidence.append(f"{host_filter.name} kept all {len(remaining)} hosts")
        remaining = kept
    detail = "; ".join(steps) if steps else "there are no compute hosts"
    return NoValidHost(
        f"No valid host was found. There are not enough hosts available: {detail}.",
        evidence=tuple(evidence))


def select_hosts(hosts: HostView | list[HostState], spec: RequestSpec,
                 options: SchedulerOptions,
                 rng: random.Random | None = None) -> list[HostState]:
    """The chosen host first, then up to ``max_alternates`` others, best first."""
    view = hosts if isinstance(hosts, HostView) else HostView(hosts)
    filters = [f for f in resolve(options.filters) if f.applies(spec)]
    mask = arrays.np.ones(len(view), dtype=bool)
    per_host = []
    for host_filter in filters:
        if host_filter.mask is not None:
            mask &= host_filter.mask(view, spec)
        else:
            per_host.append(host_filter.passes)
    candidates = [int(i) for i in arrays.np.flatnonzero(mask)]
    for passes in per_host:
        candidates = [i for i in candidates if passes(view.hosts[i], spec)]
    if not candidates:
        raise explain(view.hosts, spec, filters)
    wanted = max(1, options.host_subset_size) + options.max_alternates
    ranked = [view.hosts[i] for i in weigh(view, candidates, spec,
                                           options.weigher_multipliers, best=wanted)]
    subset = ranked[:max(1, options.host_subset_size)]
    chosen = (rng or random).choice(subset) if len(subset) > 1 else subset[0]
    alternates = [h for h in ranked if h is not chosen][:options.max_alternates]
    return [chosen, *alternates]


class HostSelector:
    """Selects and claims hosts for builds; one per scheduler process."""

    def __init__(self, db: Database, options: SchedulerOptions | None = None,
                 rng: random.Random | None = None) -> None:
        self.db = db
        self.options = options or SchedulerOptions()
        self.rng = rng or random.Random()
        #: Made by the first decision's ``refresh``.
        self._view: HostView | None = None
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        #: The claims' transactions: concurrent ones commit together (``GroupCommit``),
        #: one batch at a time (SQLite has one writer; see ``CLAIM_LANES``).
        self._claims = GroupCommit(db, lanes=1 if db.backend == "sqlite" else CLAIM_LANES)

    async def refresh(self) -> HostView:
        """Every host's state, loaded again into a new view."""
        async with self.db.transaction(write=False) as txn:
            states = await load_host_states(txn.session,
                                            down_after=self.options.service_down_time)
        view = self._view = HostView(states)
        self._loaded_at = time.monotonic()
        return view

    async def _current_view(self) -> HostView:
        """The view decisions are made on: loaded again when none is yet or it is older
        than ``refresh_interval``. Called under ``_lock``."""
        view = self._view
        if view is None or time.monotonic() - self._loaded_at > self.options.refresh_interval:
            view = await self.refresh()
        return view

    async def _reload(self, host: str) -> None:
        if self._view is None:  # nothing decided yet: the first decision loads every host
            return
        async with self.db.transaction(write=False) as txn:
            states = await load_host_states(txn.session,
                                            down_after=self.options.service_down_time,
                                            hosts=[host])
        if states:
            self._view.replace(states[0])
        else:
            self._view.remove(host)

    async def alternates(self, spec: RequestSpec, besides: str) -> list[str]:
        """The hosts a build placed on ``besides`` may be rescheduled to, best first, as
        ``select_and_claim`` would have returned them after it; none claimed or counted.
        For a redelivered request whose placement was already made: its first cast carried
        these, and the cast sent again must too, should it be the one the host takes up."""
        async with self._lock:
            view = await self._current_view()
            others = replace(spec, ignore_hosts=spec.ignore_hosts | {besides})
            try:
                ordered = select_hosts(view, others, self.options, self.rng)
            except NoValidHost:
                return []
        return [h.host for h in ordered][:self.options.max_alternates]

    async def select_and_claim(
            self, spec: RequestSpec,
            on_claim: Callable[[Txn, str], Awaitable[None]] | None = None,
            before_claim: Callable[[Txn], Awaitable[None]] | None = None,
    ) -> list[str]:
        """Claim resources for the instance on the best host that takes them.

        Returns the host claimed on, then the alternates. Raises ``NoValidHost`` when no
        host can take the request. ``on_claim(txn, host)`` runs in the claim's own
        transaction (to record the placement with it), before the claim's statements:
        the consumer's own rows (the instance's, its migration's) are locked before the
        provider's, the order of every writer that decides on an instance and then frees
        or claims on its host (the conductor's ``build_failed``: the reverse deadlocks on
        PostgreSQL); and a consumer already placed (a redelivered request) is refused
        before it claims a second time (a duplicate allocation's key). Whatever it raises
        undoes the transaction and propagates. ``before_claim(txn)`` runs after it, just
        before the claim (a moving server hands its source's claim to its migration, so
        that the new claim counts both).
        """
        resources = spec.flavor.resources
        tried: set[str] = set()
        for _ in range(self.options.max_claim_attempts):
            # Decide under the lock and count the claim in the shared view at once, so
            # concurrent decisions see it; the database claim itself runs unlocked.
            async with self._lock:
                view = await self._current_view()
                attempt = replace(spec, ignore_hosts=spec.ignore_hosts | tried)
                ordered = select_hosts(view, attempt, self.options, self.rng)
                chosen = ordered[0]
                view.consume(chosen, resources)

            async def claim(txn: Txn, chosen: HostState = chosen) -> None:
                if on_claim is not None:
                    await on_claim(txn, chosen.host)
                if before_claim is not None:
                    await before_claim(txn)
                await Placement(txn).claim(spec.instance_uuid, chosen.provider_uuid,
                                           resources)

            try:
                # Committed with the claims of concurrent decisions (group commit), each
                # claim checked against the provider's generation and usage as its batch
                # left them: exact as alone. Keyed by provider, so batches lock providers
                # in one order.
                await self._claims.run(claim, key=chosen.provider_uuid)
            except (ClaimConflict, InsufficientResources, OperationalError) as exc:
                LOG.info("claim on %s failed (%s); trying again", chosen.host, exc)
                await self._reload(chosen.host)
                if isinstance(exc, InsufficientResources):
                    tried.add(chosen.host)
                continue
            except Exception:
                await self._reload(chosen.host)  # the view counted a claim that was undone
                raise
            return [chosen.host, *(h.host for h in ordered[1:])]
        raise NoValidHost("No valid host was found: every claim attempt conflicted.")
