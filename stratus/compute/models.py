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

from stratus.core.db.columns import TYPE_MAP, Created, IdentityId, Name, SerialKey, UUIDKey
from stratus.core.db.partial_index import PostgresqlPartialIndex


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


class Flavor(Base):
    __tablename__ = "flavor"

    #: Nova's public flavor id (``flavorid``): any string, a UUID when the client gives none.
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[Name] = mapped_column(unique=True)
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
    created_at: Mapped[Created]


class FlavorAccess(Base):
    """Projects allowed to use a private flavor."""

    __tablename__ = "flavor_access"

    flavor_id: Mapped[str] = mapped_column(
        ForeignKey("flavor.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[IdentityId] = mapped_column(primary_key=True, index=True)


class KeyPair(Base):
    __tablename__ = "key_pair"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[SerialKey]
    user_id: Mapped[IdentityId] = mapped_column(index=True)
    name: Mapped[Name]
    type: Mapped[str] = mapped_column(String(8), default="ssh")
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[Created]


class ComputeServiceRecord(Base):
    """One running unit (``nova-compute``, ``nova-scheduler``, ...) and its heartbeat."""

    __tablename__ = "compute_service"
    __table_args__ = (UniqueConstraint("host", "binary"),)

    id: Mapped[SerialKey]
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str] = mapped_column(String(255))
    zone: Mapped[str] = mapped_column(String(255), default="nova")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    forced_down: Mapped[bool] = mapped_column(Boolean, default=False)
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    last_seen_up: Mapped[dt.datetime | None]
    created_at: Mapped[Created]
    updated_at: Mapped[dt.datetime | None]


class Aggregate(Base):
    """A host aggregate (``os-aggregates``): a named set of compute hosts and metadata (its
    availability zone is the ``availability_zone`` key, as in Nova). Its hosts' resource
    providers carry the merged metadata of their aggregates for the scheduler."""

    __tablename__ = "compute_aggregate"

    id: Mapped[SerialKey]
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[Name] = mapped_column(unique=True)
    hosts: Mapped[list[str]] = mapped_column(default=list)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", default=dict)
    created_at: Mapped[Created]
    updated_at: Mapped[dt.datetime | None]


class ResourceProvider(Base):
    """A compute node's resources; ``generation`` changes with every claim against it."""

    __tablename__ = "resource_provider"

    uuid: Mapped[UUIDKey]
    name: Mapped[Name] = mapped_column(unique=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    hypervisor_type: Mapped[str] = mapped_column(String(64), default="fake")
    cpu_arch: Mapped[str] = mapped_column(String(32), default="x86_64")
    #: Aggregate metadata that applies to this host (key → value).
    aggregate_metadata: Mapped[dict[str, str]] = mapped_column(default=dict)
    updated_at: Mapped[dt.datetime | None]


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
    #: With ``used`` in it, a provider's usage (each claim) and every provider's (the
    #: scheduler's host states) are summed from the index alone, however many servers.
    __table_args__ = (Index("ix_allocation_provider_class_used", "provider_uuid",
                            "resource_class", "used"),)

    consumer_uuid: Mapped[UUIDKey]
    provider_uuid: Mapped[str] = mapped_column(
        ForeignKey("resource_provider.uuid", ondelete="CASCADE"), primary_key=True)
    resource_class: Mapped[str] = mapped_column(String(32), primary_key=True)
    used: Mapped[int] = mapped_column(Integer)


class Instance(Base):
    """A server. Deleted servers keep their row (``deleted_at`` set) for ``changes-since``."""

    __tablename__ = "instance"
    __table_args__ = (
        # A project's live servers in the lists' default order (created_at, then uuid,
        # both desc): a page, the first or one after a marker, is a range of this index,
        # not a sort of every row.
        Index("ix_instance_project_live", "project_id", "deleted_at", "created_at", "uuid",
              "vcpus", "memory_mb"),
        # The quota usage (count, vcpus and memory_mb of the live servers) from the live
        # servers' entries alone, each only what the sum reads: at 10,000 servers 11 pages
        # (entries alike within a flavor are deduplicated) where the one above is 289.
        # PostgreSQL only: SQLite's sum costs per row, not per page, and is no faster.
        PostgresqlPartialIndex("ix_instance_project_usage", "project_id", "vcpus", "memory_mb",
                               where="deleted_at IS NULL"),
        # The same order over the live servers alone, for PostgreSQL: its planner does not
        # take ``deleted_at IS NULL`` as fixing that column of the index above, so it would
        # sort the project's live servers for every page; this one it reads backwards.
        # PostgreSQL only: SQLite pages off the index above and would only write this one.
        PostgresqlPartialIndex("ix_instance_project_live_order", "project_id", "created_at", "uuid",
                               where="deleted_at IS NULL"),
        Index("ix_instance_host", "host"),
    )

    uuid: Mapped[UUIDKey]
    display_name: Mapped[Name]
    display_description: Mapped[str | None] = mapped_column(Text)
    hostname: Mapped[Name] = mapped_column(default="")
    project_id: Mapped[IdentityId]
    user_id: Mapped[IdentityId]
    reservation_id: Mapped[str] = mapped_column(String(64), index=True)
    launch_index: Mapped[int] = mapped_column(Integer, default=0)
    image_ref: Mapped[str] = mapped_column(String(255), default="")
    flavor_id: Mapped[str] = mapped_column(String(255))
    #: The flavor's vCPUs and RAM again as columns, so quota usage is one SQL sum.
    vcpus: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    memory_mb: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: The flavor as it was at boot (name, vcpus, ram, disk, ephemeral, swap, extra_specs).
    flavor: Mapped[dict[str, Any]] = mapped_column(default=dict)
    key_name: Mapped[Name | None]
    key_data: Mapped[str | None] = mapped_column(Text)
    user_data: Mapped[str | None] = mapped_column(Text)
    server_metadata: Mapped[dict[str, str]] = mapped_column(default=dict)
    #: Nova's system metadata: what compute records for itself (``shelved_image_id``, ...).
    system_metadata: Mapped[dict[str, str]] = mapped_column(default=dict, server_default="{}")
    tags: Mapped[list[str]] = mapped_column(default=list)
    availability_zone: Mapped[str | None] = mapped_column(String(255))
    #: As requested: ``"auto"``, ``"none"`` or a list of {uuid, port, fixed_ip}.
    requested_networks: Mapped[Any] = mapped_column(JSON, nullable=True)
    security_groups: Mapped[list[str]] = mapped_column(default=list)
    #: Network info as the network service bound it (addresses, MACs, network names).
    network_info: Mapped[list[Any]] = mapped_column(default=list)
    #: The disks besides the root disk (``objects.BlockDevice`` dicts), as the boot asked.
    block_device_mapping: Mapped[list[Any]] = mapped_column(default=list,
                                                            server_default="[]")
    config_drive: Mapped[str] = mapped_column(String(8), default="")
    access_ip_v4: Mapped[str | None] = mapped_column(String(64))
    access_ip_v6: Mapped[str | None] = mapped_column(String(64))
    vm_state: Mapped[str] = mapped_column(String(32))
    task_state: Mapped[str | None] = mapped_column(String(64))
    power_state: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    host: Mapped[str | None] = mapped_column(String(255))
    node: Mapped[str | None] = mapped_column(String(255))
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    locked_reason: Mapped[str | None] = mapped_column(Text)
    #: Whose lock it is: ``owner`` (the server's project) or ``admin`` (another's admin).
    locked_by: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[Created]
    updated_at: Mapped[dt.datetime | None]
    launched_at: Mapped[dt.datetime | None]
    terminated_at: Mapped[dt.datetime | None]
    deleted_at: Mapped[dt.datetime | None]


class InstanceFault(Base):
    __tablename__ = "instance_fault"

    id: Mapped[SerialKey]
    instance_uuid: Mapped[str] = mapped_column(
        ForeignKey("instance.uuid", ondelete="CASCADE"), index=True)
    code: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(String(255))
    details: Mapped[str] = mapped_column(Text, default="")
    host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[Created]


class InstanceAction(Base):
    """One API request that acted on a server (``os-instance-actions``)."""

    __tablename__ = "instance_action"
    __table_args__ = (UniqueConstraint("instance_uuid", "request_id"),)

    id: Mapped[SerialKey]
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    request_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[IdentityId]
    user_id: Mapped[IdentityId]
    message: Mapped[str | None] = mapped_column(String(255))
    start_time: Mapped[Created]
    finish_time: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime | None]


class InstanceActionEvent(Base):
    """One step of an action (``compute__do_build_and_run_instance``, ...)."""

    __tablename__ = "instance_action_event"

    id: Mapped[SerialKey]
    action_id: Mapped[int] = mapped_column(
        ForeignKey("instance_action.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    result: Mapped[str | None] = mapped_column(String(32))
    details: Mapped[str | None] = mapped_column(Text)
    start_time: Mapped[Created]
    finish_time: Mapped[dt.datetime | None]


class InstancePassword(Base):
    """The encrypted password a guest posted to the metadata service (Nova keeps it in the
    instance's system metadata); read with ``os-server-password``."""

    __tablename__ = "instance_password"

    instance_uuid: Mapped[UUIDKey]
    password: Mapped[str] = mapped_column(Text)
    created_at: Mapped[Created]


class ServerGroup(Base):
    __tablename__ = "server_group"

    uuid: Mapped[UUIDKey]
    name: Mapped[Name]
    policy: Mapped[str] = mapped_column(String(32))
    rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    project_id: Mapped[IdentityId] = mapped_column(index=True)
    user_id: Mapped[IdentityId]
    created_at: Mapped[Created]


class ServerGroupMember(Base):
    __tablename__ = "server_group_member"

    group_uuid: Mapped[str] = mapped_column(
        ForeignKey("server_group.uuid", ondelete="CASCADE"), primary_key=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)


class QuotaLimit(Base):
    """A project's override of a default quota (``os-quota-sets``)."""

    __tablename__ = "quota_limit"

    project_id: Mapped[IdentityId] = mapped_column(primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class ConsoleAuthToken(Base):
    """A one-time console token (``stratus.compute.console_tokens``): only its SHA-256 is
    kept, bound to the guest's console endpoint on its host, until used or expired."""

    __tablename__ = "console_auth_token"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    instance_uuid: Mapped[str] = mapped_column(String(36), index=True)
    #: ``novnc`` or ``serial``: the console type the token was minted for.
    console_type: Mapped[str] = mapped_column(String(32))
    host: Mapped[Name]
    port: Mapped[int | None] = mapped_column(Integer)
    #: Where on the host the console is when it is no TCP port (a serial pty's path).
    internal_access_path: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    created_at: Mapped[Created]


class Migration(Base):
    """One move of a server between hosts (resize, cold or live migration, evacuation):
    ``os-migrations`` and ``servers/{id}/migrations``. While a move is under way the
    resources the server held on its source stay claimed with this row's ``uuid`` as their
    consumer; the server itself holds the claim on the destination."""

    __tablename__ = "migration"
    __table_args__ = (
        Index("ix_migration_instance_status", "instance_uuid", "status"),
        Index("ix_migration_updated", "updated_at"),
    )

    id: Mapped[SerialKey]
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    instance_uuid: Mapped[str] = mapped_column(String(36))
    #: ``resize``, ``migration`` (cold), ``live-migration`` or ``evacuation``.
    migration_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    source_compute: Mapped[str | None] = mapped_column(String(255))
    source_node: Mapped[str | None] = mapped_column(String(255))
    dest_compute: Mapped[str | None] = mapped_column(String(255))
    dest_node: Mapped[str | None] = mapped_column(String(255))
    dest_host: Mapped[str | None] = mapped_column(String(255))
    #: The flavors before and after (``FlavorInfo`` dicts); the same for a migration.
    old_flavor: Mapped[dict[str, Any]] = mapped_column(default=dict)
    new_flavor: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: The server's vm_state when the move began (a stopped server comes back stopped).
    old_vm_state: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[IdentityId]
    user_id: Mapped[IdentityId]
    #: Live migrations: progress as the hypervisor reports it.
    memory_total: Mapped[int | None] = mapped_column(Integer)
    memory_processed: Mapped[int | None] = mapped_column(Integer)
    memory_remaining: Mapped[int | None] = mapped_column(Integer)
    disk_total: Mapped[int | None] = mapped_column(Integer)
    disk_processed: Mapped[int | None] = mapped_column(Integer)
    disk_remaining: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[Created]
    updated_at: Mapped[dt.datetime | None]
