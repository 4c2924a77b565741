"""Routers and their l3-agents: which agent a router is scheduled to, and telling that agent
(after the commit) that its routers changed or went.

Scheduling: a router gets an agent when it first needs one (its first leg), the alive
l3-agent with the fewest routers (ties by host name); the choice is stored on the router
(``l3_agent_host``) and every leg of the router is bound to that host (``binding:host_id``).
With no l3-agent alive the router waits unscheduled; the first agent that asks for its
routers (``get_routers``) takes it. A router whose agent died stays where it is.

Notices: within one transaction, the routers changed per host are gathered and each host
gets one ``routers_updated`` cast after the commit (``L3AgentAPI``); a deleted router is a
``router_deleted`` to its host. Without an l3-agent API (no bus) nobody is told.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, or_, select, update

from stratus.core.config import NetworkSettings
from stratus.core.db import utcnow
from stratus.network.backends import NetworkBackend
from stratus.network.models import Agent, Port, Router
from stratus.network.notify import system_context
from stratus.network.objects import ROUTER_INTERFACE_OWNER
from stratus.network.part import Part
from stratus.network.rpcapi import L3AgentAPI

#: How an l3-agent describes itself in its heartbeats (``network agent list``).
L3_AGENT_TYPE = "L3 agent"
L3_AGENT_BINARY = "stratus-l3-agent"


def router_legs(router_id: str) -> ColumnElement[bool]:
    """The WHERE clause of a router's legs: its interfaces and its gateway port."""
    gateway = select(Router.gw_port_id).where(Router.id == router_id).scalar_subquery()
    return or_(Port.id == gateway, (Port.device_owner == ROUTER_INTERFACE_OWNER)
               & (Port.device_id == router_id))


@dataclass
class L3Agents(Part):
    """The routers' agents within one transaction."""

    options: NetworkSettings
    backend: NetworkBackend
    api: L3AgentAPI | None
    _changed: dict[str, set[str]] = field(default_factory=dict, init=False)

    # Scheduling --------------------------------------------------------------------------

    async def alive_hosts(self) -> list[str]:
        since = utcnow() - dt.timedelta(seconds=self.options.agent_down_time)
        return list(await self.session.scalars(select(Agent.host).where(
            Agent.agent_type == L3_AGENT_TYPE, Agent.admin_state_up.is_(True),
            Agent.heartbeat_timestamp >= since).order_by(Agent.host)))

    async def schedule(self, router: Router) -> str:
        """The router's host, chosen now if it has none (the least loaded alive agent);
        '' while no l3-agent is alive."""
        if router.l3_agent_host:
            return router.l3_agent_host
        hosts = await self.alive_hosts()
        if not hosts:
            return ""
        await self.txn.lock("l3-scheduling")
        load = {h: n for h, n in await self.session.execute(
            select(Router.l3_agent_host, func.count()).where(
                Router.l3_agent_host.in_(hosts)).group_by(Router.l3_agent_host))}
        host = min(hosts, key=lambda h: (load.get(h, 0), h))
        await self.bind(router, host)
        return host

    async def bind(self, router: Router, host: str, *, notify: bool = True) -> None:
        """Schedule the router to ``host`` and bind its legs there; ``notify``: tell that
        host's agent (not when it is the one asking)."""
        router.l3_agent_host = host
        await self.session.execute(update(Port).where(router_legs(router.id)).values(
            binding_host_id=host).execution_options(synchronize_session=False))
        await self.session.flush()
        if notify:
            self.routers_updated(host, [router.id])

    async def unscheduled_needing_agent(self, router_ids: Iterable[str] | None) -> list[Router]:
        """Routers with a leg and no agent (of ``router_ids``, if given)."""
        with_interface = select(Port.device_id).where(
            Port.device_owner == ROUTER_INTERFACE_OWNER)
        query = select(Router).where(Router.l3_agent_host == "", or_(
            Router.gw_port_id.is_not(None), Router.id.in_(with_interface)))
        if router_ids is not None:
            query = query.where(Router.id.in_(list(router_ids)))
        return list(await self.session.scalars(query.order_by(Router.created_at, Router.id)))

    # Notices -----------------------------------------------------------------------------

    def routers_updated(self, host: str, router_ids: Iterable[str]) -> None:
        """After the commit, ``host``'s agent hears that these routers changed (one cast per
        host and transaction)."""
        if not host or self.api is None:
            return
        first = not self._changed
        self._changed.setdefault(host, set()).update(router_ids)
        if first:
            self.txn.after_commit(self._send_updates)

    def router_changed(self, router: Router) -> None:
        self.routers_updated(router.l3_agent_host, [router.id])

    def router_deleted(self, router: Router) -> None:
        host, router_id, api = router.l3_agent_host, router.id, self.api
        if not host or api is None:
            return
        for ids in self._changed.values():
            ids.discard(router_id)
        self.txn.after_commit(lambda: api.router_deleted(system_context(), host, router_id))

    async def _send_updates(self) -> None:
        api = self.api
        assert api is not None
        for host, ids in self._changed.items():
            if ids:
                await api.routers_updated(system_context(), host, sorted(ids))
