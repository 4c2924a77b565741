"""Each service's schema at head on SQLite, as SQL beside its migrations
(``stratus/<service>/migrations/sqlite_head.sql``): ``python -m tools.sqlite_heads``.

``stratus up`` makes a missing SQLite database from it (``stratus.schemas.make_fresh_sqlite``)
instead of running the Alembic history in a child process. The file is the dump of a
database that ``upgrade head`` made (the standard library's ``iterdump``: tables with their
constraints, indexes, and the rows migrations insert), with the values a migration makes as
it runs (random ids, its clock) as placeholders each made database fills with its own.
Run it after adding a migration; ``--check`` writes nothing and exits 1 when a committed
file differs from what ``upgrade head`` makes now (a test runs the same comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sqlite3
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from stratus.core.db import Database
from stratus.schemas import SERVICES, SQLITE_HEAD, schema_of

_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\b")
# The forms SQLAlchemy stores a DateTime in on SQLite, and the ISO form with a Z.
_TIME = re.compile(r"\b(\d{4}-\d{2}-\d{2})([ T])(\d{2}:\d{2}:\d{2})(\.\d{6})?(Z?)")


_AFTER_TABLES = ("CREATE INDEX", "CREATE UNIQUE INDEX", "CREATE TRIGGER", "CREATE VIEW")


def dump(path: str | Path) -> list[str]:
    """The statements that remake the SQLite database at ``path`` (``iterdump``), without
    its transaction's BEGIN and COMMIT."""
    connection = sqlite3.connect(path)
    try:
        statements = [statement for statement in connection.iterdump()
                      if statement not in ("BEGIN TRANSACTION;", "COMMIT;")]
    finally:
        connection.close()
    # Tables come first, by name, each with its rows; then indexes, triggers and views in
    # the order they were made, which Alembic's batch mode varies from run to run (it
    # remakes a table's indexes from a set): those by their text.
    tables = [s for s in statements if not s.startswith(_AFTER_TABLES)]
    return tables + sorted(s for s in statements if s.startswith(_AFTER_TABLES))


def with_placeholders(statements: Iterable[str], since: dt.datetime,
                      until: dt.datetime) -> list[str]:
    """``statements`` with the values made while a migration ran as placeholders
    (``stratus.schemas._RUN_VALUE``): each random (version 4) id as ``@@uuid:N@@``, the same
    id the same N; each time between ``since`` and ``until`` (naive UTC, whole seconds
    included) as ``@@now|FORMAT@@`` in the form it was written in."""
    ids: dict[str, str] = {}
    low, high = since.replace(microsecond=0), until.replace(microsecond=0)

    def uuid_placeholder(match: re.Match[str]) -> str:
        return ids.setdefault(match[0], f"@@uuid:{len(ids) + 1}@@")

    def time_placeholder(match: re.Match[str]) -> str:
        day, separator, clock, fraction, zone = match.groups()
        when = dt.datetime.fromisoformat(f"{day} {clock}")
        if not low <= when <= high:
            return match[0]
        if fraction == ".000000":  # the migration dropped the microseconds: so does the copy
            fraction_format = ".000000"
        else:
            fraction_format = ".%f" if fraction else ""
        return f"@@now|%Y-%m-%d{separator}%H:%M:%S{fraction_format}{zone}@@"

    out = []
    for statement in statements:
        if statement.startswith("INSERT INTO"):
            statement = _TIME.sub(time_placeholder, _UUID.sub(uuid_placeholder, statement))
        out.append(statement)
    return out


async def head_snapshot(service: str) -> str:
    """The text of ``service``'s ``sqlite_head.sql``, from a database ``upgrade head`` makes
    now."""
    schema = schema_of(service)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"{service}.db"
        since = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await schema.upgrade(db)
        finally:
            await db.dispose()
        until = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        statements = with_placeholders(dump(path), since, until)
    header = f"-- {service} at {schema.head}"
    return "\n".join([header, "-- Written by python -m tools.sqlite_heads: do not edit.",
                      *statements]) + "\n"


def snapshot_file(service: str) -> Path:
    return Path(schema_of(service).directory) / SQLITE_HEAD


async def _main(check: bool) -> int:
    stale = []
    for service in SERVICES:
        text = await head_snapshot(service)
        target = snapshot_file(service)
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        stale.append(service)
        if not check:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
    if check and stale:
        print(f"not at head: {', '.join(stale)} (python -m tools.sqlite_heads)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a committed file differs")
    sys.exit(asyncio.run(_main(parser.parse_args().check)))
