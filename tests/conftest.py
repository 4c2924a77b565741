"""Fixtures shared by every test: real database backends and an in-memory span exporter.

Backends are real: a database test runs once on SQLite and once on the machine's PostgreSQL.
When PostgreSQL cannot be reached the PostgreSQL variant is skipped locally, but under
``CI=true`` it fails, and so does any other skip: in CI nothing may silently not run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import NoReturn

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.engine import URL, make_url

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

# Unset, the driver is chosen by what the machine has (libvirt here): tests run the fake
# driver unless they ask for libvirt, so what they exercise does not depend on the machine.
os.environ.setdefault("STRATUS_COMPUTE__VIRT_DRIVER", "fake")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def backend_unavailable(reason: str) -> NoReturn:
    """Skip the current test, or fail it when running in CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: real-backend tests may not be skipped)", pytrace=False)
    pytest.skip(reason)


# Session hooks ----------------------------------------------------------------------------


def _skipped_reports(config: pytest.Config) -> list[pytest.TestReport]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return []
    return list(reporter.stats.get("skipped", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if in_ci() and _skipped_reports(session.config) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    skipped = _skipped_reports(config)
    if in_ci() and skipped:
        terminalreporter.section("skipped tests are failures in CI", sep="=", red=True)
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            terminalreporter.line(f"SKIPPED {report.nodeid}: {reason}", red=True)


# Databases --------------------------------------------------------------------------------


def _asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(params=[
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """SQLAlchemy URL of a fresh, empty database: a SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return

    import asyncpg

    base = make_url(os.environ.get("STRATUS_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    name = f"stratus_test_{uuid.uuid4().hex[:16]}"
    unreachable: str | None = None
    try:
        admin = await asyncpg.connect(_asyncpg_dsn(base), timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        unreachable = f"PostgreSQL at {base.render_as_string()} is unreachable: {exc!r}"
    if unreachable is not None:
        backend_unavailable(unreachable)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(_asyncpg_dsn(base), timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# Tracing ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _session_span_exporter() -> InMemorySpanExporter:
    from stratus.core.tracing import add_span_processor

    exporter = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def span_exporter(_session_span_exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    """The in-memory exporter every finished span reaches; empty at the start of each test."""
    _session_span_exporter.clear()
    yield _session_span_exporter
    _session_span_exporter.clear()


# Message bus ------------------------------------------------------------------------------

DEFAULT_RABBIT_URL = "rabbit://guest:guest@127.0.0.1:5672/"


async def rabbitmqctl(*args: str) -> str:
    """Run the local ``rabbitmqctl``; its output, or an AssertionError saying why it failed."""
    import asyncio

    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, (
        f"rabbitmqctl {' '.join(args)} failed ({process.returncode}): {err.decode()[-500:]}")
    return out.decode()


class _VhostPool:
    """Virtual hosts for tests, made and deleted in batches of eight with one ``rabbitmqctl
    eval`` each (``rabbitmqctl`` starts a VM per call, ~0.4 s): plain ``add_vhost`` and
    ``delete_vhost`` calls are the fallback when ``eval`` fails (another RabbitMQ version)."""

    BATCH = 8
    ACTOR = '<<"stratus-tests">>'

    def __init__(self, user: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.user = user
        self._free: list[str] = []
        self._used: list[str] = []
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="vhosts")
        self._deleting: list[Future[None]] = []

    @staticmethod
    def _ctl(*args: str, retries: int = 60) -> str:
        import subprocess
        import time

        for attempt in range(retries):  # the broker may be restarting (a broker-loss test)
            done = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True,
                                  timeout=120, check=False)
            if done.returncode == 0:
                return done.stdout
            if attempt + 1 < retries:
                time.sleep(0.5)
        raise RuntimeError(f"rabbitmqctl {args[0]}: {done.stderr[-500:]}")

    def _make_batch(self) -> list[str]:
        names = [f"stratus-test-{uuid.uuid4().hex[:12]}" for _ in range(self.BATCH)]
        binaries = ", ".join(f'<<"{name}">>' for name in names)
        code = (f"[begin ok = rabbit_vhost:add(V, {self.ACTOR}), "
                f"ok = rabbit_auth_backend_internal:set_permissions(<<\"{self.user}\">>, V, "
                f'<<".*">>, <<".*">>, <<".*">>, {self.ACTOR}) end || V <- [{binaries}]].')
        try:
            if self._ctl("eval", code, retries=3).split() == ["[" + ",".join(["ok"] * len(names))
                                                              + "]"]:
                return names
        except RuntimeError:
            pass
        names = [f"stratus-test-{uuid.uuid4().hex[:12]}" for _ in range(2)]
        for name in names:
            self._ctl("add_vhost", name)
            self._ctl("set_permissions", "-p", name, self.user, ".*", ".*", ".*")
        return names

    def _delete_batch(self, names: list[str]) -> None:
        if not names:
            return
        binaries = ", ".join(f'<<"{name}">>' for name in names)
        try:
            self._ctl("eval", f"[rabbit_vhost:delete(V, {self.ACTOR}) || V <- [{binaries}]].",
                      retries=3)
            return
        except RuntimeError:
            pass
        for name in names:
            self._ctl("delete_vhost", name, retries=3)

    async def take(self) -> str:
        import asyncio

        if not self._free:
            self._free = await asyncio.to_thread(self._make_batch)
        return self._free.pop()

    def give_back(self, name: str) -> None:
        self._used.append(name)
        if len(self._used) >= self.BATCH:
            batch, self._used = self._used, []
            self._deleting.append(self._executor.submit(self._delete_batch, batch))

    def close(self) -> None:
        for future in self._deleting:
            future.exception()
        self._delete_batch(self._used + self._free)
        self._executor.shutdown(wait=True)


@pytest.fixture(scope="session")
def _rabbit_vhosts() -> Iterator[dict[str, _VhostPool]]:
    pools: dict[str, _VhostPool] = {}
    yield pools
    for pool in pools.values():
        pool.close()


@pytest.fixture
async def rabbit_url(_rabbit_vhosts: dict[str, _VhostPool]) -> AsyncIterator[str]:
    """URL of a fresh virtual host on the machine's RabbitMQ (deleted afterwards).

    ``STRATUS_TEST_RABBIT_URL`` names the server (default guest@127.0.0.1:5672); virtual hosts
    are made with the local ``rabbitmqctl``. Unreachable: skipped locally, failed in CI.
    """
    import asyncio
    import shutil

    from stratus.core.bus.url import TransportURL

    parsed = TransportURL.parse(os.environ.get("STRATUS_TEST_RABBIT_URL", DEFAULT_RABBIT_URL))
    host = parsed.hosts[0]
    unreachable: str | None = None
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host.host, host.port), 5)
        writer.close()
    except (OSError, TimeoutError) as exc:
        unreachable = f"RabbitMQ at {parsed} is unreachable: {exc!r}"
    if unreachable is None and shutil.which("rabbitmqctl") is None:
        unreachable = "rabbitmqctl is not installed (needed to make a virtual host per test)"
    if unreachable is not None:
        backend_unavailable(unreachable)
    user = host.username or "guest"
    pool = _rabbit_vhosts.setdefault(user, _VhostPool(user))
    vhost = await pool.take()
    try:
        yield f"rabbit://{user}:{host.password or 'guest'}@{host.host}:{host.port}/{vhost}"
    finally:
        pool.give_back(vhost)


@pytest.fixture(params=[
    pytest.param("memory", id="memory"),
    pytest.param("rabbit", id="rabbit", marks=pytest.mark.rabbitmq),
])
def bus_url(request: pytest.FixtureRequest) -> str:
    """URL of a fresh, empty bus: a uniquely named in-process broker, or a new virtual host
    on the machine's RabbitMQ (see ``rabbit_url``)."""
    if request.param == "memory":
        return f"memory://test-{uuid.uuid4().hex[:12]}"
    url: str = request.getfixturevalue("rabbit_url")
    return url
