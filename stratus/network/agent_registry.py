"""Agents as their heartbeats describe them, and the availability zones they make."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.core.config import NetworkSettings
from stratus.core.db import utcnow
from stratus.network.caller import Caller
from stratus.network.common import UNSET, Unset, given, new_id, rowcount
from stratus.network.errors import AgentNotFound
from stratus.network.models import Agent
from stratus.network.objects import AgentState
from stratus.network.txn import Txn


@dataclass(frozen=True)
class AgentUpdate:
    """Changes to an agent (``UNSET``: not asked for)."""

    admin_state_up: bool | Unset = UNSET
    description: str | Unset = UNSET


@dataclass
class Agents:
    """The agents within one transaction: one row per (type, host), refreshed by every
    heartbeat; alive means heard from within ``agent_down_time``."""

    txn: Txn
    options: NetworkSettings

    @property
    def session(self) -> AsyncSession:
        return self.txn.session

    async def report_state(self, state: AgentState) -> None:
        now = utcnow()
        agent = await self.session.scalar(select(Agent).where(
            Agent.agent_type == state.agent_type, Agent.host == state.host))
        if agent is None:
            result = await self.session.execute(self.txn.insert_ignore(Agent.__table__).values(
                id=new_id(), agent_type=state.agent_type, binary=state.binary,
                topic=state.topic, host=state.host,
                availability_zone=state.availability_zone, admin_state_up=True,
                description="", configurations=state.configurations, created_at=now,
                started_at=now, heartbeat_timestamp=now))
            if rowcount(result) == 1:
                return
        await self.session.execute(update(Agent).where(
            Agent.agent_type == state.agent_type, Agent.host == state.host).values(
            binary=state.binary, topic=state.topic, availability_zone=state.availability_zone,
            configurations=state.configurations, heartbeat_timestamp=now,
            **({"started_at": now} if state.start_flag else {})))

    def agent_alive(self, agent: Agent) -> bool:
        age = dt.datetime.now(dt.UTC) - agent.heartbeat_timestamp
        return age.total_seconds() <= self.options.agent_down_time

    async def list_agents(self, caller: Caller) -> list[Agent]:
        caller.authorize("get_agent")
        return list(await self.session.scalars(select(Agent).order_by(Agent.host,
                                                                      Agent.agent_type)))

    async def get_agent(self, caller: Caller, agent_id: str) -> Agent:
        caller.authorize("get_agent")
        agent = await self.session.get(Agent, agent_id)
        if agent is None:
            raise AgentNotFound(agent_id)
        return agent

    async def update_agent(self, caller: Caller, agent_id: str,
                           change: AgentUpdate) -> Agent:
        agent = await self.get_agent(caller, agent_id)
        caller.authorize("update_agent")
        for column, value in given(change).items():
            setattr(agent, column, value)
        await self.session.flush()
        return agent

    async def delete_agent(self, caller: Caller, agent_id: str) -> None:
        agent = await self.get_agent(caller, agent_id)
        caller.authorize("delete_agent")
        await self.session.delete(agent)

    async def availability_zones(self) -> list[tuple[str, str, bool]]:
        """(zone, resource, available) from the agents' reports, as Neutron derives them."""
        zones: dict[tuple[str, str], bool] = {}
        for agent in await self.session.scalars(select(Agent)):
            if not agent.availability_zone:
                continue
            resource = "network" if "DHCP" in agent.agent_type else "router"
            key = (agent.availability_zone, resource)
            zones[key] = zones.get(key, False) or (agent.admin_state_up
                                                   and self.agent_alive(agent))
        if not zones:
            zones[("nova", "network")] = True
        return [(z, r, a) for (z, r), a in sorted(zones.items())]
