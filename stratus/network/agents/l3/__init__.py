"""The l3-agent: a ``qrouter-<id>`` namespace per router with its legs, routes and NAT
(``router`` is the kernel driver, ``manager`` the bus unit)."""
