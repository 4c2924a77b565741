"""Agents as their heartbeats describe them, and the availability zones they make."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import (
    ColumnElement,
    Subquery,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    union_all,
    update,
)

from stratus.core.config import NetworkSettings
from stratus.core.db import Txn, utcnow
from stratus.core.db.paging import Page, SortKey
from stratus.core.policy import Caller
from stratus.network import filters as flt
from stratus.network.common import UNSET, Unset, given, new_id
from stratus.network.errors import AgentNotFound
from stratus.network.l2pop import L2Population
from stratus.network.models import Agent
from stratus.network.objects import L2_AGENT_TYPE, AgentState
from stratus.network.part import Part

#: How the API shows an agent's times (``2026-01-01 12:00:00``).
OLD_STYLE = "%Y-%m-%d %H:%M:%S"


def agent_attributes(down_time: float) -> flt.Attributes:
    """How agents filter and sort (``filters``): alive means heard from within
    ``down_time`` seconds; by host, then type, unless sorted otherwise."""

    def alive(values: list[str], dialect: str) -> ColumnElement[bool]:
        wanted = {v.lower() for v in values}
        recent = _recent(down_time)
        return or_(recent if "true" in wanted else false(),
                   not_(recent) if "false" in wanted else false())

    return flt.Attributes(
        filters={"id": flt.text(Agent.id), "agent_type": flt.text(Agent.agent_type),
                 "binary": flt.text(Agent.binary), "topic": flt.text(Agent.topic),
                 "host": flt.text(Agent.host), "admin_state_up": flt.boolean(Agent.admin_state_up),
                 "alive": alive, "availability_zone": flt.text(Agent.availability_zone),
                 "configurations": flt.nothing, "description": flt.text(Agent.description),
                 "created_at": flt.timestamp(Agent.created_at, OLD_STYLE),
                 "started_at": flt.timestamp(Agent.started_at, OLD_STYLE),
                 "heartbeat_timestamp": flt.timestamp(Agent.heartbeat_timestamp, OLD_STYLE),
                 "resources_synced": flt.constant(None), "ha_state": flt.constant(None)},
        sort={"id": Agent.id, "agent_type": Agent.agent_type, "binary": Agent.binary,
              "topic": Agent.topic, "host": Agent.host, "admin_state_up": Agent.admin_state_up,
              "availability_zone": Agent.availability_zone, "description": Agent.description,
              "created_at": Agent.created_at, "started_at": Agent.started_at,
              "heartbeat_timestamp": Agent.heartbeat_timestamp},
        default_sort=(SortKey("host"), SortKey("agent_type")), id_column=Agent.id)


@dataclass(frozen=True)
class AgentUpdate:
    """Changes to an agent (``UNSET``: not asked for)."""

    admin_state_up: bool | Unset = UNSET
    description: str | Unset = UNSET


@dataclass
class Agents(Part):
    """The agents within one transaction: one row per (type, host), refreshed by every
    heartbeat; alive means heard from within ``agent_down_time``."""

    options: NetworkSettings
    l2pop: L2Population

    async def report_state(self, state: AgentState) -> None:
        now = utcnow()
        agent = await self.session.scalar(select(Agent).where(
            Agent.agent_type == state.agent_type, Agent.host == state.host))
        if state.agent_type == L2_AGENT_TYPE:
            # An l2-agent new here (or with a new tunnel IP) becomes its host's endpoint.
            await self.l2pop.endpoint_changed(state.host, _tunnel_ip(agent),
                                              _tunnel_ip(state))
        if agent is None:
            result = await self.session.execute(self.txn.insert_ignore(Agent.__table__).values(
                id=new_id(), agent_type=state.agent_type, binary=state.binary,
                topic=state.topic, host=state.host,
                availability_zone=state.availability_zone, admin_state_up=True,
                description="", configurations=state.configurations, created_at=now,
                started_at=now, heartbeat_timestamp=now))
            if Txn.rowcount(result) == 1:
                return
        await self.session.execute(update(Agent).where(
            Agent.agent_type == state.agent_type, Agent.host == state.host).values(
            binary=state.binary, topic=state.topic, availability_zone=state.availability_zone,
            configurations=state.configurations, heartbeat_timestamp=now,
            **({"started_at": now} if state.start_flag else {})))

    def agent_alive(self, agent: Agent) -> bool:
        age = dt.datetime.now(dt.UTC) - agent.heartbeat_timestamp
        return age.total_seconds() <= self.options.agent_down_time

    async def list_agents(self, caller: Caller, query: flt.ListQuery) -> Page:
        caller.authorize("get_agent")
        return await self._list_page(caller, agent_attributes(self.options.agent_down_time),
                                     select(Agent), query)

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
        if agent.agent_type == L2_AGENT_TYPE:
            # As an admin removes a host: nothing points at its endpoint any more.
            await self.l2pop.endpoint_changed(agent.host, _tunnel_ip(agent), None)
        await self.session.delete(agent)

    async def availability_zones(self, caller: Caller, query: flt.ListQuery) -> Page:
        """One page of (name, resource, state) rows derived from the agents' reports, as
        Neutron derives them: a zone is available for a resource (``network`` for DHCP
        agents, else ``router``) when one of its agents is up and alive; with no zone
        reported at all, ``nova`` serves networks."""
        zones = _zones(self.options.agent_down_time)
        return await self._list_page(caller, _zone_attributes(zones), select(
            zones.c.name, zones.c.resource, zones.c.state, zones.c.id), query)


def _tunnel_ip(agent: Agent | AgentState | None) -> str | None:
    value = agent.configurations.get("tunnel_ip") if agent is not None else None
    return str(value) if value else None


def _recent(down_time: float) -> ColumnElement[bool]:
    return Agent.heartbeat_timestamp >= utcnow() - dt.timedelta(seconds=down_time)


def _zones(down_time: float) -> Subquery:
    zoned = and_(Agent.availability_zone.is_not(None), Agent.availability_zone != "")
    per_agent = select(
        Agent.availability_zone.label("name"),
        case((Agent.agent_type.contains("DHCP"), "network"), else_="router").label("resource"),
        case((and_(Agent.admin_state_up.is_(True), _recent(down_time)), 1),
             else_=0).label("up")).where(zoned).subquery()
    grouped = select(per_agent.c.name, per_agent.c.resource,
                     func.max(per_agent.c.up).label("up")).group_by(
        per_agent.c.name, per_agent.c.resource)
    default = select(literal("nova").label("name"), literal("network").label("resource"),
                     literal(1).label("up")).where(~exists().where(zoned))
    both = union_all(grouped, default).subquery()
    return select(both.c.name, both.c.resource, case(
        (both.c.up == 1, "available"), else_="unavailable").label("state"),
        (both.c.name + "/" + both.c.resource).label("id")).subquery("zones")


def _zone_attributes(zones: Subquery) -> flt.Attributes:
    return flt.Attributes(
        filters={"id": flt.text(zones.c.id), "name": flt.text(zones.c.name),
                 "resource": flt.text(zones.c.resource), "state": flt.text(zones.c.state)},
        sort={"name": zones.c.name, "resource": zones.c.resource, "state": zones.c.state},
        default_sort=(SortKey("name"), SortKey("resource")), id_column=zones.c.id)
