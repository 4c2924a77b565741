"""What a boot asks the scheduler for."""

from __future__ import annotations

from dataclasses import dataclass, field

from stratus.compute.placement import DISK_GB, MEMORY_MB, VCPU


@dataclass(frozen=True)
class FlavorSpec:
    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int = 0
    swap_mb: int = 0
    extra_specs: dict[str, str] = field(default_factory=dict)

    @property
    def resources(self) -> dict[str, int]:
        disk = self.root_gb + self.ephemeral_gb + (self.swap_mb + 1023) // 1024
        return {VCPU: self.vcpus, MEMORY_MB: self.memory_mb, DISK_GB: disk}


@dataclass(frozen=True)
class RequestSpec:
    instance_uuid: str
    project_id: str
    flavor: FlavorSpec
    #: Image properties (``hw_architecture``, ``img_hv_type``, ...).
    image_properties: dict[str, str] = field(default_factory=dict)
    availability_zone: str | None = None
    #: Server group: "affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity".
    group_policy: str | None = None
    #: Hosts already holding members of the group.
    group_hosts: frozenset[str] = frozenset()
    #: Hosts not to use (those a reschedule already failed on).
    ignore_hosts: frozenset[str] = frozenset()
    #: The one host an admin asked for (unshelve at 2.91), or None.
    requested_host: str | None = None
