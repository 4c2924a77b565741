"""The contract every hypervisor driver meets; the compute agent knows nothing else of them.

All methods are coroutines. ``destroy`` is idempotent (destroying a guest that is gone is
not an error), so deletes and clean-ups after failed builds can always be retried.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratus.compute.console_types import ConsoleEndpoint, ConsoleKind, ConsoleUnavailable


class PowerState(enum.IntEnum):
    """Nova's power states, as the API reports them (2 and 5 are unused)."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


class VirtError(Exception):
    """A driver operation failed; the message is safe to show as an instance fault."""


class GuestNotFound(VirtError):
    pass


class HypervisorUnavailable(VirtError):
    pass


class AgentNotEnabled(VirtError):
    """The guest has no agent to take the request (a password, ...)."""


@dataclass(frozen=True)
class LocalDisk:
    """An ephemeral or swap disk in the instance's own directory."""

    #: ``ephemeral`` or ``swap``.
    kind: str
    #: The guest device, ``/dev/vdb`` and on.
    device: str
    size_mb: int
    #: A file system to make on it (``swap`` for swap); None leaves it blank.
    guest_format: str | None = None


@dataclass(frozen=True)
class GuestSpec:
    """Everything a driver needs to create one guest."""

    uuid: str
    name: str
    vcpus: int
    memory_mb: int
    root_gb: int
    image_path: Path | None = None
    #: The image's ``disk_format`` (qcow2, raw, ...) as the image service records it.
    image_format: str | None = None
    network_info: list[dict[str, Any]] = field(default_factory=list)
    #: Volumes: ``{"mountpoint": "/dev/vdb", "connection_info": {...}, "volume_id",
    #: "tag"}``; the one at ``/dev/vda`` (if any) is the root disk.
    block_devices: list[dict[str, Any]] = field(default_factory=list)
    #: Local disks the driver makes with the guest, and removes with it.
    local_disks: list[LocalDisk] = field(default_factory=list)
    #: Where the image's data lies when the driver may use it there rather than from a
    #: local copy (the image's ``direct_url``, an ``rbd://`` location; see
    #: ``VirtDriver.can_clone_image``).
    image_location: str | None = None
    #: For a config drive or injection; the metadata service serves the same.
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The files of the guest's config drive by path (``openstack/latest/meta_data.json``,
    #: ...; ``stratus.compute.metadata.config_drive``); None: the guest has none.
    config_drive: dict[str, bytes] | None = field(default=None, repr=False)


class MigrationAborted(VirtError):
    """A live migration was aborted on request (the guest stays on its source)."""


@dataclass(frozen=True)
class MigrationProgress:
    """A live migration's progress as the hypervisor reports it (bytes)."""

    memory_total: int = 0
    memory_processed: int = 0
    memory_remaining: int = 0
    disk_total: int = 0
    disk_processed: int = 0
    disk_remaining: int = 0


#: Told each time the hypervisor reports how far a live migration got.
ProgressCallback = Callable[[MigrationProgress], Awaitable[None]]


@dataclass(frozen=True)
class RescueSpec:
    """What a rescue boots: the rescue image (a local file for drivers that need one) and
    the password the rescue system is meant to have."""

    image_path: Path | None = None
    image_format: str | None = None
    admin_password: str = field(default="", repr=False)
    #: The rescue's own config drive (its ``meta_data.json`` with ``admin_pass``), for a
    #: guest that has one; None: the rescue boots without one.
    config_drive: dict[str, bytes] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DiskSnapshot:
    """A guest's root disk, extracted to a local file the caller uploads, then removes."""

    path: Path
    disk_format: str


@dataclass(frozen=True)
class StoredSnapshot:
    """A guest's root disk made an image's data where the image store keeps it."""

    location: str
    disk_format: str


@dataclass(frozen=True)
class HostResources:
    """What a host offers, reported as the inventories of its resource provider."""

    hostname: str
    vcpus: int
    memory_mb: int
    local_gb: int
    hypervisor_type: str
    hypervisor_version: int
    cpu_arch: str = "x86_64"


@dataclass(frozen=True)
class GuestInfo:
    power_state: PowerState
    vcpus: int
    memory_mb: int


class VirtDriver(abc.ABC):
    #: The name the driver is chosen by in configuration (``fake``, ``libvirt``).
    name: str
    #: True when ``spawn`` needs the image's bits on this host (``GuestSpec.image_path``);
    #: the agent then fetches the image into its cache first.
    needs_image_file: bool = False
    #: True when ``spawn`` may use some images where they lie (``can_clone_image``): the
    #: agent then reads the image's location before fetching it.
    clones_images: bool = False

    async def can_clone_image(self, location: str | None, disk_format: str | None) -> bool:
        """Whether ``spawn`` makes the root disk from the image at ``location`` (its
        ``direct_url``) without a local copy (``GuestSpec.image_location``)."""
        del location, disk_format
        return False

    async def init_host(self, host: str) -> None:  # noqa: B027 - optional hook
        """Prepare the hypervisor connection; raise ``HypervisorUnavailable`` if unusable."""

    async def cleanup_host(self) -> None:  # noqa: B027 - optional hook
        """Release connections when the agent stops."""

    @abc.abstractmethod
    async def get_available_resource(self) -> HostResources: ...

    @abc.abstractmethod
    async def list_guests(self) -> list[str]:
        """The uuids of every guest the hypervisor has, whatever the database says."""

    async def prepare(self, guest: GuestSpec) -> None:  # noqa: B027 - optional hook
        """Start making, in the background, what ``spawn`` of ``guest`` will need that does
        not depend on its network or volumes (a driver's local root disk), while the host
        allocates them; returns at once. ``guest`` has no ``network_info`` or
        ``block_devices`` yet. ``spawn`` of the same guest uses (and waits for) what was
        made, and reports its failure as its own; ``destroy`` waits for it, then removes
        it. A driver that has nothing to get ahead with does nothing."""

    @abc.abstractmethod
    async def spawn(self, guest: GuestSpec) -> None:
        """Create and start the guest; on failure nothing of it is left behind."""

    async def spawn_when(self, guest: GuestSpec,
                         wired: Callable[[], Awaitable[None]]) -> None:
        """``spawn`` the guest once ``wired()`` returns (its ports are plugged; its error is
        the spawn's). A driver may make the guest meanwhile, as Nova's libvirt driver starts
        it paused, as long as none of the guest's code runs before ``wired()`` returned;
        a failure leaves what was made to ``destroy``. Default: wait, then spawn."""
        await wired()
        await self.spawn(guest)

    @abc.abstractmethod
    async def destroy(self, uuid: str, *, keep_shared_disk: bool = False) -> None:
        """Stop and remove the guest and its local files; no error if it is gone. With
        ``keep_shared_disk`` a root disk on storage the hosts share (RBD) stays: the guest
        is going back to the host it came from, which uses that disk."""

    @abc.abstractmethod
    async def power_off(self, uuid: str, grace_period: float = 60.0) -> None:
        """Shut the guest down, giving it ``grace_period`` seconds before pulling the plug."""

    @abc.abstractmethod
    async def power_on(self, uuid: str) -> None: ...

    @abc.abstractmethod
    async def reboot(self, uuid: str, *, hard: bool) -> None: ...

    @abc.abstractmethod
    async def get_info(self, uuid: str) -> GuestInfo:
        """The guest's state; ``GuestNotFound`` if the hypervisor has no such guest."""

    @abc.abstractmethod
    async def get_console_output(self, uuid: str) -> str: ...

    @abc.abstractmethod
    async def snapshot(self, uuid: str) -> DiskSnapshot:
        """The guest's root disk as a standalone qcow2 file (no backing file) in the
        driver's scratch space, for the caller to upload and then remove; consistent even
        while the guest runs, and the guest keeps its power state. A guest booted from a
        volume has no local disk: ``VirtError``."""

    async def direct_snapshot(self, uuid: str, image_id: str) -> StoredSnapshot | None:
        """The guest's root disk made image ``image_id``'s data where the image store keeps
        it, no byte passing through this host (RBD: a flattened clone in the store's pool),
        consistent while the guest runs, which keeps its power state; its location and
        format for the image service. None when the driver cannot: the caller takes
        ``snapshot``."""
        return None

    async def remove_direct_snapshot(self, location: str) -> None:  # noqa: B027 - optional
        """Remove what ``direct_snapshot`` made at ``location`` (no image took it)."""

    async def attach_volume(self, uuid: str, connection_info: dict[str, Any],
                            mountpoint: str) -> None:
        """Attach a volume (``connection_info`` from the volume service, e.g.
        ``{"driver_volume_type": "file", "data": {"path": ...}}``) as ``mountpoint``
        (``/dev/vdb``)."""
        raise NotImplementedError(f"the {self.name} driver cannot attach volumes")

    async def detach_volume(self, uuid: str, connection_info: dict[str, Any],
                            mountpoint: str) -> None:
        """Detach what ``attach_volume`` attached at ``mountpoint``; no error if it is gone."""
        raise NotImplementedError(f"the {self.name} driver cannot detach volumes")

    # Moves between hosts (resize, cold and live migration). A cold move runs in two
    # halves: ``migrate_disk_and_power_off`` on the source keeps the guest aside (stopped,
    # its disk intact) and says where its disk is; ``finish_migration`` on the destination
    # (perhaps the same host) makes the guest of the new flavor from that disk. Then
    # ``confirm_migration`` on the source drops what was kept aside, or the destination's
    # guest is destroyed and ``finish_revert_migration`` on the source brings it back.

    async def migrate_disk_and_power_off(self, uuid: str, dest_host: str) -> dict[str, Any]:
        """Stop the guest and keep it aside for a move; what ``finish_migration`` needs to
        find its disk (``disk_info``)."""
        raise NotImplementedError(f"the {self.name} driver cannot migrate guests")

    async def finish_migration(self, guest: GuestSpec, disk_info: dict[str, Any], *,
                               power_on: bool) -> None:
        """Create the moved guest from ``disk_info`` with ``guest``'s (new) flavor; started
        when ``power_on``."""
        raise NotImplementedError(f"the {self.name} driver cannot migrate guests")

    async def confirm_migration(self, uuid: str) -> None:
        """Drop what ``migrate_disk_and_power_off`` kept aside; no error if it is gone."""
        raise NotImplementedError(f"the {self.name} driver cannot migrate guests")

    async def finish_revert_migration(self, uuid: str, *, power_on: bool) -> None:
        """Bring back the guest ``migrate_disk_and_power_off`` kept aside, as it was."""
        raise NotImplementedError(f"the {self.name} driver cannot migrate guests")

    async def pre_live_migration(self, guest: GuestSpec,
                                 source_data: dict[str, Any]) -> dict[str, Any]:
        """On the destination: get ready to receive the guest (its directory, disks);
        what the source needs to send it there (``migrate_data``)."""
        raise NotImplementedError(f"the {self.name} driver cannot live-migrate guests")

    async def live_migration_source_data(self, uuid: str) -> dict[str, Any]:
        """On the source: what the destination's ``pre_live_migration`` needs (disk sizes,
        backing files)."""
        return {}

    async def live_migration(self, uuid: str, dest_host: str, migrate_data: dict[str, Any],
                             on_progress: ProgressCallback | None = None) -> None:
        """Move the running guest to ``dest_host``; ``MigrationAborted`` if aborted. On
        success the guest runs there and is gone from here."""
        raise NotImplementedError(f"the {self.name} driver cannot live-migrate guests")

    async def post_live_migration_at_destination(self, uuid: str) -> None:
        """On the destination, after the move: the guest is this host's now."""
        raise NotImplementedError(f"the {self.name} driver cannot live-migrate guests")

    async def rollback_live_migration_at_destination(self, uuid: str) -> None:
        """On the destination, after a failed move: remove what was prepared."""
        raise NotImplementedError(f"the {self.name} driver cannot live-migrate guests")

    async def live_migration_abort(self, uuid: str) -> None:
        """Abort the guest's live migration under way (it stays on its source)."""
        raise NotImplementedError(f"the {self.name} driver cannot live-migrate guests")

    async def live_migration_force_complete(self, uuid: str) -> None:
        """Make the guest's live migration under way converge (pause it meanwhile)."""
        raise NotImplementedError(f"the {self.name} driver cannot live-migrate guests")

    # Guest state actions: Nova's pause, suspend, rescue, crash dump and password ---------

    async def pause(self, uuid: str) -> None:
        """Freeze the guest's vCPUs in memory (power state PAUSED)."""
        raise NotImplementedError(f"the {self.name} driver cannot pause guests")

    async def unpause(self, uuid: str) -> None:
        raise NotImplementedError(f"the {self.name} driver cannot unpause guests")

    async def suspend(self, uuid: str) -> None:
        """Save the guest's memory to disk and stop it (power state SUSPENDED)."""
        raise NotImplementedError(f"the {self.name} driver cannot suspend guests")

    async def resume(self, uuid: str) -> None:
        """Restore a suspended guest where it stopped."""
        raise NotImplementedError(f"the {self.name} driver cannot resume guests")

    async def rescue(self, uuid: str, rescue: RescueSpec) -> None:
        """Boot the guest from the rescue image, its own disk attached second."""
        raise NotImplementedError(f"the {self.name} driver cannot rescue guests")

    async def unrescue(self, uuid: str) -> None:
        """Boot the guest from its own disk again and drop the rescue disk."""
        raise NotImplementedError(f"the {self.name} driver cannot unrescue guests")

    async def trigger_crash_dump(self, uuid: str) -> None:
        """Send the guest a non-maskable interrupt."""
        raise NotImplementedError(f"the {self.name} driver cannot send NMIs")

    async def set_admin_password(self, uuid: str, password: str) -> None:
        """Set the guest's administrator password; ``AgentNotEnabled`` if it cannot."""
        raise NotImplementedError(f"the {self.name} driver cannot set passwords")

    async def attach_interface(self, uuid: str, vif: dict[str, Any]) -> None:
        """Plug one more NIC (a ``VifInfo`` dict whose tap the l2-agent made) into the
        guest, live if it runs and in its definition."""
        raise NotImplementedError(f"the {self.name} driver cannot attach interfaces")

    async def detach_interface(self, uuid: str, vif: dict[str, Any]) -> None:
        """Unplug what ``attach_interface`` plugged (found by MAC); no error if it is gone."""
        raise NotImplementedError(f"the {self.name} driver cannot detach interfaces")

    async def get_console(self, uuid: str, kind: ConsoleKind) -> ConsoleEndpoint:
        """Where the running guest's ``kind`` console is on this host; ``ConsoleUnavailable``
        when the driver's guests have none (``GuestNotFound``: no such guest)."""
        raise ConsoleUnavailable(f"Unavailable console type: the {self.name} driver's guests "
                                 f"have no {'VNC' if kind == 'vnc' else 'serial'} console.")
