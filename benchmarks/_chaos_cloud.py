"""Split mode on a RabbitMQ node and a PostgreSQL server of its own, for the chaos scenario.

Every unit runs in its own ``stratus serve`` process: one API process (identity, image,
compute, placement and volume APIs) on a free port, the network API on another (the catalog
is re-pointed at it), two schedulers, two conductors, two compute agents sharing the fake
hosts, and a volume manager. The broker is a private single RabbitMQ node
(``tests.rabbit_cluster``) and the database a private PostgreSQL server
(``tests.pg_instance``), so they can be stopped and restarted without touching the
machine's shared ones. Each process can be SIGKILLed and started again by name.

With ``network_agents``, the network backend is linuxbridge and one compute agent serves one
fake host, beside a ``dhcp-agent`` and an ``l2-agent`` process for that host on this machine
(in the root namespace: a second l2-agent here would fight over the same bridge names), each
its own process; the firewall tables are named for this cloud. Leaving removes what they may
have left after a SIGKILL: dnsmasq processes, ``qdhcp-`` namespaces, bridges and taps, and
the firewall tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks._cloud import free_port, password_auth, stratus_command
from benchmarks._split import clean_env, copy_logs, log_tail, stop_processes
from tests.pg_instance import PrivatePostgres
from tests.rabbit_cluster import RabbitCluster

ADMIN_PASSWORD = "chaos-admin-pw"
API_UNITS = ("identity-api", "image-api", "compute-api", "placement-api", "volume-api")


class ChaosCloud:
    """The split cloud; ``async with`` starts the broker, the database and every process,
    and leaving stops and removes them all (also on error)."""

    def __init__(self, work_dir: Path, *, hosts: int, fake_latency: float,
                 env: dict[str, str] | None = None, network_agents: bool = False) -> None:
        self.work_dir = work_dir
        self.data_dir = work_dir / "data"
        self.hosts = hosts
        self.port = free_port()
        self.network_port = free_port()
        self.rabbit = RabbitCluster(work_dir / "rabbit", size=1)
        self.postgres = PrivatePostgres()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.units: dict[str, tuple[tuple[str, ...], dict[str, str], int | None]] = {}
        self.network_agents = network_agents
        suffix = uuid.uuid4().hex[:8]
        #: The one compute host of the network agents' mode, which they serve.
        self.agent_host = f"chaos-net-{suffix}"
        self.firewall_table = f"sg-chaos-{suffix}"
        #: Networks made on this cloud (for the clean-up of the agents' devices).
        self.network_ids: set[str] = set()
        network_env = {
            "STRATUS_NETWORK__BACKEND": "linuxbridge",
            "STRATUS_NETWORK__FIREWALL_TABLE": self.firewall_table,
            "STRATUS_NETWORK__AGENT_REPORT_INTERVAL": "2",
            # Every process agrees on these before any would make one up in the data dir.
            "STRATUS_METADATA__URL": f"{self.base_url}/metadata",
            "STRATUS_METADATA__SHARED_SECRET": uuid.uuid4().hex,
        } if network_agents else {"STRATUS_NETWORK__BACKEND": "noop"}
        self.extra_env = {"STRATUS_COMPUTE__FAKE_LATENCY": str(fake_latency), **network_env,
                          **(env or {})}
        self.env: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rabbit_node(self) -> Any:
        return self.rabbit.nodes[0]

    async def __aenter__(self) -> ChaosCloud:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.gather(asyncio.to_thread(self.rabbit.start),
                             asyncio.to_thread(self.postgres.start))
        self.env = clean_env(**{
            "STRATUS_CONFIG_FILE": "/nonexistent",
            "STRATUS_BUS_URL": self.rabbit.url(),
            "STRATUS_DATABASE_URL": self.postgres.url,
            "STRATUS_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "STRATUS_IDENTITY__BCRYPT_ROUNDS": "4",
            "STRATUS_COMPUTE__VIRT_DRIVER": "fake",
            "STRATUS_COMPUTE__REPORT_INTERVAL": "2",
            "STRATUS_AUTH__IDENTITY_URL": f"{self.base_url}/identity/v3",
            "STRATUS_AUTH__SERVICE_PASSWORD": ADMIN_PASSWORD,
            **self.extra_env})
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for command in (["db", "upgrade"], ["bootstrap", "--port", str(self.port)]):
            done = await asyncio.to_thread(
                subprocess.run, [*stratus_command(), *command, "--data-dir", str(self.data_dir)],
                env=self.env, capture_output=True, timeout=300, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"stratus {' '.join(command)} failed:\n"
                                   f"{done.stdout.decode(errors='replace')[-2000:]}"
                                   f"{done.stderr.decode(errors='replace')[-2000:]}")
        self.define("api", API_UNITS, port=self.port)
        self.define("network-api", ("network-api",), port=self.network_port)
        self.start("api")
        await self.wait_http(self.base_url + "/identity/v3")
        await self._point_catalog("network", f"http://127.0.0.1:{self.network_port}/network")
        self.start("network-api")
        for n in (1, 2):
            self.define(f"scheduler-{n}", ("scheduler",))
            self.define(f"conductor-{n}", ("conductor",))
        if self.network_agents:
            host = {"STRATUS_COMPUTE__HOST": self.agent_host}
            self.define("agent-1", ("compute-agent",), {"STRATUS_COMPUTE__FAKE_HOSTS": "1",
                                                        **host})
            self.define("dhcp-agent", ("dhcp-agent",), host)
            self.define("l2-agent", ("l2-agent",), host)
        else:
            per_agent, extra = divmod(self.hosts, 2)
            for n in (1, 2):
                self.define(f"agent-{n}", ("compute-agent",), {
                    "STRATUS_COMPUTE__FAKE_HOSTS": str(per_agent + (1 if n <= extra else 0)),
                    "STRATUS_COMPUTE__HOST": f"chaos-{'ab'[n - 1]}"})
        self.define("volume-manager", ("volume-manager",), {"STRATUS_VOLUME__HOST": "chaos-vol"})
        for name in self.units:
            if name not in self.processes:
                self.start(name)
        await self.wait_http(f"http://127.0.0.1:{self.network_port}/network/v2.0")

    async def _point_catalog(self, service_type: str, url: str) -> None:
        """Re-point ``service_type``'s endpoints at ``url`` (its own process's port)."""
        async with httpx.AsyncClient(base_url=self.base_url + "/identity/v3",
                                     timeout=30) as client:
            response = await client.post("/auth/tokens", json=password_auth(ADMIN_PASSWORD))
            response.raise_for_status()
            headers = {"X-Auth-Token": response.headers["X-Subject-Token"]}
            services = (await client.get("/services", headers=headers)).json()["services"]
            ids = {s["id"] for s in services if s["type"] == service_type}
            endpoints = (await client.get("/endpoints", headers=headers)).json()["endpoints"]
            for endpoint in endpoints:
                if endpoint["service_id"] in ids:
                    patched = await client.patch(f"/endpoints/{endpoint['id']}", headers=headers,
                                                 json={"endpoint": {"url": url}})
                    patched.raise_for_status()

    # Processes -----------------------------------------------------------------------------

    def define(self, name: str, units: tuple[str, ...], env: dict[str, str] | None = None,
               port: int | None = None) -> None:
        self.units[name] = (units, env or {}, port)

    def start(self, name: str) -> None:
        units, env, port = self.units[name]
        command = [*stratus_command(), "serve", *units, "--data-dir", str(self.data_dir)]
        if port is not None:
            command += ["--host", "127.0.0.1", "--port", str(port)]
        with (self.work_dir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**self.env, **env}, start_new_session=True)

    def kill(self, name: str) -> None:
        """SIGKILL the process (its whole group) and reap it."""
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def dead(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is not None]

    def log_text(self, name: str) -> str:
        try:
            return (self.work_dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, name: str, lines: int = 30) -> str:
        return log_tail(self.work_dir, name, lines)

    def copy_logs(self, directory: Path) -> None:
        """Copy every unit's log and PostgreSQL's into ``directory``."""
        copy_logs(self.work_dir, self.units, directory)
        with contextlib.suppress(OSError):
            shutil.copyfile(self.postgres.directory / "server.log", directory / "postgres.log")

    async def wait_http(self, url: str, within: float = 120) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code < 500:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} was not up after {within} s")
                await asyncio.sleep(0.2)

    # The broker and the database -----------------------------------------------------------

    async def broker_stop(self) -> None:
        await asyncio.to_thread(self.rabbit.stop_app, self.rabbit_node)

    async def broker_start(self) -> None:
        await asyncio.to_thread(self.rabbit.start_app, self.rabbit_node)

    async def database_stop(self) -> None:
        await asyncio.to_thread(self.postgres.stop, "fast")

    async def database_start(self) -> None:
        await asyncio.to_thread(self.postgres.start)

    # The network agents' DHCP host entries ---------------------------------------------------

    def dhcp_hosts(self) -> list[tuple[str, str, str]]:
        """(network id, port id, IP address) of each entry in the dnsmasq hosts directories
        the dhcp-agent keeps (``<data dir>/dhcp/<network id>/hosts/<port id>``, a
        ``<mac>,<ip>,<hostname>`` line per address)."""
        entries = []
        for path in sorted((self.data_dir / "dhcp").glob("*/hosts/*")):
            if path.name.startswith("."):  # a write under way
                continue
            with contextlib.suppress(OSError):
                for line in path.read_text().splitlines():
                    fields = line.split(",")
                    if len(fields) >= 2:
                        entries.append((path.parent.parent.name, path.name, fields[1]))
        return entries

    def _remove_network_leftovers(self) -> None:
        """What the agents may leave once SIGKILLed and then stopped: dnsmasq processes,
        ``qdhcp-`` namespaces, taps and veths on the networks' bridges, the bridges, and the
        firewall tables."""
        from stratus.network.agents import linux
        from stratus.network.agents.dhcp import dnsmasq
        from stratus.network.objects import bridge_name, dhcp_namespace, tap_name

        dhcp_dir = self.data_dir / "dhcp"
        networks = set(self.network_ids)
        if dhcp_dir.is_dir():
            networks |= {d.name for d in dhcp_dir.iterdir() if d.is_dir()}
        for network_id in sorted(networks):
            pid = dnsmasq._pid_of(dhcp_dir / network_id)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                linux.delete_namespace(dhcp_namespace(network_id))
            bridge = bridge_name(network_id)
            with contextlib.suppress(Exception):
                for link in linux.bridge_ports(bridge):
                    linux.delete_link(link.name)
                linux.delete_link(bridge)
        with contextlib.suppress(Exception):  # taps the l2-agent recorded, on a bridge or not
            recorded = json.loads((self.data_dir / "l2-agent.json").read_text())
            for port_id in recorded:
                linux.delete_link(tap_name(port_id))
        for family in ("bridge", "inet"):
            subprocess.run(["nft", "delete", "table", family, self.firewall_table],
                           capture_output=True, check=False)

    async def close(self) -> None:
        await stop_processes(self.processes.values())
        if self.network_agents:
            await asyncio.to_thread(self._remove_network_leftovers)
        await asyncio.gather(asyncio.to_thread(self.rabbit.close),
                             asyncio.to_thread(self.postgres.close))
