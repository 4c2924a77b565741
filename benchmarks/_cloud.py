"""A real ``stratus up`` in a subprocess, and what scenarios need to talk to it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

READY_LINE = "Stratus is up"
RESERVED_PORTS = frozenset({18080})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


def stratus_command() -> list[str]:
    """The ``stratus`` script of this interpreter's environment (what ``make up`` runs)."""
    script = Path(sys.executable).parent / "stratus"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from stratus.cli.main import main; main()"]


def password_auth(password: str, *, user: str = "admin", project: str = "admin",
                  domain: str = "Default") -> dict[str, Any]:
    """A ``POST /v3/auth/tokens`` body: password method, project scope."""
    return {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": domain}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": domain}}},
    }}


class StratusUp:
    """``stratus up --data-dir DIR --port N`` in its own process group.

    ``started_at`` is taken just before the process is launched and ``ready_at`` when it
    prints "Stratus is up" (both ``time.perf_counter()``). Output is drained continuously and
    its tail kept for error messages. ``stop()`` terminates the whole group; use it in
    ``finally`` or use the object as an async context manager. ``env`` is added to the
    process's environment (after ``STRATUS_*`` settings of this one).
    """

    def __init__(self, data_dir: Path, *, port: int | None = None, bcrypt_rounds: int = 12,
                 database_url: str | None = None, env: dict[str, str] | None = None,
                 command: list[str] | None = None) -> None:
        self.data_dir = data_dir
        #: What runs ``stratus`` (its arguments follow); default the venv's script.
        self.command = command
        self.extra_env = env or {}
        self.port = port or free_port()
        self.bcrypt_rounds = bcrypt_rounds
        self.database_url = database_url
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.ready_at: float | None = None
        self.tail: deque[str] = deque(maxlen=40)
        self._ready = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def identity_url(self) -> str:
        return f"{self.base_url}/identity/v3"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def admin_password(self) -> str | None:
        """The generated admin password, once ``stratus up`` has written it."""
        try:
            return (self.data_dir / "admin-password").read_text().strip() or None
        except OSError:
            return None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("STRATUS_ADMIN_PASSWORD", "STRATUS_DATA_DIR", "STRATUS_PORT",
                            "STRATUS_HOST", "STRATUS_PUBLIC_URL", "STRATUS_DATABASE_URL")}
        env["STRATUS_IDENTITY__BCRYPT_ROUNDS"] = str(self.bcrypt_rounds)
        env["PYTHONUNBUFFERED"] = "1"
        # As an installed cloud runs: from bytecode (compiled once), not compiling its
        # modules on every start where the environment forbids writing bytecode.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if self.database_url:
            env["STRATUS_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        return env

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [*(self.command or stratus_command()), "up", "--data-dir", str(self.data_dir),
                   "--host", "127.0.0.1", "--port", str(self.port)]
        self.started_at = time.perf_counter()
        self.process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self._env(), start_new_session=True)
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [asyncio.create_task(self._drain(self.process.stdout)),
                         asyncio.create_task(self._drain(self.process.stderr))]

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            self.tail.append(text)
            if self.ready_at is None and READY_LINE in text:
                self.ready_at = time.perf_counter()
                self._ready.set()

    def failure(self, what: str) -> RuntimeError:
        output = "\n".join(self.tail)
        log_file = self.data_dir / "stratus.log"  # stratus up logs there, not the console
        if log_file.exists():
            output += "\n" + "\n".join(log_file.read_text(errors="replace").splitlines()[-40:])
        return RuntimeError(f"stratus up {what}; last output:\n{output}")

    async def wait_ready(self, within: float = 120) -> float:
        """Seconds from launch to "Stratus is up"; an error if not up ``within`` seconds."""
        assert self.process is not None, "not started"
        exited = asyncio.create_task(self.process.wait())
        ready = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait({exited, ready}, timeout=within,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (exited, ready):
                task.cancel()
        if self.ready_at is None:
            if self.process.returncode is not None:
                raise self.failure(f"exited with status {self.process.returncode}")
            raise self.failure(f"was not up after {within} s")
        return self.ready_at - self.started_at

    async def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self._readers = []

    async def __aenter__(self) -> StratusUp:
        try:
            await self.start()
            await self.wait_ready()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def issue_token(client: httpx.AsyncClient, identity_url: str, password: str) -> str:
    response = await client.post(f"{identity_url}/auth/tokens", json=password_auth(password))
    if response.status_code != 201:
        raise RuntimeError(f"token issue answered {response.status_code}: {response.text[:300]}")
    return response.headers["X-Subject-Token"]


def process_rss_bytes(pid: int) -> int:
    """Resident set size of a process and all its descendants."""
    import psutil

    root = psutil.Process(pid)
    total = root.memory_info().rss
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) a process has used so far, with its children's: those
    it has reaped and those still running. On a loaded machine the wall clock says more of
    the other processes than of this one; the CPU says how much work the start was."""
    import psutil

    root = psutil.Process(pid)
    times = root.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            child_times = child.cpu_times()
            total += child_times.user + child_times.system
    return total


# Databases ---------------------------------------------------------------------------------


def asyncpg_dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def scratch_database(server_url: str | None) -> AsyncIterator[str | None]:
    """``None`` stays ``None`` (each data dir gets its own SQLite file); a PostgreSQL URL
    yields the URL of a new, empty database on that server, dropped afterwards."""
    if not server_url:
        yield None
        return
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError("--database-url must be a PostgreSQL URL (SQLite is the default)")
    import asyncpg

    name = f"stratus_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(server_url), timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(asyncpg_dsn(server_url), timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def sqlite_info(sqlite_file: Path | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"database": "sqlite", "driver": "aiosqlite",
                            "sqlite_version": sqlite3.sqlite_version}
    if sqlite_file is not None and sqlite_file.exists():
        with contextlib.closing(sqlite3.connect(sqlite_file)) as conn:
            info["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
    return info


async def database_info(database_url: str | None,
                        sqlite_file: Path | None = None) -> dict[str, Any]:
    """The database backend a run used, with its version."""
    if not database_url:
        return sqlite_info(sqlite_file)
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    return {"database": "postgresql", "driver": "asyncpg", "server_version": version}
