"""The network service's units: ``network-api`` (with the bus server the agents call), and
the ``dhcp-agent``, ``l2-agent`` and ``l3-agent``, which run only on the linuxbridge
backend."""

from __future__ import annotations

import socket

from starlette.types import ASGIApp

from stratus.core.config import Settings
from stratus.core.generated_secrets import metadata_secret
from stratus.core.web.lazy import LazyApp
from stratus.stack import Stack, Unit, compute_hosts


async def build_api(stack: Stack) -> ASGIApp:
    from stratus.core.clients.compute import ComputeClient
    from stratus.network.backends import create_backend
    from stratus.network.choice import backend_choice
    from stratus.network.events import ComputeEventSender
    from stratus.network.manager import NetworkServerManager
    from stratus.network.rpcapi import NETWORK_TOPIC, L3AgentAPI
    from stratus.network.service import NetworkRuntime

    bus = await stack.transport()
    events = ComputeEventSender(ComputeClient(stack.http_client(), stack.service_auth()))
    choice = backend_choice(stack.settings)
    stack.chose("network backend", f"{choice.name} ({choice.reason})")
    runtime = await stack.runtime("network", lambda: NetworkRuntime(
        stack.settings, backend=create_backend(choice.name, bus), events=events,
        l3_agents=L3AgentAPI(bus)))
    await events.start()
    stack.exits.push_async_callback(events.stop)
    manager = NetworkServerManager(runtime)
    await stack.serve(NETWORK_TOPIC, None, manager, manager.METHODS)
    validator = stack.token_validator()

    def build() -> ASGIApp:
        from stratus.network.api import create_network_app

        return create_network_app(runtime, validator)

    return LazyApp(build)


def agents_unavailable(settings: Settings) -> str | None:
    """Why the network agents do not run here: they serve the linuxbridge backend only."""
    from stratus.network.choice import backend_choice

    choice = backend_choice(settings)
    if choice.name == "linuxbridge":
        return None
    return f"the network backend is {choice.name} ({choice.reason})"


async def build_dhcp_agent(stack: Stack) -> None:
    """dnsmasq and a metadata proxy per network, in its namespace; see
    ``stratus.network.agents.dhcp``."""
    from stratus.network.agents.dhcp import DhcpAgentManager, DhcpAgentOptions
    from stratus.network.agents.dhcp.dnsmasq import DnsmasqOptions
    from stratus.network.rpcapi import DHCP_AGENT_TOPIC, NetworkServerAPI

    settings = stack.settings
    net = settings.network
    host = settings.compute.host or socket.gethostname()
    options = DhcpAgentOptions(
        state_dir=settings.dhcp_state_dir,
        dnsmasq=DnsmasqOptions(binary=net.dnsmasq, domain=net.dns_domain,
                               lease_seconds=net.dhcp_lease_duration),
        report_interval=net.agent_report_interval, metadata_url=settings.metadata_url,
        metadata_secret=metadata_secret(settings), physical_bridges=net.physical_bridges)
    agent = DhcpAgentManager(host, NetworkServerAPI(await stack.transport()), options,
                             http_client=stack.http_client)
    # Registered before the bus server, so on the way out the server stops first.
    stack.exits.push_async_callback(agent.stop)
    await stack.serve(DHCP_AGENT_TOPIC, host, agent, agent.METHODS)
    await agent.start()


async def build_l2_agent(stack: Stack) -> None:
    """Bridges and taps for the ports bound to this process's compute hosts; see
    ``stratus.network.agents.l2``."""
    from stratus.network.agents.l2 import L2AgentManager, L2AgentOptions
    from stratus.network.rpcapi import L2_AGENT_TOPIC, NetworkServerAPI

    settings = stack.settings
    hosts = compute_hosts(settings) or [settings.compute.host or socket.gethostname()]
    agent = L2AgentManager(hosts, NetworkServerAPI(await stack.transport()), L2AgentOptions(
        tunnel_ip=settings.network.tunnel_ip,
        report_interval=settings.network.agent_report_interval,
        state_file=settings.data_dir / "l2-agent.json",
        physical_bridges=settings.network.physical_bridges,
        firewall_table=settings.network.firewall_table or None))
    stack.exits.push_async_callback(agent.stop)
    for host in hosts:
        await stack.serve(L2_AGENT_TOPIC, host, agent.endpoint(host), agent.METHODS)
    await agent.start()


# The l3-agent ---------------------------------------------------------------------------------


async def build_l3_agent(stack: Stack) -> None:
    """A ``qrouter-<id>`` namespace per router scheduled to this host; see
    ``stratus.network.agents.l3``."""
    from stratus.network.agents.l3.manager import L3AgentManager, L3AgentOptions
    from stratus.network.rpcapi import L3_AGENT_TOPIC, NetworkServerAPI

    settings = stack.settings
    net = settings.network
    host = settings.compute.host or socket.gethostname()
    agent = L3AgentManager(host, NetworkServerAPI(await stack.transport()), L3AgentOptions(
        state_dir=net.l3_state_dir or settings.data_dir / "l3",
        physical_bridges=net.physical_bridges, tunnel_ip=net.tunnel_ip,
        report_interval=net.agent_report_interval,
        resync_interval=net.l3_resync_interval))
    # Registered before the bus server, so on the way out the server stops first.
    stack.exits.push_async_callback(agent.stop)
    await stack.serve(L3_AGENT_TOPIC, host, agent, agent.METHODS)
    await agent.start()


UNITS = (
    Unit("network-api", "/network", build_api, ("network", "neutron", "")),
    Unit("dhcp-agent", None, build_dhcp_agent, unavailable=agents_unavailable),
    Unit("l2-agent", None, build_l2_agent, unavailable=agents_unavailable),
    Unit("l3-agent", None, build_l3_agent, unavailable=agents_unavailable),
)
