"""Fixtures shared by every test: real database backends and an in-memory span exporter.

Backends are real: a database test runs once on SQLite and once on the machine's PostgreSQL.
When PostgreSQL cannot be reached the PostgreSQL variant is skipped locally, but under
``CI=true`` it fails, and so does any other skip: in CI nothing may silently not run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, NoReturn

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


#: Names this pytest run (set by its controller, inherited by xdist's workers): a worker that
#: uses the run's Ceph leaves a marker under it, and only that run's controller stops Ceph.
RUN_ID = "STRATUS_TEST_RUN_ID"


def ceph_run_marker() -> Path:
    return Path(tempfile.gettempdir()) / f"stratus-ceph-run-{os.environ.get(RUN_ID, '')}"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # a controller (or a run without xdist)
        os.environ[RUN_ID] = uuid.uuid4().hex


@pytest.fixture(scope="session")
def ceph_cluster() -> Any:
    """The run's real single-node Ceph (``tests/ceph_cluster.py``), shared by all workers."""
    from tests.ceph_cluster import cluster_for_tests

    ceph_run_marker().touch()
    return cluster_for_tests()


@pytest.fixture
def ceph_admin(ceph_cluster: Any) -> Iterator[Any]:
    """The run's cluster as client.admin (a librados connection)."""
    from tests.ceph_cluster import admin_connection

    with admin_connection(ceph_cluster) as conn:
        yield conn


@pytest.fixture
def admin_ioctx(ceph_admin: Any) -> Iterator[Any]:
    """The ``images`` pool as client.admin: what the image tests check the store against."""
    with ceph_admin.open_ioctx("images") as ioctx:
        yield ioctx


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    marker = ceph_run_marker()
    if not hasattr(session.config, "workerinput") and marker.exists():
        # After every worker of a run that used Ceph: it stops.
        from tests.ceph_cluster import stop_cluster

        marker.unlink()
        stop_cluster()
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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Real guests run in the serial part: under TCG they need the CPUs (two such tests at a
    time at most, see the Makefile's ``test``). So do the ``exclusive`` tests, which run
    there alone (they change what every test beside them would use)."""
    for item in items:
        if ((item.get_closest_marker("realvm") or item.get_closest_marker("exclusive"))
                and not item.get_closest_marker("serial")):
            item.add_marker(pytest.mark.serial)


# Databases --------------------------------------------------------------------------------


def _asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def _postgres_base() -> URL:
    return make_url(os.environ.get("STRATUS_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))


async def _postgres_admin() -> Any:
    import asyncpg

    base = _postgres_base()
    try:
        return await asyncpg.connect(_asyncpg_dsn(base), timeout=10)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL at {base.render_as_string()} is unreachable: {exc!r}"
    backend_unavailable(reason)


async def _create_postgres_database(template: str | None = None) -> str:
    name = f"stratus_test_{uuid.uuid4().hex[:16]}"
    admin = await _postgres_admin()
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await admin.close()
    return name


async def _drop_postgres_database(name: str) -> None:
    admin = await _postgres_admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _migrate_every_schema(url: str) -> None:
    from stratus.core.db import Database
    from stratus.schemas import all_schemas

    db = Database(url)
    try:
        for schema in all_schemas():
            await schema.upgrade(db)
    finally:
        await db.dispose()


class _SchemaTemplates:
    """One database per backend with every service's schema at head, made on first use.

    Running five services' migrations costs ~0.7 s; copying a migrated database (a file copy
    for SQLite, ``CREATE DATABASE ... TEMPLATE`` for PostgreSQL) costs a fraction of that, and
    hundreds of tests start a cloud on a fresh database.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.sqlite_file: Path | None = None
        self.postgres_name: str | None = None

    async def sqlite(self) -> Path:
        if self.sqlite_file is None:
            path = self.directory / "template.db"
            await _migrate_every_schema(f"sqlite+aiosqlite:///{path}")
            with contextlib.closing(sqlite3.connect(path)) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.sqlite_file = path
        return self.sqlite_file

    async def postgres(self) -> str:
        if self.postgres_name is None:
            name = await _create_postgres_database()
            await _migrate_every_schema(
                _postgres_base().set(database=name).render_as_string(hide_password=False))
            self.postgres_name = name
        return self.postgres_name

    async def drop(self) -> None:
        if self.postgres_name is not None:
            await _drop_postgres_database(self.postgres_name)


@pytest.fixture(scope="session")
def _schema_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_SchemaTemplates]:
    import asyncio

    templates = _SchemaTemplates(tmp_path_factory.mktemp("schema-templates"))
    yield templates
    asyncio.run(templates.drop())


@pytest.fixture(params=_BACKENDS)
async def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """SQLAlchemy URL of a fresh, empty database: a SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    name = await _create_postgres_database()
    try:
        yield _postgres_base().set(database=name).render_as_string(hide_password=False)
    finally:
        await _drop_postgres_database(name)


@pytest.fixture(params=_BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path,
                 _schema_templates: _SchemaTemplates) -> AsyncIterator[str]:
    """SQLAlchemy URL of a fresh database holding every service's schema at head, no rows.

    A SQLite file or a new PostgreSQL database, each test its own; services starting on it
    find their schema current, as on any start after the first.
    """
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copyfile(await _schema_templates.sqlite(), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    name = await _create_postgres_database(template=await _schema_templates.postgres())
    try:
        yield _postgres_base().set(database=name).render_as_string(hide_password=False)
    finally:
        await _drop_postgres_database(name)


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
