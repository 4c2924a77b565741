"""The guest a compute host asks its driver for, from the instance the conductor gave it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stratus.compute.metadata import config_drive
from stratus.compute.metadata.content import InstanceData
from stratus.compute.objects import FlavorInfo, InstanceRecord
from stratus.compute.virt.driver import GuestSpec, LocalDisk
from stratus.core.images_cache import CachedImage


def guest_spec(instance: InstanceRecord, image: CachedImage | None,
               network_info: list[dict[str, Any]],
               block_devices: list[dict[str, Any]], *,
               flavor: FlavorInfo | None = None,
               image_location: tuple[str, str] | None = None,
               drive: DriveOptions | None = None,
               admin_pass: str | None = None) -> GuestSpec:
    """What the driver is to create for ``instance`` (a build, a rebuild, an unshelve, a
    move), of its own flavor or of ``flavor`` (a resize's new one); ``image_location``:
    where the image lies and its disk format, when the driver uses it there instead of
    ``image``. An instance with a config drive gets its files (``admin_pass`` in its
    ``meta_data.json`` when given: a build's ``adminPass``)."""
    flavor = flavor or instance.flavor
    return GuestSpec(
        uuid=instance.uuid, name=instance.name, vcpus=flavor.vcpus, memory_mb=flavor.ram,
        root_gb=flavor.disk, network_info=network_info,
        image_path=image.path if image else None,
        image_format=(image.disk_format if image else
                      image_location[1] if image_location else None),
        image_location=image_location[0] if image_location else None,
        block_devices=block_devices,
        local_disks=local_disks(instance),
        metadata={"hostname": instance.hostname, **instance.metadata},
        config_drive=(config_drive.files(instance_data(instance, drive), admin_pass)
                      if instance.config_drive else None))


@dataclass(frozen=True)
class DriveOptions:
    """What a host makes config drives' documents with."""

    #: What host names end with (the metadata service's ``dhcp_domain``).
    dhcp_domain: str = "novalocal"
    #: The host's zone, for an instance given none.
    zone: str = "nova"


def instance_data(instance: InstanceRecord, drive: DriveOptions | None = None) -> InstanceData:
    """What a config drive's documents are made of: the metadata service's, from the
    instance the conductor gave this host."""
    drive = drive or DriveOptions()
    return InstanceData(
        uuid=instance.uuid, name=instance.name, hostname=instance.hostname,
        project_id=instance.project_id, launch_index=instance.launch_index,
        availability_zone=instance.availability_zone or drive.zone,
        reservation_id=instance.reservation_id, image_ref=instance.image_ref,
        flavor_name=instance.flavor.name, ephemeral_gb=instance.flavor.ephemeral,
        swap_mb=instance.flavor.swap, metadata=dict(instance.metadata),
        key_name=instance.key_name, key_data=instance.key_data, user_data=instance.user_data,
        security_groups=tuple(instance.security_groups),
        network_info=tuple(instance.network_info), dhcp_domain=drive.dhcp_domain)


def local_disks(instance: InstanceRecord) -> list[LocalDisk]:
    """The ephemeral and swap disks the driver makes (sizes: GiB, swap MiB, as Nova's)."""
    return [LocalDisk(kind=d.kind, device=d.device_name,
                      size_mb=(d.size or 0) * (1 if d.kind == "swap" else 1024),
                      guest_format=d.guest_format)
            for d in instance.block_devices if d.kind in ("ephemeral", "swap")]
