"""A private PostgreSQL server on this machine, for tests and benchmarks that restart it.

``initdb`` makes a cluster in a directory of its own (owned by the ``postgres`` user, as
the server refuses to run as root), and ``pg_ctl`` runs it on a free port of 127.0.0.1 with
its socket in that directory and trust authentication. The machine's own PostgreSQL (5432)
is never touched: every ``pg_ctl`` here names our data directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks._cloud import free_port


def _bin_dir() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    return versions[-1].parent if versions else None


def available() -> str | None:
    """Why a private PostgreSQL cannot run here, or None."""
    if _bin_dir() is None:
        return "PostgreSQL's server binaries (/usr/lib/postgresql/*/bin) are not installed"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "there is no postgres user to run the server as"
    if os.geteuid() != 0:
        return "starting a server as the postgres user needs root"
    return None


class PrivatePostgres:
    """One PostgreSQL server of our own; ``url`` is its ``postgres`` database."""

    def __init__(self, *, max_connections: int = 400) -> None:
        bin_dir = _bin_dir()
        assert bin_dir is not None, available()
        self.bin = bin_dir
        # A directory of its own in /tmp: the postgres user cannot reach into a root-only
        # temporary directory of the caller's.
        self.directory = Path(tempfile.mkdtemp(prefix="stratus-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.max_connections = max_connections
        self._user = pwd.getpwnam("postgres")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, timeout: float = 120) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *command], capture_output=True, text=True,
            timeout=timeout, check=False, cwd=self.directory,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("PG")},
                 "LC_ALL": "C.UTF-8"})
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout)[-800:]}")

    def start(self) -> None:
        os.chown(self.directory, self._user.pw_uid, self._user.pw_gid)
        self.directory.chmod(0o700)
        if not self.data.exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
                      "-U", "postgres", "--no-sync", "-E", "UTF8")
        self._pg_ctl("start")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                   f"-c max_connections={self.max_connections} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run(str(self.bin / "pg_ctl"), action, "-D", str(self.data), "-w", "-t", "120",
                  "-l", str(self.directory / "server.log"), "-o", options, *extra)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` ends every session (clients see their connections
        closed), ``immediate`` is a crash (recovery on the next start)."""
        self._run(str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-w", "-t", "120",
                  "-m", mode)

    def close(self) -> None:
        """Stop the server, whatever its state, and remove its files."""
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.directory, ignore_errors=True)
