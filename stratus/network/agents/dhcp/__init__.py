"""The dhcp-agent: dnsmasq and a metadata proxy per network, each in the network's
``qdhcp-<id>`` namespace (see ``manager``)."""

from stratus.network.agents.dhcp.manager import DhcpAgentManager, DhcpAgentOptions

__all__ = ["DhcpAgentManager", "DhcpAgentOptions"]
