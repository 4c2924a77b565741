"""``python -m benchmarks.profiles.dhcp_agent_creates [PORTS] [CREATES] [BATCH]``: what a port
create costs the dhcp-agent alone, in CPU time, where the load of the machine reaches least.

The agent (``DhcpAgentManager``) runs in this process against the test suite's in-memory
server (``ServerDouble``, called directly: no bus), on the real kernel with a real dnsmasq.
Its network starts with ``PORTS`` ports (default 2000, a /16); then ``CREATES`` (default 200)
port events arrive ``BATCH`` at a time (default 1: a create alone, as under load; a larger
batch is what a burst queued behind the network's lock becomes), each batch awaited, and
then as many deletes, one at a time. Reported per create and per delete: the CPU time of
this process (``time.process_time``: the agent's work, its threads included) and of the
network's dnsmasq processes (user + system from ``/proc``, those restarted included), and
SIGHUPs seen by dnsmasq (``read <opts>`` lines in its log). A port create is done when its
handler returned; dnsmasq's reading of the new file is counted once the run settles (1 s).

Needs root and dnsmasq. Measures the tree it is imported from: run another tree's code with
``PYTHONPATH=<tree>``. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from stratus.core.context import RequestContext
from stratus.network.agents.dhcp import DhcpAgentManager, DhcpAgentOptions
from stratus.network.objects import FixedIP, PortInfo
from tests.integration.network_agents.conftest import ServerDouble, make_network, random_mac

CTX = RequestContext(user_id="network-server", project_id="service", roles=["service"])


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


class DnsmasqCpu:
    """CPU seconds of every dnsmasq process seen for the network (a restarted one's too,
    up to its last sample)."""

    def __init__(self) -> None:
        self.last: dict[int, int] = {}

    def sample(self, pid: int | None) -> None:
        if pid is not None:
            self.last[pid] = max(self.last.get(pid, 0), _ticks(pid))

    def seconds(self) -> float:
        return sum(self.last.values()) / os.sysconf("SC_CLK_TCK")


def _port(network_id: str, project_id: str, subnet_id: str, address: str) -> PortInfo:
    return PortInfo(id=str(uuid.uuid4()), network_id=network_id,
                    project_id=project_id, mac_address=random_mac(), device_owner="compute:x",
                    fixed_ips=[FixedIP(subnet_id=subnet_id, ip_address=address)])


async def run(ports: int, creates: int, batch: int) -> dict[str, float]:
    network = make_network(cidr="10.77.0.0/16")
    subnet = network.subnets[0]
    hosts = ipaddress.ip_network(subnet.cidr).hosts()
    for _ in range(10):  # the gateway, the DHCP port, a margin
        next(hosts)
    existing = [_port(network.id, network.project_id, subnet.id, str(next(hosts)))
                for _ in range(ports)]
    server = ServerDouble()
    server.networks[network.id] = network.model_copy(update={"ports": existing})
    with tempfile.TemporaryDirectory(prefix="dhcp-agent-bench-") as tmp:
        state = Path(tmp) / "dhcp"
        agent = DhcpAgentManager("bench-host", server,  # type: ignore[arg-type]
                                 DhcpAgentOptions(state_dir=state, report_interval=3600,
                                                  resync_interval=3600))
        await agent.start()
        try:
            process = agent.networks[network.id].process
            log = state / network.id / "dnsmasq.log"
            opts = f"read {state / network.id / 'opts'}"
            await asyncio.sleep(1.0)  # dnsmasq's start-up reading done
            cpu = DnsmasqCpu()
            cpu.sample(process.pid)
            reloads_before = log.read_text().count(opts)
            dnsmasq_before, agent_before = cpu.seconds(), time.process_time()
            made = [_port(network.id, network.project_id, subnet.id, str(next(hosts)))
                    for _ in range(creates)]
            for start in range(0, creates, batch):
                await asyncio.gather(*(agent.port_updated(CTX, p)
                                       for p in made[start:start + batch]))
                cpu.sample(process.pid)
            agent_create = time.process_time() - agent_before
            await asyncio.sleep(1.0)
            cpu.sample(process.pid)
            dnsmasq_create = cpu.seconds() - dnsmasq_before
            reloads_create = log.read_text().count(opts) - reloads_before

            dnsmasq_before, agent_before = cpu.seconds(), time.process_time()
            for port in made:
                await agent.port_deleted(CTX, network.id, port.id)
                cpu.sample(process.pid)
            agent_delete = time.process_time() - agent_before
            await asyncio.sleep(1.0)
            cpu.sample(process.pid)
            dnsmasq_delete = cpu.seconds() - dnsmasq_before
            reloads_delete = log.read_text().count(opts) - reloads_before - reloads_create
            signals = getattr(process, "reloads", None)
        finally:
            await agent.stop()
    return {
        "ports": ports, "creates": creates, "batch": batch,
        "agent_cpu_ms_per_create": round(agent_create * 1000 / creates, 3),
        "dnsmasq_cpu_ms_per_create": round(dnsmasq_create * 1000 / creates, 3),
        "dnsmasq_reloads_per_create": round(reloads_create / creates, 3),
        "agent_cpu_ms_per_delete": round(agent_delete * 1000 / creates, 3),
        "dnsmasq_cpu_ms_per_delete": round(dnsmasq_delete * 1000 / creates, 3),
        "dnsmasq_reloads_per_delete": round(reloads_delete / creates, 3),
        "sighups_sent": signals if signals is not None else float("nan"),
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    args = [int(a) for a in sys.argv[1:]]
    ports, creates, batch = (args + [2000, 200, 1][len(args):])[:3]
    print(json.dumps(asyncio.run(run(ports, creates, batch))))


if __name__ == "__main__":
    main()
