"""The Network API's collections: networks, subnets, subnet pools, ports, security groups and their
rules, and agents. Each gets the standard routes (``resources.add_routes``: list, show,
create single or bulk, update, delete) from its description here: which domain part holds
it and how its rows are shown."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stratus.core.policy import Caller
from stratus.network.api import views
from stratus.network.api.resources import Collection, add_routes, each
from stratus.network.api.schemas import (
    AgentUpdateBody,
    NetworkBody,
    NetworkUpdateBody,
    PortBody,
    PortUpdateBody,
    RuleBody,
    SecurityGroupBody,
    SecurityGroupUpdateBody,
    SubnetBody,
    SubnetPoolBody,
    SubnetPoolUpdateBody,
    SubnetUpdateBody,
)
from stratus.network.service import NetworkService

router = APIRouter(prefix="/v2.0")


# Views that need more than the row -------------------------------------------------------


async def _group_views(svc: NetworkService, caller: Caller,
                       groups: list[Any]) -> list[dict[str, Any]]:
    defaults = await svc.security_groups.default_group_ids(g.id for g in groups)
    return [views.security_group(g, g.id in defaults) for g in groups]


async def _rule_views(svc: NetworkService, caller: Caller,
                      rules: list[Any]) -> list[dict[str, Any]]:
    defaults = await svc.security_groups.default_group_ids({r.security_group_id for r in rules})
    return [views.security_group_rule(r, r.security_group_id in defaults) for r in rules]


async def _subnet_views(svc: NetworkService, caller: Caller,
                        subnets: list[Any]) -> list[dict[str, Any]]:
    external = await svc.networks.external_ids({s.network_id for s in subnets})
    return [views.subnet(s, s.network_id in external) for s in subnets]


async def _make_default_group(svc: NetworkService, caller: Caller) -> None:
    # Neutron shows a project its default group as soon as it looks at any group.
    if caller.project_id:
        await svc.security_groups.default_security_group(caller.project_id)


# Collections ------------------------------------------------------------------------------

COLLECTIONS = (
    Collection("network", "networks", lambda svc: svc.networks,
               each(lambda svc, caller, net: views.network(net, caller)),
               create=NetworkBody, update=NetworkUpdateBody),
    Collection("subnet", "subnets", lambda svc: svc.subnets,
               _subnet_views,
               create=SubnetBody, update=SubnetUpdateBody),
    Collection("subnetpool", "subnetpools", lambda svc: svc.subnetpools,
               each(lambda svc, caller, pool: views.subnetpool(pool)),
               create=SubnetPoolBody, update=SubnetPoolUpdateBody),
    Collection("port", "ports", lambda svc: svc.ports,
               each(lambda svc, caller, port: views.port(port, caller,
                                                         svc.backend.bound_vif_type)),
               create=PortBody, update=PortUpdateBody),
    Collection("security_group", "security_groups", lambda svc: svc.security_groups,
               _group_views, create=SecurityGroupBody, update=SecurityGroupUpdateBody,
               reads_write=True, before_show=_make_default_group),
    Collection("security_group_rule", "security_group_rules", lambda svc: svc.security_groups,
               _rule_views, create=RuleBody, reads_write=True),
    Collection("agent", "agents", lambda svc: svc.agents,
               each(lambda svc, caller, agent: views.agent(agent,
                                                           svc.agents.agent_alive(agent))),
               update=AgentUpdateBody),
)

for _collection in COLLECTIONS:
    add_routes(router, _collection)
