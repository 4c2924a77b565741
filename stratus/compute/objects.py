"""What compute's units send each other over the bus (validated on receipt).

The compute agent never reads the database: the conductor hands it an ``InstanceRecord``
and applies the ``InstanceUpdate`` it sends back, checking the task state it expects.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Builds tried in all (first host and alternates) before an instance goes to ERROR;
#: ``attempt`` in the build messages counts towards it.
MAX_BUILD_ATTEMPTS = 3

#: The build's event on its host (Nova's name), started when the host takes the build up.
BUILD_EVENT = "compute__do_build_and_run_instance"

#: The system metadata key where a shelved-offloaded instance keeps the guest devices of
#: its volumes (JSON: volume id → device), which are then reserved with no host: the
#: unshelve attaches them there again, and the API shows them meanwhile.
VOLUME_DEVICES = "shelved_volume_devices"


def shelved_volume_devices(system_metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Volume id → device, as ``VOLUME_DEVICES`` records them (empty when none are)."""
    try:
        found = json.loads((system_metadata or {}).get(VOLUME_DEVICES) or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FlavorInfo(_Message):
    id: str
    name: str
    vcpus: int
    ram: int
    disk: int
    ephemeral: int = 0
    swap: int = 0
    extra_specs: dict[str, str] = Field(default_factory=dict)


class BuildRequest(_Message):
    """compute-api → scheduler: place and build these instances (one boot request)."""

    instance_uuids: list[str]
    project_id: str
    flavor: FlavorInfo
    image_properties: dict[str, str] = Field(default_factory=dict)
    availability_zone: str | None = None
    group_uuid: str | None = None
    #: The boot's ``adminPass``, for the servers' config drives (never stored).
    admin_password: str | None = Field(default=None, repr=False)


class UnshelveRequest(_Message):
    """compute-api → scheduler: place a shelved-offloaded instance again."""

    instance_uuid: str
    project_id: str
    flavor: FlavorInfo
    #: The snapshot to spawn from (None: a volume-backed server).
    image_id: str | None = None
    image_properties: dict[str, str] = Field(default_factory=dict)
    availability_zone: str | None = None
    #: A host an admin asked for (2.91).
    host: str | None = None


class BlockDevice(_Message):
    """One disk of a boot request besides the root disk (``stratus.compute.block_devices``
    makes these from ``block_device_mapping_v2`` and the flavor): a volume the host makes or
    attaches, or a local ephemeral or swap disk."""

    #: ``volume`` (attached through the volume service), ``ephemeral`` or ``swap`` (local).
    kind: str
    #: For volumes: ``blank``, ``volume`` (an existing one), ``snapshot`` or ``image``.
    source_type: str = "blank"
    #: The volume, snapshot or image id the disk comes from (None for blank disks).
    source_id: str | None = None
    #: GiB for volumes and ephemeral disks, MiB for swap (as Nova counts them); None: the
    #: size of the source.
    size: int | None = None
    #: The guest device, ``/dev/vdb`` and on.
    device_name: str
    boot_index: int | None = None
    delete_on_termination: bool = False
    guest_format: str | None = None
    tag: str | None = None
    volume_type: str | None = None


class InstanceRecord(_Message):
    """Everything a compute host needs to build or act on one instance."""

    uuid: str
    name: str
    hostname: str
    project_id: str
    user_id: str
    flavor: FlavorInfo
    image_ref: str
    key_data: str | None = None
    user_data: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    requested_networks: Any = None
    security_groups: list[str] = Field(default_factory=list)
    availability_zone: str | None = None
    #: As last recorded: the interfaces the network service bound (``VifInfo`` dicts).
    network_info: list[dict[str, Any]] = Field(default_factory=list)
    #: The disks besides the root disk, as the boot request (and flavor) asked for them.
    block_devices: list[BlockDevice] = Field(default_factory=list)
    vm_state: str
    task_state: str | None = None
    power_state: int = 0
    host: str | None = None
    deleted: bool = False
    #: Nova's system metadata: what compute keeps about the instance for itself
    #: (``shelved_image_id``, ...).
    system_metadata: dict[str, str] = Field(default_factory=dict)
    #: Whether the guest gets a config drive (the server's ``config_drive``).
    config_drive: bool = False
    #: What a config drive's documents name besides the above.
    key_name: str | None = None
    launch_index: int = 0
    reservation_id: str = ""


class VifIP(_Message):
    address: str
    version: int = 4
    subnet_id: str = ""
    cidr: str = ""
    gateway: str | None = None
    dns_nameservers: list[str] = Field(default_factory=list)
    #: The subnet's host routes: ``{"destination": cidr, "nexthop": ip}``.
    routes: list[dict[str, str]] = Field(default_factory=list)
    #: Whether the guest gets this address by DHCP (the subnet's ``enable_dhcp``).
    dhcp: bool = True
    #: Floating addresses that the network service translates to this one (``addresses``
    #: shows them as ``OS-EXT-IPS:type: floating``); refreshed on ``network-changed``.
    floating_ips: list[str] = Field(default_factory=list)


class VifInfo(_Message):
    """One of an instance's network interfaces as the network service bound it; a list of
    these is the instance's ``network_info`` (server ``addresses``, network_data.json, the
    driver's NICs)."""

    id: str  # the port id
    address: str  # MAC
    network_id: str
    network_name: str
    mtu: int = 1500
    #: ``bridge``: a tap (``devname``) the l2-agent put in ``bridge``.
    type: str = "bridge"
    devname: str = ""
    bridge: str = ""
    #: True when the compute host created the port (and so deletes it with the instance).
    preserve_on_delete: bool = False
    ips: list[VifIP] = Field(default_factory=list)
    #: The device tag the user gave the interface (``os-interface`` 2.49+).
    tag: str | None = None


class InstanceUpdate(_Message):
    """Fields a compute host may change; unset ones are left alone."""

    vm_state: str | None = None
    task_state: str | None = None
    power_state: int | None = None
    host: str | None = None
    node: str | None = None
    progress: int | None = None
    launched_at: dt.datetime | None = None
    network_info: list[dict[str, Any]] | None = None
    #: Replaces the system metadata whole.
    system_metadata: dict[str, str] | None = None
    #: Set task_state to None explicitly (None above means "leave it").
    clear_task_state: bool = False


class ActionEvent(_Message):
    """A step of an instance action (``os-instance-actions`` events), started or finished."""

    name: str
    host: str | None = None
    finished: bool = False
    result: str | None = None
    details: str | None = None


class Fault(_Message):
    code: int = 500
    message: str
    details: str = ""


class HostReport(_Message):
    """A compute host's heartbeat and inventory (periodic, and on start)."""

    host: str
    zone: str = "nova"
    hypervisor_type: str
    hypervisor_version: int
    cpu_arch: str = "x86_64"
    vcpus: int
    memory_mb: int
    local_gb: int
    cpu_allocation_ratio: float = 16.0
    ram_allocation_ratio: float = 1.5
    disk_allocation_ratio: float = 1.0
    reserved_host_memory_mb: int = 512
    running_guests: list[str] = Field(default_factory=list)
    #: Answer with the live instances the database puts on the host (the start's report:
    #: the agent reconciles its guests with them). A periodic heartbeat ignores the answer
    #: and says False: the list was a read of every server of the host on every report
    #: (1,000 rows a host every 10 s at 10,000 servers on 10 hosts), the cloud's idle cost
    #: growing with its servers. Conductors read it before agents send it (upgrade order).
    with_instances: bool = True


class ExternalEvent(_Message):
    """An event another service reported about an instance (``os-server-external-events``),
    as compute-api casts it to the instance's host."""

    name: str
    tag: str | None = None
    #: ``completed``, ``failed`` or ``in-progress``.
    status: str = "completed"
    data: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """What a waiter names: ``<name>:<tag>``, or the bare name for untagged events."""
        return f"{self.name}:{self.tag}" if self.tag else self.name


class InstanceStates(_Message):
    """The states of an instance the database puts on a host (for power-state sync)."""

    uuid: str
    vm_state: str
    task_state: str | None = None
    power_state: int = 0


class MigrationRecord(_Message):
    """One move of a server between hosts, as its hosts need it."""

    uuid: str
    instance_uuid: str
    migration_type: str
    status: str
    source_compute: str | None = None
    dest_compute: str | None = None
    old_flavor: FlavorInfo
    new_flavor: FlavorInfo
    old_vm_state: str


class MoveStep(_Message):
    """conductor → a host moving a server: the migration and the server after one step
    (``ConductorAPI.move_step``), so the host needs no other read."""

    migration: MigrationRecord
    instance: InstanceRecord


class MoveClaim(_Message):
    """compute-api → scheduler: find a host for a moving server and claim on it.

    The server's claim on its source becomes the migration's (``migration_uuid`` as the
    consumer), or is dropped when ``free_source`` (an evacuation from a dead host); the
    server then claims ``flavor`` on the chosen host."""

    instance_uuid: str
    migration_uuid: str
    project_id: str
    flavor: FlavorInfo
    source_host: str
    #: The one host asked for (an admin's ``host``), or None for the scheduler's choice.
    requested_host: str | None = None
    #: Skip the filters for ``requested_host`` (``force``): only the claim must fit.
    force: bool = False
    #: The source itself may be chosen (a resize on a one-host cloud).
    allow_same_host: bool = False
    free_source: bool = False
    #: The action event the scheduler records (``conductor_migrate_server``, ...).
    event: str = "conductor_migrate_server"
    availability_zone: str | None = None
    image_properties: dict[str, str] = Field(default_factory=dict)


class MoveClaimResult(_Message):
    """The host claimed on, or why none could be (``host`` None)."""

    host: str | None = None
    reason: str = ""


class LiveMigrationProgress(_Message):
    """What the hypervisor reports of a live migration under way (bytes)."""

    memory_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    disk_total: int = 0
    disk_processed: int = 0
    disk_remaining: int = 0
