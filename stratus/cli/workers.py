"""``stratus serve --workers N``: N processes of the same API units behind one port.

Each worker is a ``stratus serve`` of its own that listens on the port with SO_REUSEPORT,
so the kernel spreads new connections evenly over the workers' accept queues. (One socket
shared by all would let whichever worker woke first take a burst of connections: asyncio
accepts up to its backlog per wake-up, and a client's keep-alive connections, opened at
once, would mostly land on one worker.) The parent serves nothing: it keeps a bound,
non-listening SO_REUSEPORT socket on the port for as long as the pool runs, so no other
program takes the port while a worker restarts; it restarts a worker that dies, stops them
all on SIGTERM or SIGINT, and gives up when workers keep dying soon after they start.
A worker killed with the parent (SIGKILL of the parent alone) is stopped by the kernel
(``PR_SET_PDEATHSIG``), so no orphan keeps serving the port.

What the workers share goes through the database and the bus (see the README's "Several
API processes on one port"); what each keeps in memory is either a cache that may be
stale only as long as it says (token caches are emptied on revocation over the bus) or
its own (``/metrics``, in-flight requests).
"""

from __future__ import annotations

import ctypes
import logging
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stratus.core.config import Settings

LOG = logging.getLogger(__name__)

#: A worker that ends sooner than this after its start counts as failing to start.
QUICK_EXIT_S = 10.0
#: Failed starts in a row after which the pool gives up.
MAX_QUICK_EXITS = 5
#: How long stopping waits for workers to finish their requests before killing them.
STOP_TIMEOUT_S = 30.0

_PR_SET_PDEATHSIG = 1


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` with SO_REUSEPORT (not yet listening): every
    worker's, and the parent's reservation. ``OSError`` when the port is taken by a
    program that does not share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def pool_refusal(settings: Settings, names: list[str]) -> str | None:
    """Why these units cannot run as a pool with these settings; None: they can."""
    from stratus.units import UNITS

    if not any(UNITS[name].prefix is not None for name in names):
        return ("only API units share a port; run more processes of bus-only units (they "
                "share their queues) instead")
    if settings.port == 0:
        return "the workers share one port: give it (--port or STRATUS_PORT)"
    if not settings.bus_shared:
        return ("the workers share state over the bus: set STRATUS_BUS_URL to RabbitMQ "
                "(rabbit://...), not the in-process memory:// bus")
    for name in names:
        service = UNITS[name].build.__module__.split(".")[1]
        if service in _DATABASES:
            url = settings.database_url_for(service, getattr(settings, service).database_url)
            if url.startswith("sqlite"):
                return (f"{name}'s database is SQLite, which one process owns: set "
                        "STRATUS_DATABASE_URL to PostgreSQL")
    if "dashboard" in names and settings.dashboard.session_store == "memory":
        return ("the dashboard's sessions are in one process's memory: set "
                "STRATUS_DASHBOARD__SESSION_STORE=memcached")
    return None


_DATABASES = ("identity", "image", "compute", "network", "volume")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    started: float


class Pool:
    """The parent of ``count`` workers; ``command(index)`` is a worker's command line."""

    def __init__(self, command: Callable[[int], list[str]], count: int, *,
                 say: Callable[[str], None]) -> None:
        self.command = command
        self.count = count
        self.say = say
        self.workers: dict[int, _Worker] = {}
        self._stopping = False
        self._quick_exits = 0

    def request_stop(self, *_: object) -> None:
        self._stopping = True

    def _start(self, index: int) -> None:
        process = subprocess.Popen(self.command(index), preexec_fn=_die_with_parent)
        self.workers[index] = _Worker(index, process, time.monotonic())
        self.say(f"worker {index}: pid {process.pid}")

    def run(self, host: str, port: int) -> int:
        """Serve until signalled (0) or until workers keep failing to start (1)."""
        reservation = reuse_port_socket(host, port)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.request_stop)
        try:
            for index in range(1, self.count + 1):
                self._start(index)
            return self._supervise()
        finally:
            self._stop_all()
            reservation.close()

    def _supervise(self) -> int:
        while not self._stopping:
            time.sleep(0.2)
            for worker in list(self.workers.values()):
                code = worker.process.poll()
                if code is None or self._stopping:
                    continue
                ran = time.monotonic() - worker.started
                self._quick_exits = self._quick_exits + 1 if ran < QUICK_EXIT_S else 0
                if self._quick_exits >= MAX_QUICK_EXITS:
                    self.say(f"worker {worker.index} (pid {worker.process.pid}) exited "
                             f"({code}) {self._quick_exits} times in a row soon after "
                             "starting: stopping the pool")
                    return 1
                self.say(f"worker {worker.index} (pid {worker.process.pid}) exited ({code}) "
                         f"after {ran:.0f} s: starting it again")
                time.sleep(0.5 * self._quick_exits)
                self._start(worker.index)
        return 0

    def _stop_all(self) -> None:
        # The workers may have had the signal too (one process group): a second SIGTERM
        # only asks again, it does not cut open requests short.
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for worker in self.workers.values():
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
