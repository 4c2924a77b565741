"""The l3-agent: the routers the network server schedules to this host, as namespaces.

For each admin-up router the server lists for this host (``get_routers``) the driver
(:mod:`stratus.network.agents.l3.router`) keeps ``qrouter-<id>`` with its legs, routes and
NAT; floating IPs it put in force are reported ``ACTIVE`` (``update_floatingip_statuses``),
ones it took away ``DOWN``, ones it could not apply ``ERROR``.

Bus events (``L3AgentAPI``, ``l3_agent.<host>``) name routers; the agent fetches them and
applies what it gets (a router the server no longer lists for this host is removed).
``resync`` makes everything match the server's full list, on start and every
``resync_interval``. Events and resyncs overlap: questions to the server are numbered, each
router remembers which answer is in force, and an answer to an earlier question is never
applied over it (an answer slow to come back must not undo a newer one, such as a new
floating IP, until the next resync).

The agent records each router it makes in ``state_dir`` (a file per router, written before
the first kernel change), so after a crash or ``SIGKILL`` the next start adopts its
namespaces (applying over them changes nothing that is right: no address, route or rule is
duplicated) and removes those of routers deleted meanwhile, and never touches routers
another agent made. A clean ``stop`` removes every router it made (with
``cleanup_on_stop``; the next start puts them back).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stratus.core.bus import MessagingError
from stratus.core.context import RequestContext
from stratus.core.periodic import Periodic
from stratus.network.agents.l3.router import AppliedRouter, RouterDriver
from stratus.network.agents.ordering import AnswerOrder
from stratus.network.objects import AgentState, RouterInfo
from stratus.network.rpcapi import L3_AGENT_TOPIC, NetworkServerAPI

LOG = logging.getLogger(__name__)

AGENT_TYPE = "L3 agent"
BINARY = "stratus-l3-agent"


@dataclass(frozen=True)
class L3AgentOptions:
    #: One file per router this agent made (its id), read after a crash.
    state_dir: Path
    #: ``network.physical_bridges``: physical network → host bridge.
    physical_bridges: Mapping[str, str] = field(default_factory=dict)
    tunnel_ip: str | None = None
    report_interval: float = 10.0
    #: Seconds between full resyncs with the server.
    resync_interval: float = 60.0
    #: A clean stop removes the routers (as the dhcp-agent removes its networks).
    cleanup_on_stop: bool = True
    availability_zone: str = "nova"


class L3AgentManager:
    """Serves ``L3AgentAPI`` on ``l3_agent.<host>``."""

    METHODS = ("routers_updated", "router_deleted")

    def __init__(self, host: str, server: NetworkServerAPI, options: L3AgentOptions,
                 driver: RouterDriver | None = None) -> None:
        self.host = host
        self.server = server
        self.options = options
        self.driver = driver or RouterDriver(physical_bridges=dict(options.physical_bridges),
                                             tunnel_ip=options.tunnel_ip)
        #: The routers in force here, as last applied.
        self.routers: dict[str, RouterInfo] = {}
        #: Floating IP id → the status last reported, per router.
        self._reported: dict[str, dict[str, str]] = {}
        #: One per router ever seen, never dropped (see the dhcp-agent's).
        self._locks: dict[str, asyncio.Lock] = {}
        #: Numbers the questions to the server; per router, the answer in force.
        self._order = AnswerOrder()
        self._synced = False
        self._next_resync = 0.0
        self._periodic = Periodic(f"l3-agent {host}: heartbeat and resync",
                                  min(options.report_interval, options.resync_interval),
                                  self._heartbeat)

    @staticmethod
    def _context() -> RequestContext:
        return RequestContext.for_service("l3-agent")

    def _lock(self, router_id: str) -> asyncio.Lock:
        return self._locks.setdefault(router_id, asyncio.Lock())

    @staticmethod
    def _clock() -> float:
        return asyncio.get_running_loop().time()

    # Life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Report in, resync (adopting what an earlier run left), then heartbeat and resync
        periodically."""
        self.options.state_dir.mkdir(parents=True, exist_ok=True)
        await self.report(start=True)
        try:
            await self.resync()
            self._synced = True
        except MessagingError as exc:  # the server may not be up yet: the periodic resync
            LOG.warning("l3-agent %s: first resync failed (%s); will retry", self.host, exc)
        self._next_resync = self._clock() + self.options.resync_interval
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        if not self.options.cleanup_on_stop:
            return
        for router_id in sorted(self._recorded() | set(self.routers)):
            try:
                # Nothing reported on the way out: the bus may be closing, and the server
                # learns the state from the next start's resync.
                await self._remove(router_id, report=False)
            except Exception:
                LOG.exception("l3-agent %s: router %s not fully removed", self.host, router_id)

    async def report(self, *, start: bool = False) -> None:
        routers = list(self.routers.values())
        state = AgentState(
            host=self.host, binary=BINARY, agent_type=AGENT_TYPE, topic=L3_AGENT_TOPIC,
            start_flag=start, availability_zone=self.options.availability_zone,
            configurations={
                "routers": len(routers),
                "ex_gw_ports": sum(1 for r in routers if r.gateway is not None),
                "interfaces": sum(len(r.interfaces) for r in routers),
                "floating_ips": sum(len(r.floating_ips) for r in routers),
                "agent_mode": "legacy",
                "physical_bridges": dict(self.options.physical_bridges)})
        try:
            await self.server.report_state(self._context(), state)
        except MessagingError as exc:
            LOG.warning("l3-agent %s: heartbeat failed: %s", self.host, exc)

    async def _heartbeat(self) -> None:
        await self.report()
        now = self._clock()
        if now >= self._next_resync or not self._synced:
            self._next_resync = now + self.options.resync_interval
            await self.resync()
            self._synced = True

    async def resync(self) -> None:
        """Keep exactly the server's routers for this host; remove the others this agent
        made (in this run or an earlier one). A router a bus event changed after the list
        was asked for is left as the event made it."""
        asked = self._order.ask()
        wanted = await self.server.get_routers(self._context(), self.host)
        wanted_ids = {r.id for r in wanted if r.admin_state_up}
        for router in wanted:
            await self._apply_logged(router, as_of=asked, verify=True)
        for router_id in (self._recorded() | set(self.routers)) - wanted_ids:
            if await self._remove(router_id, as_of=asked):
                LOG.info("l3-agent %s: router %s was no longer here", self.host, router_id)

    # Bus methods ------------------------------------------------------------------------------

    async def routers_updated(self, ctx: RequestContext, router_ids: list[str]) -> None:
        asked = self._order.ask()
        found = await self.server.get_routers(ctx, self.host, router_ids)
        for router in found:
            await self._apply_logged(router, as_of=asked)
        for router_id in set(router_ids) - {r.id for r in found}:
            await self._remove(router_id, as_of=asked)

    async def router_deleted(self, ctx: RequestContext, router_id: str) -> None:
        await self._remove(router_id, as_of=self._order.ask())

    # Work -------------------------------------------------------------------------------------

    def _recorded(self) -> set[str]:
        directory = self.options.state_dir
        if not directory.is_dir():
            return set()
        return {p.name for p in directory.iterdir() if p.is_file()}

    async def _apply_logged(self, router: RouterInfo, *, as_of: int,
                            verify: bool = False) -> None:
        try:
            await self.apply(router, as_of=as_of, verify=verify)
        except Exception:  # one broken router must not keep the others from being served
            LOG.exception("l3-agent %s: router %s could not be applied; the next resync "
                          "tries again", self.host, router.id)
            await self._report_statuses(router.id, {f.id: "ERROR" for f in router.floating_ips})

    def _outdated(self, router_id: str, as_of: int) -> bool:
        """Whether the answer to question ``as_of`` is older than the one in force;
        records ``as_of`` when it is not."""
        if self._order.outdated(router_id, as_of):
            LOG.debug("l3-agent %s: an outdated state of router %s ignored", self.host,
                      router_id)
            return True
        return False

    async def apply(self, router: RouterInfo, *, as_of: int | None = None,
                    verify: bool = False) -> AppliedRouter | None:
        """Make the router's namespace match ``router`` (an admin-down router is removed),
        unless a newer state is in force: ``as_of`` numbers the question this state
        answers (default: a new one). ``verify``: check every part again, not only what
        changed (the resyncs)."""
        as_of = self._order.ask() if as_of is None else as_of
        if not router.admin_state_up:
            await self._remove(router.id, as_of=as_of)
            return None
        async with self._lock(router.id):
            if self._outdated(router.id, as_of):
                return None
            marker = self.options.state_dir / router.id
            if not marker.exists():
                await asyncio.to_thread(_record, marker, router.project_id)
            applied = await asyncio.to_thread(functools.partial(
                self.driver.apply, router, verify=verify))
            first = router.id not in self.routers
            self.routers[router.id] = router
        if first:
            LOG.info("l3-agent %s: router %s in force (%d interface(s), gateway %s, %d "
                     "floating IP(s))", self.host, router.id, len(router.interfaces),
                     "yes" if router.gateway else "no", len(router.floating_ips))
        statuses = {fip_id: "ACTIVE" for fip_id in applied.active_floating_ips}
        await self._report_statuses(router.id, statuses)
        return applied

    async def _report_statuses(self, router_id: str, statuses: dict[str, str]) -> None:
        """Tell the server what changed since the last report: new statuses, and ``DOWN``
        for floating IPs this router no longer holds."""
        before = self._reported.get(router_id, {})
        changes = {f: s for f, s in statuses.items() if before.get(f) != s}
        changes.update({f: "DOWN" for f, s in before.items()
                        if f not in statuses and s != "DOWN"})
        if not changes:
            return
        try:
            await self.server.update_floatingip_statuses(self._context(), router_id, changes)
        except MessagingError as exc:  # reported again at the next apply
            LOG.warning("l3-agent %s: floating IP statuses of %s not reported: %s",
                        self.host, router_id, exc)
            return
        self._reported[router_id] = {**before, **changes}

    async def _remove(self, router_id: str, *, as_of: int | None = None,
                      report: bool = True) -> bool:
        """Take the router away (unless an answer newer than question ``as_of`` is in
        force); whether there was anything to take."""
        async with self._lock(router_id):
            if self._outdated(router_id, self._order.ask() if as_of is None else as_of):
                return False
            removed = await asyncio.to_thread(self.driver.remove, router_id)
            known = self.routers.pop(router_id, None)
            marker = self.options.state_dir / router_id
            await asyncio.to_thread(marker.unlink, True)
        if report and known is not None and known.floating_ips:
            await self._report_statuses(router_id, {})
        self._reported.pop(router_id, None)
        if removed or known is not None:
            LOG.info("l3-agent %s: router %s removed", self.host, router_id)
        return bool(removed or known is not None)



def _record(marker: Path, project_id: str) -> None:
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(project_id + "\n")
