"""Split-mode plumbing shared by the e2e tests: the ``stratus serve <units>`` process of
network agents of their own, and (from the network agents' conftest) the network server
they report to (``ServerDouble`` behind a real ``RPCServer`` on ``network``); a ``Fleet`` of
bus-only processes with their ``/metrics``; the admin's login."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from stratus.network.agents import linux
from tests.e2e.cloud import BIN, free_port
from tests.integration.network_agents.conftest import network_server

__all__ = ["AgentProcess", "Fleet", "exposition_value", "login", "network_server"]


@dataclass
class AgentProcess:
    """``stratus serve <units...>`` in a session of its own, its output in ``log``."""

    units: tuple[str, ...]
    data_dir: Path
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    #: The network namespace the process runs in (a host of its own); None: this one.
    namespace: str | None = None
    #: Where the current process's output begins in ``log`` (earlier runs' output precedes).
    _since: int = field(default=0, init=False)

    def start(self) -> None:
        self._since = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log, (linux.preexec_in(self.namespace) if self.namespace
                                          else contextlib.nullcontext(None)) as enter:
            self.process = subprocess.Popen(
                [str(BIN / "stratus"), "serve", *self.units, "--data-dir", str(self.data_dir)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
                preexec_fn=enter)

    def serving(self) -> bool:
        """Whether the current process printed that it serves (its signal handlers are set;
        a process killed early may never have printed it)."""
        try:
            with self.log.open("rb") as log:
                log.seek(self._since)
                return b"serving on the bus" in log.read()
        except FileNotFoundError:
            return False

    def signal(self, signum: int) -> int:
        """Send ``signum`` to the process group (unless it ended); its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signum)
        return self.process.wait(30)


class Fleet:
    """The bus-only processes, killed at the end whatever happens."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        #: Each process's ``/metrics`` port.
        self.metrics_ports: dict[str, int] = {}

    def start(self, name: str, *units: str, **env: str) -> None:
        log = (self.data_dir.parent / f"{name}.log").open("ab")
        self.metrics_ports[name] = free_port()
        self.processes[name] = subprocess.Popen(
            [str(BIN / "stratus"), "serve", *units, "--data-dir", str(self.data_dir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**self.env, **env, "STRATUS_METRICS__PORT": str(self.metrics_ports[name])})

    async def metric(self, prefix: str, name: str, **labels: str) -> float:
        """The sum of metric ``name`` (with ``labels``) over the processes named
        ``prefix-*``, each scraped at its own ``/metrics``."""
        total = 0.0
        async with httpx.AsyncClient(timeout=10) as client:
            for process, port in self.metrics_ports.items():
                if process.startswith(f"{prefix}-") and process in self.processes:
                    response = await client.get(f"http://127.0.0.1:{port}/metrics")
                    assert response.status_code == 200, response.text
                    total += exposition_value(response.text, name, **labels)
        return total

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def alive(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is None]


def exposition_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` with ``labels``, read with prometheus-client's parser."""
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == name
               and all(sample.labels.get(k) == v for k, v in labels.items()))


async def login(client: httpx.AsyncClient, password: str) -> str:
    """An admin token (scoped to the admin project) from the identity API at ``client``."""
    response = await client.post("/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]
