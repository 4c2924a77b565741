"""Which virt driver a compute agent runs: the configured one, or the best one usable here.

``compute.virt_driver`` unset means auto for the operator's command: ``stratus up`` and
``stratus serve`` call ``choose_driver`` (libvirt when libvirt-python imports, QEMU is
installed and libvirtd answers or can be started; otherwise fake) and log the decision, so an
operator knows whether guests are real. A stack embedded in a program (tests, scripts,
profilers) with it unset runs the fake driver (``embedded_choice``): real guests are never
started by surprise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from stratus.compute.virt.driver import HypervisorUnavailable, VirtDriver
from stratus.core.config import Settings

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriverChoice:
    name: str  # "fake" or "libvirt"
    reason: str


def instances_path(settings: Settings) -> Path:
    return settings.compute.instances_path or settings.data_dir / "instances"


def image_cache_path(settings: Settings) -> Path:
    return settings.compute.image_cache_path or settings.data_dir / "image-cache"


def libvirt_driver(settings: Settings) -> VirtDriver:
    from stratus.compute.virt.libvirt import LibvirtDriver

    options = settings.compute
    ceph = None
    if options.images_type == "rbd" or settings.volume.backend == "rbd":
        from stratus.compute.virt.libvirt.rbd_disks import RbdDisks

        ceph = RbdDisks(settings.ceph, pool=options.images_rbd_pool,
                        secret_uuid=options.rbd_secret_uuid or settings.volume.rbd_secret_uuid)
    return LibvirtDriver(instances_path(settings), uri=options.libvirt_uri,
                         virt_type=options.virt_type,
                         shutdown_timeout=options.shutdown_timeout,
                         migration_uri=options.live_migration_uri, ceph=ceph,
                         images_type=options.images_type)


async def choose_driver(settings: Settings) -> DriverChoice:
    """The driver to run; for auto, libvirt is probed (and its daemons started) here."""
    requested = settings.compute.virt_driver
    if requested is not None:
        return DriverChoice(requested, "configured (compute.virt_driver)")
    from stratus.compute.virt.libvirt import host

    reason = host.usable()
    if reason is None:
        probe = libvirt_driver(settings)
        try:
            await probe.init_host(settings.compute.host or "probe")
        except HypervisorUnavailable as exc:
            reason = str(exc)
        else:
            kind = getattr(probe, "virt_type", None)
            await probe.cleanup_host()
            choice = DriverChoice("libvirt", f"usable here, virt_type={kind}")
            LOG.info("virt driver: %s, %s", choice.name, choice.reason)
            return choice
    choice = DriverChoice("fake", f"libvirt is not usable: {reason}")
    LOG.warning("virt driver: fake (no real guests): %s", reason)
    return choice


def embedded_choice(settings: Settings) -> DriverChoice:
    """The driver of a stack built in-process: as configured, else fake (no probing)."""
    requested = settings.compute.virt_driver
    if requested is not None:
        return DriverChoice(requested, "configured (compute.virt_driver)")
    return DriverChoice("fake", "compute.virt_driver is unset (the stratus command picks "
                                "libvirt where usable)")
