"""The network service's host agents: the dhcp-agent (dnsmasq per network in a namespace,
with a metadata proxy beside it) and the l2-agent (Linux bridges, taps, VXLAN devices).

Agents never read the network database: they act on ``stratus.network.objects`` snapshots
the server sends over the bus (``stratus.network.rpcapi``) and report back the same way.
Every kernel change goes through :mod:`stratus.network.agents.linux` (pyroute2 netlink).
"""
