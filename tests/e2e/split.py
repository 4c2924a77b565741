"""Split-mode plumbing shared by the e2e tests that run network agents as a process of
their own: the ``stratus serve <units>`` process, and (from the network agents' conftest)
the network server they report to (``ServerDouble`` behind a real ``RPCServer`` on
``network``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from stratus.network.agents import linux
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
