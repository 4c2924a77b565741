"""Fixtures shared by every test: real database backends and an in-memory span exporter.

Backends are real: a database test runs once on SQLite and once on the machine's PostgreSQL.
When PostgreSQL cannot be reached the PostgreSQL variant is skipped locally, but under
``CI=true`` it fails, and so does any other skip: in CI nothing may silently not run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.engine import URL, make_url

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


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


@pytest.fixture(params=[
    pytest.param("memory", id="memory"),
    pytest.param("rabbit", id="rabbit", marks=pytest.mark.rabbitmq),
])
async def bus_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """URL of a fresh, empty bus: a uniquely named in-process broker, or a new virtual host
    on the machine's RabbitMQ (made and deleted with the local ``rabbitmqctl``)."""
    if request.param == "memory":
        yield f"memory://test-{uuid.uuid4().hex[:12]}"
        return

    import asyncio
    import shutil

    from stratus.core.bus.url import TransportURL

    base = os.environ.get("STRATUS_TEST_RABBIT_URL", DEFAULT_RABBIT_URL)
    parsed = TransportURL.parse(base)
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
    vhost = f"stratus-test-{uuid.uuid4().hex[:12]}"
    await rabbitmqctl("add_vhost", vhost)
    try:
        await rabbitmqctl("set_permissions", "-p", vhost, host.username or "guest",
                          ".*", ".*", ".*")
        credentials = f"{host.username or 'guest'}:{host.password or 'guest'}"
        yield f"rabbit://{credentials}@{host.host}:{host.port}/{vhost}"
    finally:
        await rabbitmqctl("delete_vhost", vhost)
