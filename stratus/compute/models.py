"""Compute's tables. Other services never read them; compute hosts reach them via the conductor."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from stratus.core.db import UTCDateTime, utcnow


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, dict[str, str]: JSON}


class Flavor(Base):
    __tablename__ = "flavor"

    #: Nova's public flavor id (``flavorid``): any string, a UUID when the client gives none.
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram: Mapped[int] = mapped_column(Integer)
    disk: Mapped[int] = mapped_column(Integer)
    swap: Mapped[int] = mapped_column(Integer, default=0)
    ephemeral: Mapped[int] = mapped_column(Integer, default=0)
    rxtx_factor: Mapped[float] = mapped_column(Float, default=1.0)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(Text)
    extra_specs: Mapped[dict[str, str]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class FlavorAccess(Base):
    """Projects allowed to use a private flavor."""

    __tablename__ = "flavor_access"

    flavor_id: Mapped[str] = mapped_column(
        ForeignKey("flavor.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class KeyPair(Base):
    __tablename__ = "key_pair"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(8), default="ssh")
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ComputeServiceRecord(Base):
    """One running unit (``nova-compute``, ``nova-scheduler``, ...) and its heartbeat."""

    __tablename__ = "service"
    __table_args__ = (UniqueConstraint("host", "binary"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(255))
    zone: Mapped[str] = mapped_column(String(255), default="nova")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    forced_down: Mapped[bool] = mapped_column(Boolean, default=False)
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    last_seen_up: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ResourceProvider(Base):
    """A compute node's resources; ``generation`` changes with every claim against it."""

    __tablename__ = "resource_provider"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    hypervisor_type: Mapped[str] = mapped_column(String(64), default="fake")
    cpu_arch: Mapped[str] = mapped_column(String(32), default="x86_64")
    #: Aggregate metadata that applies to this host (key → value).
    aggregate_metadata: Mapped[dict[str, str]] = mapped_column(default=dict)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Inventory(Base):
    __tablename__ = "inventory"

    provider_uuid: Mapped[str] = mapped_column(
        ForeignKey("resource_provider.uuid", ondelete="CASCADE"), primary_key=True)
    resource_class: Mapped[str] = mapped_column(String(32), primary_key=True)
    total: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    allocation_ratio: Mapped[float] = mapped_column(Float, default=1.0)
    max_unit: Mapped[int] = mapped_column(Integer)


class Allocation(Base):
    """Resources a consumer (an instance) holds on a provider."""

    __tablename__ = "allocation"
    __table_args__ = (Index("ix_allocation_provider_class", "provider_uuid", "resource_class"),)

    consumer_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    provider_uuid: Mapped[str] = mapped_column(
        ForeignKey("resource_provider.uuid", ondelete="CASCADE"), primary_key=True)
    resource_class: Mapped[str] = mapped_column(String(32), primary_key=True)
    used: Mapped[int] = mapped_column(Integer)
