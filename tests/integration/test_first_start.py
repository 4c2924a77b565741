"""``stratus up``'s first start: missing SQLite databases are made at head from their
snapshots (``stratus.schemas.make_fresh_sqlite``; ``test_sqlite_heads.py`` holds them equal to
``upgrade head``) and the other databases behind their schema's head are migrated by a child
process (``stratus.schemas.Migration``), so the serving process never imports Alembic, while
the admin password's bcrypt hash is made in a thread beside the imports; the admin bootstrap
creates with that hash logs in with the password."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from stratus.core.config import Settings
from stratus.core.db import Database
from stratus.schemas import (
    SERVICES,
    Databases,
    Migration,
    database_urls,
    schema_of,
    services_behind,
)

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, json, sys
from pathlib import Path

import httpx

from stratus.cli.main import _first_start_work
from stratus.core.config import Settings
from stratus.stack import Stack, admin_password
from stratus.units import UNITS, root_app, run_bootstrap


async def main():
    settings = Settings(data_dir=Path(sys.argv[1]), public_url="http://test",
                        bus_url="memory://", identity={"bcrypt_rounds": 4},
                        compute={"virt_driver": "fake"}, network={"backend": "noop"})
    report = {}
    databases, admin_hash = await _first_start_work(settings)
    await databases.wait()
    report["child"] = bool(databases.migrations)
    report["hash_begun"] = admin_hash is not None
    from stratus.schemas import database_urls, services_behind
    report["behind"] = await services_behind(database_urls(settings))
    stack = Stack(settings)
    try:
        await run_bootstrap(stack, admin_password_hash=admin_hash)
        app = await root_app(stack, list(UNITS))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test", timeout=60) as client:
            auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"},
                "password": admin_password(settings)}}},
                "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
            report["token"] = (await client.post("/identity/v3/auth/tokens",
                                                 json=auth)).status_code
        report["again"] = [x is None for x in await _first_start_work(settings)]
        report["alembic"] = sorted(m for m in sys.modules
                                   if m == "alembic" or m.startswith(("alembic.", "mako")))
        report["postgresql"] = sorted(
            m for m in sys.modules if m.startswith("sqlalchemy.dialects.postgresql"))
    finally:
        await stack.aclose()
    print(json.dumps(report))


asyncio.run(main())
"""


def test_a_first_start_on_sqlite_needs_no_child_and_never_imports_alembic(
        tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["child"] is False  # every database made from its snapshot
    assert report["behind"] == []
    assert report["hash_begun"] is True
    assert report["token"] == 201  # the admin's hash, made beforehand, is the password's
    assert report["again"] == [True, True]  # at head: no child, no hash
    assert report["alembic"] == []
    # Nor SQLAlchemy's PostgreSQL dialect (every driver's module, ~2 MB) on SQLite: the
    # compute models' PostgreSQL-only partial indexes and array types do not load it.
    assert report["postgresql"] == []


EARLY_SCRIPT = """
import asyncio, concurrent.futures, json, os, sys, threading
from pathlib import Path

import stratus.schemas
from stratus.cli.main import _first_start_work, _settings

data_dir = Path(sys.argv[1])
handed = []


class Recording(concurrent.futures.ThreadPoolExecutor):
    def submit(self, fn, /, *args, **kwargs):
        handed.append({"what": fn.__name__, "sqlalchemy": "sqlalchemy" in sys.modules,
                       "databases": sorted(n for n in os.listdir(data_dir) if ".db" in n)})
        return super().submit(fn, *args, **kwargs)


make_fresh_sqlite = stratus.schemas.make_fresh_sqlite


def making(urls):
    handed.append({"what": "make_fresh_sqlite", "services": sorted(urls),
                   "main_thread": threading.current_thread() is threading.main_thread()})
    return make_fresh_sqlite(urls)


stratus.schemas.make_fresh_sqlite = making


async def main():
    asyncio.get_running_loop().set_default_executor(Recording())
    settings = _settings(data_dir)
    settings.identity.bcrypt_rounds = 4
    databases, admin_hash = await _first_start_work(settings)
    await databases.wait()
    await admin_hash
    print(json.dumps({"handed": handed, "child": bool(databases.migrations),
                      "behind": await stratus.schemas.services_behind(
                          stratus.schemas.database_urls(settings))}))


asyncio.run(main())
"""


def test_a_first_start_begins_its_work_in_threads_before_the_rest(tmp_path: Path) -> None:
    """The admin password's bcrypt hash (~0.25 s of a core) is a first start's longest
    work: it is handed to a thread before the databases are made and before the process
    has imported SQLAlchemy (the settings do not need it), so it runs beside all of it.
    The databases are made from their snapshots in another thread (their fsyncs are most
    of that time), not on the main thread, which imports the units meanwhile."""
    result = subprocess.run([sys.executable, "-c", EARLY_SCRIPT, str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["handed"] == [
        {"what": "hash_secret_sync", "sqlalchemy": False, "databases": []},
        {"what": "_make_or_migrate", "sqlalchemy": False, "databases": []},
        {"what": "make_fresh_sqlite", "services": sorted(SERVICES), "main_thread": False},
    ]
    assert report["child"] is False
    assert report["behind"] == []


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, bus_url="memory://")


async def test_services_behind_reads_each_database_without_creating_it(tmp_path: Path) -> None:
    urls = database_urls(_settings(tmp_path))
    assert await services_behind(urls) == list(SERVICES)
    assert not [name for name in os.listdir(tmp_path) if ".db" in name]  # asking made none

    await Migration(urls).wait()
    assert await services_behind(urls) == []

    # A database at another revision than this code's head is behind, alone.
    table = schema_of("image").version_table
    with sqlite3.connect(tmp_path / "image.db") as connection:
        connection.execute(f"UPDATE {table} SET version_num = '0001'")
    assert await services_behind(urls) == ["image"]
    with sqlite3.connect(tmp_path / "image.db") as connection:
        connection.execute(f"UPDATE {table} SET version_num = ?", (schema_of("image").head,))
    # A missing one too; migrated alone, the rest untouched.
    for name in os.listdir(tmp_path):
        if name.startswith("compute.db"):
            os.unlink(tmp_path / name)
    assert await services_behind(urls) == ["compute"]
    await Migration({"compute": urls["compute"]}).wait()
    assert await services_behind(urls) == []


async def test_a_failed_migration_says_which_and_why(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    url = f"sqlite+aiosqlite:///{blocker / 'identity.db'}"
    with pytest.raises(RuntimeError, match=r"migrating identity failed \(status 1\)") as error:
        await Migration({"identity": url}).wait()
    assert "identity: not migrated: FileExistsError" in str(error.value)


async def test_services_sharing_one_database(empty_db_url: str) -> None:
    """Every service in one database (SQLite file, or PostgreSQL as a deployment shares
    one): asked on one connection there, migrated by the child, then all at head."""
    urls = dict.fromkeys(SERVICES, empty_db_url)
    assert await services_behind(urls) == list(SERVICES)
    await Migration(urls).wait()
    assert await services_behind(urls) == []


async def test_a_cancelled_wait_kills_the_child(tmp_path: Path) -> None:
    """Start-up stopped while migrating (Ctrl-C): the child goes too, and its reader thread
    ends without an error of its own."""
    errors: list[threading.ExceptHookArgs] = []
    hook, threading.excepthook = threading.excepthook, errors.append
    try:
        migration = Migration(database_urls(_settings(tmp_path)))
        waiting = asyncio.create_task(migration.wait())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await asyncio.to_thread(migration.process.wait, 60) == -signal.SIGKILL
        await asyncio.to_thread(migration._output.exception, 60)  # the thread has finished
    finally:
        threading.excepthook = hook
    assert errors == []


async def _at_revision(url: str, service: str, revision: str) -> None:
    db = Database(url)
    try:
        await db.upgrade(schema_of(service).script_location, schema_of(service).version_table,
                         revision)
    finally:
        await db.dispose()


async def test_databases_made_in_a_thread_and_the_rest_migrated(tmp_path: Path) -> None:
    """``Databases``: a missing SQLite file is made from its snapshot (no child), one at an
    older revision is migrated by a child the thread starts; then all are at head."""
    urls = database_urls(_settings(tmp_path))
    await _at_revision(urls["image"], "image", "0001")
    databases = Databases(urls)
    await databases.wait()
    assert [migration.services for migration in databases.migrations] == [["image"]]
    assert await services_behind(urls) == []


async def test_databases_sharing_one(empty_db_url: str) -> None:
    """Every service in one database: one SQLite file made from the five snapshots, or a
    PostgreSQL database migrated by a child at once."""
    urls = dict.fromkeys(SERVICES, empty_db_url)
    databases = Databases(urls)
    await databases.wait()
    assert bool(databases.migrations) == empty_db_url.startswith("postgresql")
    assert await services_behind(urls) == []


async def test_a_start_stopped_first_kills_the_child_the_thread_starts(tmp_path: Path) -> None:
    """The start ends (Ctrl-C, a failure) before waiting: a child the thread starts after
    that is killed as soon as it is known."""
    url = database_urls(_settings(tmp_path))["image"]
    await _at_revision(url, "image", "0001")
    databases = Databases({"image": url})
    databases.stop()
    with pytest.raises(RuntimeError, match="migrating image failed"):
        await databases.wait()
    assert [migration.process.returncode for migration in databases.migrations] == [
        -signal.SIGKILL]
