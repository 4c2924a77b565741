"""The interface every volume backend implements (``file``, ``rbd``).

A backend stores volumes and snapshots by id and knows nothing of the database or the API:
volume-manager calls it and records the outcome. Contracts every backend keeps:

* a create that fails leaves nothing behind (no file, no image, no partial data);
* ``delete_volume`` and ``delete_snapshot`` of something absent succeed (they are retried);
* ``copy_to_image_file`` reads the volume out (``os-volume_upload_image``) in the formats
  ``image_formats`` names, the same conversions as writing an image in;
* work that needs a host program that is missing raises ``MissingTool``, and
  ``image_formats``/``missing_tools`` say so beforehand (volume-managers report them, so
  volume-api refuses such a request instead of failing it later);
* ``connection_info`` is what a compute host needs to attach the volume, in Cinder's form
  ``{"driver_volume_type": ..., "data": {...}}`` (``file`` gives a path, ``rbd`` a pool and
  image name with monitors).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

from stratus.core import hosttools

#: The image disk formats (the image service's names) a backend may write into a volume.
IMAGE_DISK_FORMATS = ("raw", "qcow2", "vmdk", "vdi", "vhd", "vhdx")


class BackendError(Exception):
    """The backend could not do what was asked; the message says why (no secrets)."""


class MissingTool(BackendError):
    """The work needs a host program that is not installed (``command``)."""

    def __init__(self, command: str) -> None:
        super().__init__(hosttools.missing(command))
        self.command = command


class VolumeBackend(abc.ABC):
    #: Short name shown as the service's backend (``file``, ``rbd``).
    name: str

    def image_formats(self) -> tuple[str, ...]:
        """The image disk formats this backend can write into a volume, and read a volume
        out as, here and now."""
        return IMAGE_DISK_FORMATS

    def missing_tools(self) -> tuple[str, ...]:
        """Host programs the backend would use but cannot find (what they limit shows in
        ``image_formats``)."""
        return ()

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to what the backend needs (the volume-manager's start)."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    async def clone_image(self, volume_id: str, size_gb: int, location: str,
                          disk_format: str | None) -> bool:
        """Make the volume from the image's data where it lies (``location``, the image's
        ``direct_url``) without fetching it, when the backend can (``rbd``: a copy-on-write
        clone); False when it cannot, with nothing made."""
        return False

    @abc.abstractmethod
    async def create_volume(self, volume_id: str, size_gb: int) -> None:
        """An empty volume of ``size_gb`` GiB."""

    @abc.abstractmethod
    async def create_volume_from_image(self, volume_id: str, size_gb: int, image: Path,
                                       image_format: str) -> None:
        """A volume of ``size_gb`` GiB holding the image file's disk; ``image_format`` is
        the image's ``disk_format`` (one of ``image_formats()``)."""

    @abc.abstractmethod
    async def create_volume_from_snapshot(self, volume_id: str, size_gb: int,
                                          snapshot_id: str) -> None:
        """A new volume with the snapshot's content, grown to ``size_gb``."""

    @abc.abstractmethod
    async def clone_volume(self, volume_id: str, size_gb: int, source_id: str) -> None:
        """A new volume with another volume's content, grown to ``size_gb``."""

    @abc.abstractmethod
    async def copy_to_image_file(self, volume_id: str, image_format: str,
                                 target: Path) -> None:
        """Write the volume's disk into the new file ``target`` as ``image_format`` (one of
        ``image_formats()``), for an upload to the image service; a failure leaves no
        ``target``."""

    @abc.abstractmethod
    async def extend_volume(self, volume_id: str, new_size_gb: int) -> None:
        """Grow the volume; its content is kept."""

    @abc.abstractmethod
    async def delete_volume(self, volume_id: str) -> None:
        """Remove the volume; nothing to remove is not an error."""

    @abc.abstractmethod
    async def create_snapshot(self, snapshot_id: str, volume_id: str) -> None:
        """A point-in-time copy of the volume."""

    @abc.abstractmethod
    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Remove the snapshot; nothing to remove is not an error."""

    @abc.abstractmethod
    async def volume_exists(self, volume_id: str) -> bool:
        """Whether the backend holds data for the volume."""

    @abc.abstractmethod
    def connection_info(self, volume_id: str, connector: dict[str, Any]) -> dict[str, Any]:
        """How the host described by ``connector`` reaches the volume."""
