"""Block storage's tables (prefix ``volume_``). Only volume-api and volume-managers use them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from stratus.core.db import utcnow
from stratus.core.db.columns import TYPE_MAP, Created, IdentityId, Name, UUIDKey


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class VolumeType(Base):
    __tablename__ = "volume_types"

    id: Mapped[UUIDKey]
    name: Mapped[Name] = mapped_column(unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    extra_specs: Mapped[dict[str, str]] = mapped_column(default=dict)
    created_at: Mapped[Created]
    deleted_at: Mapped[dt.datetime | None]


class Volume(Base):
    """One volume. ``status`` is the API's status machine; ``attach_status`` says whether
    any attachment holds it. Deleted rows are kept (``deleted_at``) out of every listing."""

    __tablename__ = "volume_volumes"
    __table_args__ = (Index("ix_volume_volumes_project_deleted", "project_id", "deleted_at"),)

    id: Mapped[UUIDKey]
    project_id: Mapped[IdentityId]
    user_id: Mapped[IdentityId | None]
    name: Mapped[Name | None]
    description: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    attach_status: Mapped[str] = mapped_column(String(32), default="detached")
    availability_zone: Mapped[str] = mapped_column(String(255))
    #: The volume-manager that holds the data; None until one is chosen.
    host: Mapped[str | None] = mapped_column(String(255))
    volume_type_id: Mapped[str | None] = mapped_column(ForeignKey("volume_types.id"))
    snapshot_id: Mapped[str | None] = mapped_column(String(36))
    source_volid: Mapped[str | None] = mapped_column(String(36))
    image_id: Mapped[str | None] = mapped_column(String(36))
    bootable: Mapped[bool] = mapped_column(Boolean, default=False)
    readonly: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Keys admin actions set (``readonly`` once ``os-update_readonly_flag`` ran), shown
    #: with the metadata as Cinder shows its visible admin metadata; users cannot change them.
    admin_metadata: Mapped[dict[str, str] | None] = mapped_column(default=None)
    multiattach: Mapped[bool] = mapped_column(Boolean, default=False)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", default=dict)
    image_metadata: Mapped[dict[str, str]] = mapped_column(default=dict)
    #: Why the volume is in ``error`` (shown in logs, not by the API).
    error_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[Created]
    updated_at: Mapped[dt.datetime | None] = mapped_column(onupdate=utcnow)
    deleted_at: Mapped[dt.datetime | None]


class Snapshot(Base):
    __tablename__ = "volume_snapshots"

    id: Mapped[UUIDKey]
    project_id: Mapped[IdentityId] = mapped_column(index=True)
    user_id: Mapped[IdentityId | None]
    volume_id: Mapped[str] = mapped_column(ForeignKey("volume_volumes.id"), index=True)
    name: Mapped[Name | None]
    description: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", default=dict)
    created_at: Mapped[Created]
    updated_at: Mapped[dt.datetime | None] = mapped_column(onupdate=utcnow)
    deleted_at: Mapped[dt.datetime | None]


class Attachment(Base):
    """An attachment (API 3.27+): ``attach_status`` reserved → attaching → attached; a
    deleted one is ``detached`` with ``deleted_at`` set."""

    __tablename__ = "volume_attachments"

    id: Mapped[UUIDKey]
    volume_id: Mapped[str] = mapped_column(ForeignKey("volume_volumes.id"), index=True)
    instance_uuid: Mapped[str | None] = mapped_column(String(36), index=True)
    attached_host: Mapped[str | None] = mapped_column(String(255))
    mountpoint: Mapped[str | None] = mapped_column(String(255))
    attach_mode: Mapped[str] = mapped_column(String(8), default="rw")
    attach_status: Mapped[str] = mapped_column(String(32))
    connector: Mapped[dict[str, Any] | None]
    connection_info: Mapped[dict[str, Any] | None]
    attach_time: Mapped[dt.datetime | None]
    detach_time: Mapped[dt.datetime | None]
    created_at: Mapped[Created]
    updated_at: Mapped[dt.datetime | None] = mapped_column(onupdate=utcnow)
    deleted_at: Mapped[dt.datetime | None]


class Transfer(Base):
    """A volume offered to another project (``os-volume-transfer``): whoever shows the id
    and the auth key takes it. Only a salted hash of the key is kept. An accepted or
    deleted transfer keeps its row (``deleted_at``)."""

    __tablename__ = "volume_transfers"

    id: Mapped[UUIDKey]
    volume_id: Mapped[str] = mapped_column(ForeignKey("volume_volumes.id"), index=True)
    name: Mapped[Name | None]
    salt: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(128))
    source_project_id: Mapped[IdentityId] = mapped_column(index=True)
    destination_project_id: Mapped[IdentityId | None]
    no_snapshots: Mapped[bool] = mapped_column(Boolean, default=False)
    accepted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[Created]
    deleted_at: Mapped[dt.datetime | None]


class QuotaLimit(Base):
    """A project's limit on one resource, where it differs from the default."""

    __tablename__ = "volume_quotas"

    project_id: Mapped[IdentityId] = mapped_column(primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class ServiceRecord(Base):
    """A volume-manager: its host, backend and what it can do, and its last heartbeat."""

    __tablename__ = "volume_services"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    backend: Mapped[str] = mapped_column(String(64))
    availability_zone: Mapped[str] = mapped_column(String(255))
    #: What the host's backend can do (``HostCapabilities``); None: a manager from before
    #: hosts reported it, taken to do everything.
    capabilities: Mapped[dict[str, Any] | None]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_up: Mapped[Created]
    created_at: Mapped[Created]
