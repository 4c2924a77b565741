"""The compute agent: one per host; builds instances with the virt driver."""

#: The user a compute agent's own work (heartbeats, power-state sync) runs as.
AGENT_USER = "compute-agent"
