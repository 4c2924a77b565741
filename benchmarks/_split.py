"""Split mode for benchmarks: every unit its own ``stratus serve`` process.

``SplitCloud`` makes a fresh RabbitMQ virtual host (with the local ``rabbitmqctl``) and a fresh
PostgreSQL database (``scratch_database``), runs ``stratus db upgrade`` and ``stratus bootstrap``
on them, then starts the API processes (the API units given; ``api_processes`` of them on
one port, ``stratus serve --workers``) and the bus-only processes
(schedulers, conductors, compute agents), each in its own process group with its output in a
log file. Leaving the context terminates every process, then deletes the virtual host and
drops the database, also on error or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks._cloud import free_port, scratch_database, stratus_command
from benchmarks._cpu import process_cpu_seconds
from stratus.core import spanstore

API_UNITS = ("identity-api", "image-api", "compute-api")


@dataclass(frozen=True)
class Worker:
    """One bus-only process: its name (log file), its units and its own environment."""

    name: str
    units: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``STRATUS_*``/``OS_*``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRATUS_", "OS_"))
           and k != "PYTHONDONTWRITEBYTECODE"}  # from bytecode, as _cloud.StratusUp
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


async def stop_processes(processes: Iterable[subprocess.Popen[bytes]],
                         grace: float = 20) -> None:
    """SIGTERM to each process's group, then SIGKILL to those still running after
    ``grace`` seconds (in all)."""
    stopping = list(processes)
    for process in stopping:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in stopping:
        try:
            await asyncio.to_thread(process.wait, max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)


async def rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    if process.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {args[0]} failed ({process.returncode}): "
                           f"{err.decode(errors='replace')[-500:]}")
    return out.decode(errors="replace")


@contextlib.asynccontextmanager
async def scratch_vhost(server_url: str, existing: str | None = None) -> AsyncIterator[str]:
    """A bus URL on a new virtual host of ``server_url``'s broker, deleted afterwards
    (``existing``: on that virtual host instead, neither made nor deleted).

    The virtual host is made with the local ``rabbitmqctl``, so the broker must be this
    machine's; the URL's user gets full permissions on it.
    """
    from stratus.core.bus.url import TransportURL

    parsed = TransportURL.parse(server_url)
    if parsed.transport != "rabbit":
        raise ValueError("split mode needs a RabbitMQ bus URL (rabbit:// or amqp://)")
    host = parsed.hosts[0]
    user = host.username or "guest"
    if existing is not None:
        yield f"rabbit://{user}:{host.password or 'guest'}@{host.host}:{host.port}/{existing}"
        return
    name = f"stratus-bench-{uuid.uuid4().hex[:12]}"
    await rabbitmqctl("add_vhost", name)
    try:
        await rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        yield f"rabbit://{user}:{host.password or 'guest'}@{host.host}:{host.port}/{name}"
    finally:
        await _delete_vhost(name)


async def _delete_vhost(name: str, within: float = 120) -> None:
    """Delete the virtual host, retrying while the broker is (re)starting: other work on the
    machine may restart it. Still failing, say so on stderr rather than lose the run."""
    deadline = time.monotonic() + within
    while True:
        try:
            await rabbitmqctl("delete_vhost", name)
            return
        except RuntimeError as exc:
            if time.monotonic() > deadline:
                print(f"could not delete RabbitMQ virtual host {name!r}; delete it with "
                      f"`rabbitmqctl delete_vhost {name}`: {exc}", file=sys.stderr, flush=True)
                return
        await asyncio.sleep(2)


#: The broker's global counters (``rabbit_global_counters``, RabbitMQ 3.9+) that are not 0,
#: one ``<labels> <counter> <value>`` line each (labels: protocol, then queue type).
_COUNTERS_EVAL = (
    'lists:flatten([io_lib:format("~s ~s ~b~n", [string:join([atom_to_list(V) || {_, V} <- '
    'Ls], "."), K, N]) || {Ls, C} <- maps:to_list(rabbit_global_counters:overview()), '
    '{K, N} <- maps:to_list(C), N =/= 0]).')


class BrokerProbe:
    """The local RabbitMQ node as a run sees it: its CPU time so far (``beam.smp``, every
    scheduler thread: the broker's work for every connection, ours and other users') and its
    message counters (published, routed, confirmed; delivered and acknowledged by queue
    type). Both are the node's, not the virtual host's: other traffic on a shared broker
    counts too (read the idle figures beside them)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    @classmethod
    def find(cls, port: int) -> BrokerProbe | None:
        """The probe of this machine's RabbitMQ node listening on ``port``; None when none
        runs here (or it is not readable)."""
        import psutil

        for process in psutil.process_iter(["name"]):
            if process.info["name"] != "beam.smp":
                continue
            try:
                listening = any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                                for c in process.net_connections(kind="tcp"))
                if listening:
                    process_cpu_seconds(process.pid)
                    return cls(process.pid)
            except (psutil.Error, ProcessLookupError):
                continue
        return None

    def cpu(self) -> float:
        """Seconds of CPU the node has used so far (nan once it is gone: restarted)."""
        try:
            return process_cpu_seconds(self.pid)
        except ProcessLookupError:
            return float("nan")

    async def counters(self) -> dict[str, int]:
        """``{"<labels>.<counter>": value}`` of the node's global counters; {} when
        ``rabbitmqctl`` cannot read them."""
        try:
            out = await rabbitmqctl("eval", _COUNTERS_EVAL)
        except (RuntimeError, OSError, TimeoutError):
            return {}
        found: dict[str, int] = {}
        for line in out.strip().strip('"').split("\\n"):
            parts = line.split()
            if len(parts) == 3 and parts[2].lstrip("-").isdigit():
                found[f"{parts[0]}.{parts[1]}"] = int(parts[2])
        return found


class DatabaseProbe:
    """The PostgreSQL backends serving one database, as a run sees them: their CPU time so
    far (each backend's POSIX CPU clock, read as root or as the server's user) and the
    database's transactions committed (``pg_stat_database.xact_commit``; the statistics
    collector reports them within ~0.5 s, so read after the cloud is idle). A backend that
    exits within a window loses its CPU from it; the cloud's pooled connections outlive
    the windows. The probe's own connection is left out of the CPU."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.conn: Any = None

    async def __aenter__(self) -> DatabaseProbe:
        import asyncpg

        from benchmarks._cloud import asyncpg_dsn

        self.conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def read(self) -> tuple[float, int]:
        """(CPU seconds of the database's backends, its commits so far)."""
        cpu = 0.0
        for row in await self.conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                cpu += process_cpu_seconds(row["pid"])
        await asyncio.sleep(1.0)  # the collector's report of the last commits
        await self.conn.execute("SELECT pg_stat_clear_snapshot()")
        commits = await self.conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        return cpu, int(commits or 0)


def log_tail(work_dir: Path, name: str, lines: int = 30) -> str:
    """The last ``lines`` lines of process ``name``'s log in ``work_dir`` ("" if none)."""
    try:
        text = (work_dir / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def copy_logs(work_dir: Path, names: Iterable[str], directory: Path) -> None:
    """Copy each named process's log so far from ``work_dir`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        with contextlib.suppress(OSError):
            shutil.copyfile(work_dir / f"{name}.log", directory / f"{name}.log")


def copy_span_store(data_dir: Path, directory: Path) -> None:
    """A consistent copy of ``data_dir``'s span store into ``directory`` (SQLite's backup:
    the processes may still be writing to it), if there is one."""
    source = data_dir / spanstore.FILE_NAME
    if not source.exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(source, timeout=30)) as reader, \
            contextlib.closing(sqlite3.connect(directory / spanstore.FILE_NAME)) as writer:
        reader.backup(writer)


class SplitCloud:
    """The API units in one process on a free port, ``workers`` each in their own process."""

    def __init__(self, work_dir: Path, workers: list[Worker], *, rabbit_url: str,
                 database_url: str, api_units: tuple[str, ...] = API_UNITS,
                 env: dict[str, str] | None = None, api_processes: int = 1,
                 vhost: str | None = None) -> None:
        self.work_dir = work_dir
        #: An existing virtual host to run on (None: a fresh one, deleted afterwards).
        self.vhost = vhost
        self.data_dir = work_dir / "data"
        self.workers = workers
        self.rabbit_url = rabbit_url
        self.server_database_url = database_url
        self.api_units = api_units
        #: API processes on the one port (``stratus serve --workers``); their CPU is the
        #: ``api`` process's and its children's.
        self.api_processes = api_processes
        self.extra_env = env or {}
        self.port = free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stack = contextlib.AsyncExitStack()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def identity_url(self) -> str:
        return f"{self.base_url}/identity/v3"

    def admin_password(self) -> str:
        return (self.data_dir / "admin-password").read_text().strip()

    def log_tail(self, name: str, lines: int = 30) -> str:
        return log_tail(self.work_dir, name, lines)

    def copy_logs(self, directory: Path) -> None:
        """Copy every process's log so far into ``directory`` (``<name>.log``), and the
        span store the processes share (``traces.db``: ``stratus trace --data-dir
        DIRECTORY``, or SQL over its ``spans``, shows where each boot waited)."""
        copy_logs(self.work_dir, self.processes, directory)
        copy_span_store(self.data_dir, directory)

    async def __aenter__(self) -> SplitCloud:
        try:
            bus_url = await self._stack.enter_async_context(scratch_vhost(self.rabbit_url,
                                                                             self.vhost))
            db_url = await self._stack.enter_async_context(
                scratch_database(self.server_database_url))
            assert db_url is not None
            self._stack.push_async_callback(self._stop_all)
            self.env = clean_env(**{"STRATUS_CONFIG_FILE": "/nonexistent", **self.extra_env,
                                    "STRATUS_BUS_URL": bus_url,
                                    "STRATUS_DATABASE_URL": db_url})
            self.data_dir.mkdir(parents=True, exist_ok=True)
            for command in (["db", "upgrade"], ["bootstrap", "--port", str(self.port)]):
                done = await asyncio.to_thread(
                    subprocess.run, [*stratus_command(), *command, "--data-dir",
                                     str(self.data_dir)],
                    env=self.env, capture_output=True, timeout=300, check=False)
                if done.returncode != 0:
                    raise RuntimeError(f"stratus {' '.join(command)} failed:\n"
                                       f"{done.stdout.decode(errors='replace')[-2000:]}"
                                       f"{done.stderr.decode(errors='replace')[-2000:]}")
            self._start("api", self.api_units, {}, port=self.port,
                        extra=["--workers", str(self.api_processes)]
                        if self.api_processes > 1 else [])
            for worker in self.workers:
                self._start(worker.name, worker.units, worker.env)
            await self._wait_api()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def _start(self, name: str, units: tuple[str, ...], env: dict[str, str],
               port: int | None = None, extra: list[str] | None = None) -> None:
        command = [*stratus_command(), "serve", *units, "--data-dir", str(self.data_dir),
                   *(extra or [])]
        if port is not None:
            command += ["--host", "127.0.0.1", "--port", str(port)]
        with (self.work_dir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**self.env, **env}, start_new_session=True)

    def dead(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is not None]

    async def _wait_api(self, within: float = 120) -> None:
        """Until identity answers, from every API process (each connection a new one: the
        kernel picks the process per connection)."""
        deadline = time.monotonic() + within
        answered: set[str] = set()
        while True:
            if dead := self.dead():
                raise RuntimeError(f"{dead[0]} exited early:\n{self.log_tail(dead[0])}")
            with contextlib.suppress(httpx.HTTPError):
                async with httpx.AsyncClient(timeout=2) as client:
                    response = await client.get(self.identity_url)
                if response.status_code == 200:
                    answered.add(response.headers.get("X-Stratus-Worker", "/").split("/")[0])
                    if len(answered) >= self.api_processes:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API was not up after {within} s:\n"
                                   f"{self.log_tail('api')}")
            await asyncio.sleep(0.1)

    async def _stop_all(self) -> None:
        await stop_processes(self.processes.values())
        self.processes.clear()
