"""Bootstrap's catalog: every unit's service with a public, internal and admin endpoint at its
URL, made on a first start in a few statements (read once, inserted in one statement per
table), re-pointed when the cloud's URL changes, completed when an endpoint is missing, and
nothing else touched."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, select
from sqlalchemy.engine import Engine

from stratus.core.config import Settings
from stratus.identity.catalog import INTERFACES
from stratus.identity.models import Endpoint, Service
from stratus.identity.units import identity_runtime
from stratus.stack import Stack
from stratus.units import catalog_entries, run_bootstrap

ADMIN_PASSWORD = "Adm1n-Pa55-bootstrap-4c2e"


def _settings(db_url: str, tmp_path: Path, public_url: str) -> Settings:
    return Settings(data_dir=tmp_path, database_url=db_url, public_url=public_url,
                    admin_password=ADMIN_PASSWORD, identity={"bcrypt_rounds": 4})


@contextmanager
def _statements() -> Iterator[list[str]]:
    """Every SQL statement run meanwhile (an executemany counts once)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(re.sub(r"\s+", " ", statement))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def _on(statements: list[str], table: str) -> list[str]:
    """The statements reading or writing ``table``: their verb each."""
    pattern = re.compile(rf"\b(FROM|INTO|UPDATE) {table}\b")
    return [statement.split()[0] for statement in statements if pattern.search(statement)]


async def _catalog(stack: Stack) -> dict[str, dict[str, str]]:
    """{service type: {interface: url}} as stored."""
    runtime = await identity_runtime(stack)
    async with runtime.service() as svc:
        services = {row.id: row.type for row in await svc.session.scalars(select(Service))}
        found: dict[str, dict[str, str]] = {kind: {} for kind in services.values()}
        for endpoint in await svc.session.scalars(select(Endpoint)):
            found[services[endpoint.service_id]][endpoint.interface] = endpoint.url
    return found


@pytest.fixture
async def stack(db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    stack = Stack(_settings(db_url, tmp_path, "http://first"))
    try:
        yield stack
    finally:
        await stack.aclose()


async def test_a_first_bootstrap_makes_the_catalog_in_a_few_statements(stack: Stack) -> None:
    entries = catalog_entries(stack.settings)
    await identity_runtime(stack)
    with _statements() as statements:
        await run_bootstrap(stack)
    assert await _catalog(stack) == {entry.type: dict.fromkeys(INTERFACES, entry.url)
                                     for entry in entries}
    assert len(entries) >= 7
    # Read once and inserted in one statement each (one at a time: 7 + 21 of each); no
    # service yet, so no endpoint of one to read.
    assert _on(statements, "service") == ["SELECT", "INSERT"]
    assert _on(statements, "endpoint") == ["INSERT"]
    # The domain and the region are read when looked for and when made, not again by
    # each project, user or endpoint made in them.
    assert _on(statements, "region").count("SELECT") <= 2
    assert _on(statements, "domain").count("SELECT") <= 2


async def test_again_the_catalog_is_read_and_left_alone(stack: Stack) -> None:
    await run_bootstrap(stack)
    before = await _catalog(stack)
    with _statements() as statements:
        await run_bootstrap(stack)
    assert await _catalog(stack) == before
    assert _on(statements, "service") == ["SELECT"]
    assert _on(statements, "endpoint") == ["SELECT"]


async def test_a_new_url_repoints_and_a_missing_endpoint_is_made_again(
        db_url: str, tmp_path: Path, stack: Stack) -> None:
    await run_bootstrap(stack)
    runtime = await identity_runtime(stack)
    async with runtime.service() as svc:
        compute = await svc.session.scalar(select(Service).where(Service.type == "compute"))
        assert compute is not None
        await svc.session.execute(delete(Endpoint).where(
            Endpoint.service_id == compute.id, Endpoint.interface == "internal"))
        other = await svc.catalog.create_service(type="other", name="other")
        await svc.catalog.create_endpoint(service_id=other.id, interface="public",
                                          url="http://elsewhere/other")
    moved = Stack(_settings(db_url, tmp_path, "http://second"))
    try:
        await run_bootstrap(moved)
        catalog = await _catalog(moved)
    finally:
        await moved.aclose()
    assert catalog.pop("other") == {"public": "http://elsewhere/other"}
    assert catalog == {entry.type: dict.fromkeys(INTERFACES, entry.url)
                       for entry in catalog_entries(moved.settings)}
    assert all(url.startswith("http://second/") for urls in catalog.values()
               for url in urls.values())
