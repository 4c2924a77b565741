"""Identity's tables. No other service reads them; they ask identity's API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from stratus.core.db.columns import TYPE_MAP, Created, IdentityId, Name, SerialKey


def new_id() -> str:
    return uuid.uuid4().hex


#: Identity's own ids: 32 hex digits when identity makes them, up to 64 characters when given.
IdKey = Annotated[str, mapped_column(String(64), primary_key=True, default=new_id)]


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class Domain(Base):
    __tablename__ = "domain"

    id: Mapped[IdKey]
    name: Mapped[Name] = mapped_column(unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Project(Base):
    __tablename__ = "project"
    __table_args__ = (UniqueConstraint("domain_id", "name"),)

    id: Mapped[IdKey]
    name: Mapped[str] = mapped_column(String(64))
    domain_id: Mapped[str] = mapped_column(ForeignKey("domain.id"), index=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("project.id"), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    tags: Mapped[list[str]] = mapped_column(default=list)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class User(Base):
    __tablename__ = "user"
    __table_args__ = (UniqueConstraint("domain_id", "name"),)

    id: Mapped[IdKey]
    name: Mapped[Name]
    domain_id: Mapped[str] = mapped_column(ForeignKey("domain.id"), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    password_hash: Mapped[str | None] = mapped_column(String(128))
    password_created_at: Mapped[dt.datetime | None]
    default_project_id: Mapped[IdentityId | None]
    description: Mapped[str] = mapped_column(Text, default="")
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[Created]


class Group(Base):
    __tablename__ = "group"
    __table_args__ = (UniqueConstraint("domain_id", "name"),)

    id: Mapped[IdKey]
    name: Mapped[str] = mapped_column(String(64))
    domain_id: Mapped[str] = mapped_column(ForeignKey("domain.id"), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class GroupMembership(Base):
    __tablename__ = "user_group_membership"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[str] = mapped_column(
        ForeignKey("group.id", ondelete="CASCADE"), primary_key=True, index=True)


class Role(Base):
    __tablename__ = "role"
    __table_args__ = (UniqueConstraint("domain_id", "name"),)

    id: Mapped[IdKey]
    name: Mapped[Name]
    #: Empty string for global roles (a NULL would defeat the unique constraint).
    domain_id: Mapped[IdentityId] = mapped_column(default="")
    description: Mapped[str] = mapped_column(Text, default="")
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ImpliedRole(Base):
    """Holding the prior role implies holding the implied one (admin → member → reader)."""

    __tablename__ = "implied_role"

    prior_role_id: Mapped[str] = mapped_column(
        ForeignKey("role.id", ondelete="CASCADE"), primary_key=True)
    implied_role_id: Mapped[str] = mapped_column(
        ForeignKey("role.id", ondelete="CASCADE"), primary_key=True)


class Assignment(Base):
    """A role granted to an actor (user or group) on a target (project, domain, system)."""

    __tablename__ = "assignment"
    __table_args__ = (Index("ix_assignment_target", "target_id"),)

    USER_PROJECT = "UserProject"
    GROUP_PROJECT = "GroupProject"
    USER_DOMAIN = "UserDomain"
    GROUP_DOMAIN = "GroupDomain"
    USER_SYSTEM = "UserSystem"
    GROUP_SYSTEM = "GroupSystem"

    type: Mapped[str] = mapped_column(String(16), primary_key=True)
    actor_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    target_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role_id: Mapped[str] = mapped_column(
        ForeignKey("role.id", ondelete="CASCADE"), primary_key=True, index=True)
    inherited: Mapped[bool] = mapped_column(Boolean, primary_key=True, default=False)


class Region(Base):
    __tablename__ = "region"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    parent_region_id: Mapped[str | None] = mapped_column(ForeignKey("region.id"))
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Service(Base):
    __tablename__ = "service"

    id: Mapped[IdKey]
    type: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[Name] = mapped_column(default="")
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Endpoint(Base):
    __tablename__ = "endpoint"

    id: Mapped[IdKey]
    service_id: Mapped[str] = mapped_column(
        ForeignKey("service.id", ondelete="CASCADE"), index=True)
    interface: Mapped[str] = mapped_column(String(8))
    region_id: Mapped[str | None] = mapped_column(ForeignKey("region.id"))
    url: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ApplicationCredential(Base):
    __tablename__ = "application_credential"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[IdKey]
    name: Mapped[Name]
    user_id: Mapped[str] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[IdentityId]
    secret_hash: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[dt.datetime | None]
    unrestricted: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Role ids delegated; the credential can never carry more than these.
    role_ids: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[Created]


class RevocationEvent(Base):
    """Tokens matching every non-null field and issued at or before ``issued_before`` are dead."""

    __tablename__ = "revocation_event"

    id: Mapped[SerialKey]
    user_id: Mapped[IdentityId | None] = mapped_column(index=True)
    project_id: Mapped[IdentityId | None] = mapped_column(index=True)
    domain_id: Mapped[IdentityId | None] = mapped_column(index=True)
    audit_id: Mapped[str | None] = mapped_column(String(32), index=True)
    audit_chain_id: Mapped[str | None] = mapped_column(String(32), index=True)
    issued_before: Mapped[dt.datetime]
    revoked_at: Mapped[Created] = mapped_column(index=True)
