"""The l2-agent: Linux bridges, taps and VXLAN devices for the ports bound to its hosts
(see ``manager``)."""

from stratus.network.agents.l2.manager import L2AgentManager, L2AgentOptions

__all__ = ["L2AgentManager", "L2AgentOptions"]
