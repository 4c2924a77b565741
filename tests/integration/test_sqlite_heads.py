"""A SQLite database made from a service's head snapshot (``sqlite_head.sql``, what
``stratus up`` does on a first start instead of running Alembic) is the database ``upgrade
head`` makes: the same tables with their constraints, the same indexes, the same rows (the
image service's seeded metadata namespaces included), each copy with ids and times of its
own; and the committed snapshots are those of this code's head."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import uuid
from pathlib import Path

import pytest

import stratus.schemas
from stratus.core.db import Database
from stratus.schemas import (
    SERVICES,
    Schema,
    make_fresh_sqlite,
    schema_of,
    services_behind,
    sqlite_head_statements,
)
from tools.sqlite_heads import dump, head_snapshot, snapshot_file, with_placeholders


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def _upgraded(path: Path, services: tuple[str, ...]) -> tuple[dt.datetime, dt.datetime]:
    since = _now()
    for service in services:
        db = Database(_url(path))
        try:
            await schema_of(service).upgrade(db)
        finally:
            await db.dispose()
    return since, _now()


def _made(path: Path, services: tuple[str, ...]) -> tuple[dt.datetime, dt.datetime]:
    since = _now()
    assert make_fresh_sqlite(dict.fromkeys(services, _url(path))) == list(services)
    return since, _now()


def _journal_mode(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return str(connection.execute("PRAGMA journal_mode").fetchone()[0])


@pytest.mark.parametrize("service", SERVICES)
async def test_the_committed_snapshot_is_this_codes_head(service: str) -> None:
    assert snapshot_file(service).read_text(encoding="utf-8") == await head_snapshot(service)


@pytest.mark.parametrize("services", [(service,) for service in SERVICES] + [SERVICES],
                         ids=[*SERVICES, "all-in-one-file"])
async def test_made_from_the_snapshot_equals_upgrade_head(tmp_path: Path,
                                                         services: tuple[str, ...]) -> None:
    upgraded, made = tmp_path / "upgraded.db", tmp_path / "made.db"
    upgraded_window = await _upgraded(upgraded, services)
    made_window = _made(made, services)

    # Every table's CREATE (columns, types, keys, constraints), index, and row; the values a
    # migration makes as it runs compared as what they are (a random id, the clock).
    assert (with_placeholders(dump(made), *made_window)
            == with_placeholders(dump(upgraded), *upgraded_window))
    with sqlite3.connect(made) as a, sqlite3.connect(upgraded) as b:
        master = "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        assert a.execute(master).fetchall() == b.execute(master).fetchall()  # autoindexes too
    assert _journal_mode(made) == _journal_mode(upgraded) == "wal"
    assert await services_behind(dict.fromkeys(services, _url(made))) == []


async def test_each_database_gets_its_own_ids_and_time(tmp_path: Path) -> None:
    windows = [_made(tmp_path / f"image-{n}.db", ("image",)) for n in (1, 2)]
    rows = []
    for n, (since, until) in zip((1, 2), windows, strict=True):
        with sqlite3.connect(tmp_path / f"image-{n}.db") as connection:
            rows.append(connection.execute(
                "SELECT id, created_at, resource_type_associations FROM metadef_namespace"
            ).fetchall())
        for id_, created_at, associations in rows[-1]:
            assert uuid.UUID(id_).version == 4
            created = dt.datetime.fromisoformat(created_at)
            assert since.replace(microsecond=0) <= created <= until
            assert created.strftime("%Y-%m-%dT%H:%M:%SZ") in associations
    assert len(rows[0]) == 3
    assert not {row[0] for row in rows[0]} & {row[0] for row in rows[1]}


async def test_a_database_with_tables_is_left_to_the_migrations(tmp_path: Path) -> None:
    path = tmp_path / "image.db"
    db = Database(_url(path))
    try:
        await db.upgrade(schema_of("image").script_location,
                         schema_of("image").version_table, "0001")
    finally:
        await db.dispose()
    before = dump(path)
    assert make_fresh_sqlite({"image": _url(path)}) == []
    assert dump(path) == before
    assert await services_behind({"image": _url(path)}) == ["image"]


async def test_an_empty_file_is_made_and_other_databases_are_not(tmp_path: Path) -> None:
    """An empty file: a start stopped before it made its database (its transaction rolled
    back). A server URL or an in-memory database is never one to make."""
    (tmp_path / "network.db").write_bytes(b"")
    urls = {"network": _url(tmp_path / "network.db"),
            "volume": "postgresql+asyncpg://stratus@db.invalid/stratus",
            "compute": "sqlite+aiosqlite:///:memory:"}
    assert make_fresh_sqlite(urls) == ["network"]
    assert await services_behind({"network": urls["network"]}) == []


async def test_no_snapshot_of_the_head_leaves_it_to_the_migrations(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration added without writing the snapshot again: the snapshot is of an older
    revision, so the database is migrated instead of made from it."""
    real = schema_of("volume")
    ahead = Schema(real.service, real.script_location, real.version_table, "9999",
                   real.directory)
    monkeypatch.setattr(stratus.schemas, "schema_of",
                        lambda service: ahead if service == "volume" else real)
    assert sqlite_head_statements("volume") is None
    assert make_fresh_sqlite({"volume": _url(tmp_path / "volume.db")}) == []
    assert not (tmp_path / "volume.db").exists()


def test_placeholders_cover_only_what_the_migration_made() -> None:
    since = dt.datetime(2026, 12, 6, 7, 0, 0, 500000)
    statements = [
        "INSERT INTO \"t\" VALUES('0b7c2f4e-1d2a-4f3b-9c8d-7e6f5a4b3c2d',"
        "'2026-12-06 07:00:00.000000','2026-12-06T07:00:01Z','2025-01-01 00:00:00.000000',"
        "'0b7c2f4e-1d2a-4f3b-9c8d-7e6f5a4b3c2d');",
        "CREATE TABLE t (a VARCHAR(36) DEFAULT '2026-12-06 07:00:00.000000');",
    ]
    out = with_placeholders(statements, since, since + dt.timedelta(seconds=1))
    assert out[0] == ("INSERT INTO \"t\" VALUES('@@uuid:1@@','@@now|%Y-%m-%d %H:%M:%S.000000@@',"
                      "'@@now|%Y-%m-%dT%H:%M:%SZ@@','2025-01-01 00:00:00.000000',"
                      "'@@uuid:1@@');")
    assert out[1] == statements[1]
    assert re.search("@@", "".join(sqlite_head_statements("image") or [])) is None
