"""The guest a compute host asks its driver for, from the instance the conductor gave it."""

from __future__ import annotations

from typing import Any

from stratus.compute.objects import FlavorInfo, InstanceRecord
from stratus.compute.virt.driver import GuestSpec, LocalDisk
from stratus.core.images_cache import CachedImage


def guest_spec(instance: InstanceRecord, image: CachedImage | None,
               network_info: list[dict[str, Any]],
               block_devices: list[dict[str, Any]], *,
               flavor: FlavorInfo | None = None,
               image_location: tuple[str, str] | None = None) -> GuestSpec:
    """What the driver is to create for ``instance`` (a build, a rebuild, an unshelve, a
    move), of its own flavor or of ``flavor`` (a resize's new one); ``image_location``:
    where the image lies and its disk format, when the driver uses it there instead of
    ``image``."""
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
        metadata={"hostname": instance.hostname, **instance.metadata})


def local_disks(instance: InstanceRecord) -> list[LocalDisk]:
    """The ephemeral and swap disks the driver makes (sizes: GiB, swap MiB, as Nova's)."""
    return [LocalDisk(kind=d.kind, device=d.device_name,
                      size_mb=(d.size or 0) * (1 if d.kind == "swap" else 1024),
                      guest_format=d.guest_format)
            for d in instance.block_devices if d.kind in ("ephemeral", "swap")]
