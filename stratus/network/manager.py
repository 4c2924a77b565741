"""network-api's bus server for its agents: every method of ``NetworkServerAPI``.

Served on the topic ``network`` (``NETWORK_TOPIC``) by each network-api process. Each method
runs in its own transaction; what it changes is told to the backend after the commit, as
for API requests (``NetworkRuntime.service``).
"""

from __future__ import annotations

import logging

from stratus.core.context import RequestContext
from stratus.network.objects import (
    AgentState,
    DeviceDetails,
    FdbEntries,
    NetworkInfo,
    PortInfo,
    RouterInfo,
    SecurityGroupsSnapshot,
)
from stratus.network.service import NetworkRuntime

LOG = logging.getLogger(__name__)


class NetworkServerManager:
    """The server side of ``stratus.network.rpcapi.NetworkServerAPI`` (same method names)."""

    METHODS = ("report_state", "get_active_networks", "get_network", "ensure_dhcp_port",
               "release_dhcp_port", "get_device_details", "get_security_groups",
               "get_group_members",
               "get_bound_ports", "get_fdb_entries",
               "update_device_up", "update_device_down",
               "get_routers", "update_floatingip_statuses")

    def __init__(self, runtime: NetworkRuntime) -> None:
        self.runtime = runtime

    async def report_state(self, ctx: RequestContext, state: AgentState) -> None:
        async with self.runtime.service() as svc:
            await svc.agents.report_state(state)

    async def get_active_networks(self, ctx: RequestContext, host: str) -> list[NetworkInfo]:
        async with self.runtime.service(write=False) as svc:
            return await svc.agent_sync.active_networks()

    async def get_network(self, ctx: RequestContext, network_id: str) -> NetworkInfo | None:
        async with self.runtime.service(write=False) as svc:
            return await svc.agent_sync.network(network_id)

    async def ensure_dhcp_port(self, ctx: RequestContext, network_id: str,
                               host: str) -> PortInfo:
        async with self.runtime.service() as svc:
            return await svc.agent_sync.ensure_dhcp_port(network_id, host)

    async def release_dhcp_port(self, ctx: RequestContext, network_id: str,
                                host: str) -> None:
        async with self.runtime.service() as svc:
            await svc.agent_sync.release_dhcp_port(network_id, host)

    async def get_device_details(self, ctx: RequestContext, port_id: str,
                                 host: str) -> DeviceDetails | None:
        async with self.runtime.service(write=False) as svc:
            return await svc.agent_sync.device_details(port_id)

    async def get_security_groups(self, ctx: RequestContext,
                                  group_ids: list[str]) -> SecurityGroupsSnapshot:
        async with self.runtime.service(write=False) as svc:
            return await svc.agent_sync.security_groups(group_ids)

    async def get_group_members(self, ctx: RequestContext,
                                members: dict[str, list[str]]) -> dict[str, list[str]]:
        async with self.runtime.service(write=False) as svc:
            return await svc.agent_sync.group_members_among(members)

    async def get_bound_ports(self, ctx: RequestContext, host: str) -> list[DeviceDetails]:
        async with self.runtime.service(write=False) as svc:
            return await svc.agent_sync.bound_ports(host)

    async def get_fdb_entries(self, ctx: RequestContext, host: str) -> FdbEntries:
        async with self.runtime.service(write=False) as svc:
            return await svc.l2pop.for_host(host)

    async def update_device_up(self, ctx: RequestContext, port_id: str, host: str) -> None:
        async with self.runtime.service() as svc:
            if await svc.agent_sync.set_port_status(port_id, host, up=True) is None:
                LOG.info("device up for port %s, which no longer exists", port_id)

    async def update_device_down(self, ctx: RequestContext, port_id: str, host: str) -> None:
        async with self.runtime.service() as svc:
            await svc.agent_sync.set_port_status(port_id, host, up=False)

    # The l3-agents -----------------------------------------------------------------------

    async def get_routers(self, ctx: RequestContext, host: str,
                          router_ids: list[str] | None = None) -> list[RouterInfo]:
        async with self.runtime.service() as svc:  # writes: it may schedule routers
            return await svc.l3_sync.get_routers(host, router_ids)

    async def update_floatingip_statuses(self, ctx: RequestContext, router_id: str,
                                         statuses: dict[str, str]) -> None:
        async with self.runtime.service() as svc:
            await svc.l3_sync.update_floatingip_statuses(router_id, statuses)
