"""A scratch schema for the ``core.db`` tests: a few tables of its own on a fresh database
of either backend (``empty_db_url``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from stratus.core.db import Database


class Base(DeclarativeBase):
    pass


class Item(Base):
    """A row to page through: a nullable text and a nullable number to sort on."""

    __tablename__ = "core_test_item"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner: Mapped[str] = mapped_column(String(64), default="p1")
    tags: Mapped[list[Tag]] = relationship(lazy="raise")


class Tag(Base):
    """A collection on ``Item``, to page with a joined eager load."""

    __tablename__ = "core_test_tag"

    item_id: Mapped[str] = mapped_column(ForeignKey("core_test_item.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)


class Counter(Base):
    __tablename__ = "core_test_counter"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class QuotaRow(Base):
    __tablename__ = "core_test_quota"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


@asynccontextmanager
async def scratch_database(url: str) -> AsyncIterator[Database]:
    """A ``Database`` on ``url`` holding the scratch tables; disposed afterwards."""
    database = Database(url)
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def db(empty_db_url: str) -> AsyncIterator[Database]:
    async with scratch_database(empty_db_url) as database:
        yield database
