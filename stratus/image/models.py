"""The image service's tables. No other service reads them; they ask the Image API."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from stratus.core.db import utcnow
from stratus.core.db.columns import TYPE_MAP, Created, IdentityId, Name, UUIDKey


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class Image(Base):
    __tablename__ = "image"

    id: Mapped[UUIDKey]
    name: Mapped[Name | None] = mapped_column(index=True)
    owner: Mapped[IdentityId | None] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(30), index=True)
    visibility: Mapped[str] = mapped_column(String(20), index=True)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    os_hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    disk_format: Mapped[str | None] = mapped_column(String(20))
    container_format: Mapped[str | None] = mapped_column(String(20))
    size: Mapped[int | None] = mapped_column(BigInteger)
    virtual_size: Mapped[int | None] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(32))
    os_hash_algo: Mapped[str | None] = mapped_column(String(64))
    os_hash_value: Mapped[str | None] = mapped_column(String(128), index=True)
    min_disk: Mapped[int] = mapped_column(Integer, default=0)
    min_ram: Mapped[int] = mapped_column(Integer, default=0)
    #: Where the store keeps the data (never shown to API clients).
    location: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[Created] = mapped_column(index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)

    properties: Mapped[list[ImageProperty]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin")
    tags: Mapped[list[ImageTag]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin")
    members: Mapped[list[ImageMember]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="raise")


class ImageProperty(Base):
    """A free-form property (``hw_*``, ``os_*``, anything a client sets)."""

    __tablename__ = "image_property"

    image_id: Mapped[str] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"),
                                          primary_key=True)
    name: Mapped[Name] = mapped_column(primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ImageTag(Base):
    __tablename__ = "image_tag"

    image_id: Mapped[str] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"),
                                          primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)


class ImageMember(Base):
    """A project an image is shared with, and whether it accepted."""

    __tablename__ = "image_member"

    image_id: Mapped[str] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"),
                                          primary_key=True)
    member: Mapped[IdentityId] = mapped_column(primary_key=True, index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[Created]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MetadefNamespace(Base):
    """A namespace of Glance's metadata definitions catalog: which properties (keys, types,
    constraints) a kind of resource may carry, for clients that offer them (Horizon's
    "Update Metadata"). Its parts are small documents read whole, so they are JSON."""

    __tablename__ = "metadef_namespace"

    id: Mapped[UUIDKey]
    namespace: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(80))
    description: Mapped[str | None] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(String(20), default="private")
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[IdentityId | None]
    #: ``[{"name", "prefix"?, "properties_target"?, "created_at", "updated_at"}]``
    resource_type_associations: Mapped[list[Any]]
    #: Property name → its JSON-schema-like definition.
    properties: Mapped[dict[str, Any]]
    objects: Mapped[list[Any]]
    tags: Mapped[list[Any]]
    created_at: Mapped[Created] = mapped_column(index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
