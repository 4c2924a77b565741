"""Every service's schema: the Alembic history it owns and the version table that tracks it.

Each service keeps its migrations in its own package (``stratus.<service>.migrations``) and
its own version table, so services can share one database or each have their own. This is
the one list of them, for the tools that work on all at once (``stratus db upgrade``, and
``stratus up``'s first start, which migrates in a child process: ``upgrade_in_child``).

Run as ``python -m stratus.schemas`` it is that child: it reads ``{service: database URL}``
as JSON on stdin, brings each to its head and exits 0, or says why not on stderr and exits 1.

A first start on SQLite needs neither the child nor Alembic: a missing or empty SQLite
database is made at head from the SQL kept beside the service's migrations
(``sqlite_head.sql``, ``make_fresh_sqlite``), a dump of a database that ``upgrade head``
made, written by ``python -m tools.sqlite_heads``; a test keeps it equal to what
``upgrade head`` makes (tables, indexes, constraints and the rows migrations insert).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import importlib
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stratus.core.config import Settings
    from stratus.core.db import Database

LOG = logging.getLogger(__name__)

SERVICES = ("identity", "image", "compute", "network", "volume")

#: Beside each service's migrations: the SQL that makes a SQLite database at its head.
SQLITE_HEAD = "sqlite_head.sql"


@dataclass(frozen=True)
class Schema:
    service: str
    script_location: str
    version_table: str
    head: str
    directory: str

    async def upgrade(self, db: Database) -> str | None:
        """Bring ``db`` to this schema's head; the revision it is at afterwards."""
        await db.upgrade(self.script_location, self.version_table, known_head=self.head)
        return await db.current_revision(self.version_table)


def schema_of(service: str) -> Schema:
    """The schema ``service`` owns: ``SCRIPT_LOCATION``, ``VERSION_TABLE`` and ``HEAD`` of
    its ``migrations`` package (which imports nothing of the service's domain)."""
    migrations = importlib.import_module(f"stratus.{service}.migrations")
    return Schema(service, migrations.SCRIPT_LOCATION, migrations.VERSION_TABLE,
                  migrations.HEAD, os.path.dirname(migrations.__file__ or ""))


def all_schemas() -> list[Schema]:
    return [schema_of(service) for service in SERVICES]


def database_urls(settings: Settings) -> dict[str, str]:
    """Each service's database URL, as its runtime opens it."""
    return {service: settings.database_url_for(service, getattr(settings, service).database_url)
            for service in SERVICES}


async def services_behind(urls: Mapping[str, str]) -> list[str]:
    """The services whose database is not at their schema's head (missing, older, or newer):
    one query each, without Alembic. A SQLite file is read with the standard library (no
    engine, not even SQLAlchemy's import: ``stratus up`` asks before it has loaded it); a
    file that cannot be read counts as behind (the migration says what is wrong). Services
    sharing another database (PostgreSQL) are asked on one connection."""
    stored: dict[str, str | None] = {}
    elsewhere: dict[str, list[str]] = {}
    for service, url in urls.items():
        path = _sqlite_file(url)
        if path is None:
            elsewhere.setdefault(url, []).append(service)
        else:
            stored[service] = _sqlite_revision(path, schema_of(service).version_table)
    if elsewhere:
        from stratus.core.db import Database

        for url, services in elsewhere.items():
            db = Database(url)
            try:
                for service in services:
                    stored[service] = await db._stored_revision(schema_of(service).version_table)
            finally:
                await db.dispose()
    return [service for service in urls if stored[service] != schema_of(service).head]


def _sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL (``sqlite+aiosqlite:///PATH``); None for any other URL, an
    in-memory database or one with options (left to SQLAlchemy to read)."""
    scheme, _, rest = url.partition("://")
    if scheme.split("+")[0] != "sqlite" or not rest.startswith("/") or "?" in rest:
        return None
    path = rest[1:]
    return path if path and path != ":memory:" else None


def _sqlite_revision(path: str, version_table: str) -> str | None:
    try:  # mode=rw: a missing file is not created here, it is behind
        connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        rows = connection.execute(f"SELECT version_num FROM {version_table}").fetchall()
    except sqlite3.Error:  # no version table yet
        return None
    finally:
        connection.close()
    return rows[0][0] if len(rows) == 1 else None


#: A value a migration makes as it runs, in a head snapshot's rows: ``@@uuid:N@@`` (the Nth
#: distinct random id) or ``@@now|FORMAT@@`` (the migration's clock, as ``strftime(FORMAT)``).
#: Each database made from the snapshot gets its own ids and its own time, as a database
#: migrated at that moment would.
_RUN_VALUE = re.compile(r"@@uuid:(\d+)@@|@@now\|([^@]*)@@")


def _head_snapshot(service: str) -> tuple[str, str]:
    """``service``'s SQLite snapshot file, and the first line it has when it is of this
    code's head: ``-- <service> at <revision>``."""
    schema = schema_of(service)
    return os.path.join(schema.directory, SQLITE_HEAD), f"-- {service} at {schema.head}"


def sqlite_head_statements(service: str) -> list[str] | None:
    """The statements that make ``service``'s schema at head in an empty SQLite database,
    with fresh run values; None when there is no snapshot of this code's head (a migration
    added without ``python -m tools.sqlite_heads``): Alembic makes it then."""
    path, at_head = _head_snapshot(service)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError:
        return None
    if text.split("\n", 1)[0] != at_head:
        return None
    ids: dict[str, str] = {}
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    def fresh(match: re.Match[str]) -> str:
        if match[1] is not None:
            return ids.setdefault(match[1], str(uuid.uuid4()))
        return now.strftime(match[2])

    statements: list[str] = []
    pending = ""
    for line in _RUN_VALUE.sub(fresh, text).splitlines(keepends=True):
        if not pending and line.startswith("--"):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    return statements


def make_fresh_sqlite(urls: Mapping[str, str]) -> list[str]:
    """Make each missing or empty SQLite database of ``urls`` at its schema's head from the
    services' snapshots (``sqlite_head_statements``), with the standard library only: no
    child, no Alembic, not even SQLAlchemy. The services made; the others (another
    database, one with tables, no snapshot at head, an error) are left to the migrations.

    A database is made in one exclusive transaction that first checks it is still empty: a
    start beside this one waits and then sees it made, and one stopped half-way leaves an
    empty database, made again next time."""
    files: dict[str, list[str]] = {}
    for service, url in urls.items():
        path = _sqlite_file(url)
        if path is not None:
            files.setdefault(path, []).append(service)
    made: list[str] = []
    for path, services in files.items():
        snapshots = [sqlite_head_statements(service) for service in services]
        if any(snapshot is None for snapshot in snapshots) or not os.path.isdir(
                os.path.dirname(path) or "."):
            continue
        try:
            if _make_if_empty(path, [s for snapshot in snapshots for s in snapshot or ()]):
                made.extend(services)
        except sqlite3.Error as exc:  # the migration will say what is wrong, if anything
            LOG.info("%s: not made from its snapshot (%s); migrating it", path, exc)
    return made


def _make_if_empty(path: str, statements: list[str]) -> bool:
    connection = sqlite3.connect(path, timeout=5, isolation_level=None)
    try:
        # As every database Stratus opens (core.db): WAL, which an empty file takes for good,
        # and no sync at the commit (closing checkpoints the file: synced then, in order).
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("BEGIN EXCLUSIVE")
        try:
            if connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone():
                return False
            for statement in statements:
                connection.execute(statement)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return True
    finally:
        connection.close()


class Migration:
    """``python -m stratus.schemas`` upgrading ``urls``, started at once; ``wait()`` for it.

    Alembic (with Mako, Pygments and every dialect's DDL) and the migration scripts stay in
    the child, so the process that serves never imports them: on a first start they were
    ~18 MB of its resident memory for good and ~0.5 s of its CPU, and the child runs while
    the server imports its own modules (another core). The child runs the same
    ``Database.upgrade`` as a process migrating itself would, so a database it brings to
    head is exactly that one; the caller must not open these databases before ``wait()``.
    The child's output (Alembic's lines, a traceback) goes to this process's log; a failure
    is a ``RuntimeError`` naming the service and the error.
    """

    def __init__(self, urls: Mapping[str, str]) -> None:
        self.services = list(urls)
        # In this process's group: a Ctrl-C or a stop of the group stops it too.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stratus.schemas"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # URLs may hold passwords: on stdin, not the command line others can read. Fed by
        # a thread from now on, so the child starts at once whatever this process does
        # (imports holding the event loop) before it waits.
        self._output: concurrent.futures.Future[tuple[bytes, bytes]] = (
            concurrent.futures.Future())
        # Running from now: a cancelled wait() cannot cancel it under the thread (which
        # could then not hand over the result); wait() kills the child instead.
        self._output.set_running_or_notify_cancel()
        payload = json.dumps(dict(urls)).encode()
        threading.Thread(target=self._communicate, args=(payload,), daemon=True,
                         name="stratus-migrations").start()

    def _communicate(self, payload: bytes) -> None:
        try:
            self._output.set_result(self.process.communicate(payload))
        except BaseException as exc:  # handed to wait()
            self._output.set_exception(exc)

    async def wait(self) -> None:
        """Wait for the child; ``RuntimeError`` if it failed. Cancelled, the child is
        killed."""
        try:
            out, err = await asyncio.wrap_future(self._output)
        except BaseException:
            self.process.kill()
            raise
        failed = self.process.returncode != 0
        for line in (out + err).decode(errors="replace").splitlines():
            LOG.log(logging.ERROR if failed else logging.INFO, "migrations: %s", line)
        if failed:
            said = err.decode(errors="replace").strip().splitlines() or ["no output"]
            raise RuntimeError(f"migrating {', '.join(self.services)} failed "
                               f"(status {self.process.returncode}): {said[-1]}")


def _snapshot_at_head(service: str) -> bool:
    """Whether ``service`` has a SQLite snapshot of this code's head (its first line only)."""
    path, at_head = _head_snapshot(service)
    try:
        with open(path, encoding="utf-8") as file:
            return file.readline().rstrip("\n") == at_head
    except OSError:
        return False


class Databases:
    """The databases of ``urls`` (each behind its schema's head) brought there, begun at
    once; ``wait()`` for it before any is opened, ``stop()`` if the start ends first.

    A SQLite file with a snapshot of this code's head is made from it in a thread
    (``make_fresh_sqlite``: most of its time is the files' fsyncs, during which SQLite lets
    go of the GIL), so the caller's imports run meanwhile; one the thread did not make (it
    has tables: an older revision) is migrated by a child the thread starts. The other
    databases (PostgreSQL, SQLite without a snapshot at head) are migrated by a child
    started now. ``migrations``: the children started (``Migration``).
    """

    def __init__(self, urls: Mapping[str, str]) -> None:
        fresh = {service: url for service, url in urls.items()
                 if _sqlite_file(url) is not None and _snapshot_at_head(service)}
        others = {service: url for service, url in urls.items() if service not in fresh}
        self.migrations: list[Migration] = [Migration(others)] if others else []
        self._stopped = False
        # run_in_executor hands it to a thread now, not when the event loop next runs.
        self._fresh: asyncio.Future[Migration | None] | None = (
            asyncio.get_running_loop().run_in_executor(None, _make_or_migrate, fresh)
            if fresh else None)
        if self._fresh is not None:
            self._fresh.add_done_callback(self._started)

    def _started(self, made: asyncio.Future[Migration | None]) -> None:
        if made.cancelled() or made.exception() is not None or made.result() is None:
            return
        migration = made.result()
        assert migration is not None
        self.migrations.append(migration)
        if self._stopped:
            migration.process.kill()

    async def wait(self) -> None:
        """Until every database is at its head; ``RuntimeError`` if a migration failed."""
        if self._fresh is not None:
            await asyncio.shield(self._fresh)  # the thread finishes, whatever the caller
            self._fresh = None
        for migration in list(self.migrations):
            await migration.wait()

    def stop(self) -> None:
        """The start ended before ``wait()``: kill the children (one the thread starts
        later too)."""
        self._stopped = True
        for migration in self.migrations:
            migration.process.kill()


def _make_or_migrate(urls: Mapping[str, str]) -> Migration | None:
    """``make_fresh_sqlite(urls)`` (SQLite files only), and a child migrating those it did
    not make that are still behind (another start may have made them meanwhile)."""
    made = make_fresh_sqlite(urls)
    if made:
        LOG.info("%s: made at their schemas' heads from snapshots (no migration to run)",
                 ", ".join(made))
    behind = {service: url for service, url in urls.items() if service not in made
              and _sqlite_revision(_sqlite_file(url) or "", schema_of(service).version_table)
              != schema_of(service).head}
    return Migration(behind) if behind else None


async def _upgrade_all(urls: Mapping[str, str]) -> None:
    from stratus.core.db import Database

    for service, url in urls.items():
        try:
            db = Database(url)
            try:
                revision = await schema_of(service).upgrade(db)
            finally:
                await db.dispose()
        except Exception as exc:
            traceback.print_exc()
            # The last line, what the parent's error says.
            print(f"{service}: not migrated: {type(exc).__name__}: {exc}", file=sys.stderr,
                  flush=True)
            raise SystemExit(1) from None
        print(f"{service}: at revision {revision}", flush=True)


def _main() -> None:  # pragma: no cover - runs as the child of Migration
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    urls = json.loads(sys.stdin.read())
    asyncio.run(_upgrade_all(urls))


if __name__ == "__main__":  # pragma: no cover
    _main()
