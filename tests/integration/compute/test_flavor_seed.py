"""The default flavors of a new database, seeded by processes that start at the same moment
(split mode starts two schedulers, two conductors and the API processes together, each
seeding on start): every one of them starts, and the flavors are there once."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from stratus.compute.flavors import DEFAULT_FLAVORS, Flavors
from stratus.compute.models import Flavor
from stratus.core.db import Database


@pytest.mark.parametrize("db_url", ["postgresql", "sqlite"], indirect=True)
async def test_processes_starting_together_seed_the_default_flavors_once(db_url: str) -> None:
    # One engine each, as separate processes have: the seeding transactions overlap.
    databases = [Database(db_url) for _ in range(3)]

    async def seed(db: Database) -> None:
        async with db.transaction() as txn:
            await Flavors(txn).seed_defaults()

    async def connect(db: Database) -> None:
        async with db.transaction(write=False) as txn:
            await txn.session.scalar(select(func.count()).select_from(Flavor))

    try:
        # Connected first, so that the seeding transactions run side by side rather than
        # one after the other behind connection set-ups of different lengths.
        await asyncio.gather(*(connect(db) for db in databases))
        await asyncio.gather(*(seed(db) for db in databases))
        async with databases[0].transaction(write=False) as txn:
            count = await txn.session.scalar(select(func.count()).select_from(Flavor))
        assert count == len(DEFAULT_FLAVORS)
    finally:
        for db in databases:
            await db.dispose()
