"""Split-mode plumbing shared by the e2e tests that run network agents as a process of
their own: the ``stratus serve <units>`` process, and (from the network agents' conftest)
the network server they report to (``ServerDouble`` behind a real ``RPCServer`` on
``network``)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.cloud import BIN
from tests.integration.network_agents.conftest import network_server

__all__ = ["AgentProcess", "network_server"]


@dataclass
class AgentProcess:
    """``stratus serve <units...>`` in a session of its own, its output in ``log``."""

    units: tuple[str, ...]
    data_dir: Path
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "stratus"), "serve", *self.units, "--data-dir", str(self.data_dir)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)

    def serving(self) -> int:
        """How many times a process printed that it serves (its signal handlers are set)."""
        try:
            return self.log.read_text(errors="replace").count("serving on the bus")
        except FileNotFoundError:
            return 0

    def signal(self, signum: int) -> int:
        """Send ``signum`` to the process group (unless it ended); its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signum)
        return self.process.wait(30)
