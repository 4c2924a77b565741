"""The ``file`` backend: each volume a raw file under one directory.

Empty volumes are sparse files, grown in place (``truncate``), copied with holes kept, and
raw images copied in (and volumes copied out, for an upload as a raw image): none of it
needs a host program beyond ``cp``. Only writing a qcow2/vmdk/vdi/vhd/vhdx image into a
volume, or a volume out as one, needs ``qemu-img convert``; without qemu-img the backend says
so (``image_formats`` is just raw, and such work raises ``MissingTool``).

Layout: ``<dir>/volume-<id>`` and ``<dir>/snapshot-<id>``. New data is written to
``<dir>/.creating-<name>`` and renamed into place only when complete, so a failed create
leaves no file (the partial one is removed) and a present file is always a whole volume.
An empty volume costs no space. Compute hosts attach the file by
its path (``{"driver_volume_type": "file", "data": {"path": ...}}``), which suits hosts that
share the directory with the volume-manager (one machine, or a shared filesystem).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from stratus.core import hosttools
from stratus.volume.backends.base import (
    IMAGE_DISK_FORMATS,
    BackendError,
    MissingTool,
    VolumeBackend,
)

LOG = logging.getLogger(__name__)

GIB = 1 << 30
_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z-]{0,63}$")
PARTIAL_PREFIX = ".creating-"
#: The image service's disk format names that qemu-img knows by another name.
_QEMU_FORMAT = {"vhd": "vpc"}


class FileBackend(VolumeBackend):
    name = "file"

    def __init__(self, directory: Path, *, qemu_img: str = "qemu-img") -> None:
        self.directory = directory
        self.qemu_img = qemu_img
        self.directory.mkdir(parents=True, exist_ok=True)

    # Paths ---------------------------------------------------------------------------------

    def _path(self, kind: str, item_id: str) -> Path:
        if not _ID_RE.match(item_id):
            raise BackendError(f"Not a valid {kind} id: {item_id!r}")
        return self.directory / f"{kind}-{item_id}"

    def volume_path(self, volume_id: str) -> Path:
        return self._path("volume", volume_id)

    def snapshot_path(self, snapshot_id: str) -> Path:
        return self._path("snapshot", snapshot_id)

    def remove_partials(self) -> list[Path]:
        """Remove data a crash left half-written (run when the manager starts)."""
        removed = []
        for path in self.directory.glob(f"{PARTIAL_PREFIX}*"):
            path.unlink(missing_ok=True)
            removed.append(path)
        return removed

    # qemu-img ------------------------------------------------------------------------------

    def _qemu_img_path(self) -> str | None:
        return hosttools.find(self.qemu_img)

    def image_formats(self) -> tuple[str, ...]:
        return IMAGE_DISK_FORMATS if self._qemu_img_path() else ("raw",)

    def missing_tools(self) -> tuple[str, ...]:
        return () if self._qemu_img_path() else (self.qemu_img,)

    async def _qemu_img(self, *args: str) -> str:
        binary = self._qemu_img_path()
        if binary is None:
            raise MissingTool(self.qemu_img)
        process = await asyncio.create_subprocess_exec(
            binary, *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await process.communicate()
        if process.returncode != 0:
            detail = err.decode(errors="replace").strip().splitlines()
            raise BackendError(f"qemu-img {args[0]} failed: "
                               f"{detail[-1] if detail else process.returncode}")
        return out.decode()

    async def _create(self, target: Path, fill: Any) -> None:
        """Run ``fill(partial_path)`` then move the result to ``target``; on any failure
        the partial file is removed and the error raised."""
        if await asyncio.to_thread(target.exists):
            raise BackendError(f"{target.name} already exists")
        partial = target.with_name(PARTIAL_PREFIX + target.name)
        try:
            await fill(partial)
            partial.rename(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    async def _grow(self, path: Path, size_gb: int) -> None:
        """Grow the raw file to ``size_gb`` GiB; the new part is a hole (costs nothing)."""
        if (await asyncio.to_thread(path.stat)).st_size < size_gb * GIB:
            await asyncio.to_thread(os.truncate, path, size_gb * GIB)

    async def _copy(self, source: Path, target: Path) -> None:
        if not await asyncio.to_thread(source.exists):
            raise BackendError(f"{source.name} does not exist")
        await asyncio.to_thread(_sparse_copy, source, target)

    # VolumeBackend -------------------------------------------------------------------------

    async def create_volume(self, volume_id: str, size_gb: int) -> None:
        async def fill(partial: Path) -> None:
            await asyncio.to_thread(_sparse_file, partial, size_gb * GIB)

        await self._create(self.volume_path(volume_id), fill)

    async def create_volume_from_image(self, volume_id: str, size_gb: int, image: Path,
                                       image_format: str) -> None:
        if image_format not in IMAGE_DISK_FORMATS:
            raise BackendError(f"image disk format {image_format} cannot be written to a "
                               "volume")
        if image_format != "raw" and self._qemu_img_path() is None:
            raise MissingTool(self.qemu_img)

        async def fill(partial: Path) -> None:
            # The volume keeps its own size: the image's disk, then grown to it.
            if image_format == "raw":
                await self._copy(image, partial)
                await self._grow(partial, size_gb)
                return
            await asyncio.to_thread(_sparse_file, partial, size_gb * GIB)
            await self._qemu_img("convert", "-q", "-n", "-f",
                                 _QEMU_FORMAT.get(image_format, image_format), "-O", "raw",
                                 str(image), str(partial))

        await self._create(self.volume_path(volume_id), fill)

    async def create_volume_from_snapshot(self, volume_id: str, size_gb: int,
                                          snapshot_id: str) -> None:
        source = self.snapshot_path(snapshot_id)

        async def fill(partial: Path) -> None:
            await self._copy(source, partial)
            await self._grow(partial, size_gb)

        await self._create(self.volume_path(volume_id), fill)

    async def clone_volume(self, volume_id: str, size_gb: int, source_id: str) -> None:
        source = self.volume_path(source_id)

        async def fill(partial: Path) -> None:
            await self._copy(source, partial)
            await self._grow(partial, size_gb)

        await self._create(self.volume_path(volume_id), fill)

    async def copy_to_image_file(self, volume_id: str, image_format: str,
                                 target: Path) -> None:
        if image_format not in IMAGE_DISK_FORMATS:
            raise BackendError(f"a volume cannot be read out as disk format {image_format}")
        source = self.volume_path(volume_id)
        if not await asyncio.to_thread(source.exists):
            raise BackendError(f"{source.name} does not exist")
        try:
            if image_format == "raw":
                await self._copy(source, target)
            else:
                await self._qemu_img("convert", "-q", "-f", "raw", "-O",
                                     _QEMU_FORMAT.get(image_format, image_format),
                                     str(source), str(target))
        except BaseException:
            await asyncio.to_thread(target.unlink, True)
            raise

    async def extend_volume(self, volume_id: str, new_size_gb: int) -> None:
        path = self.volume_path(volume_id)
        if not await asyncio.to_thread(path.exists):
            raise BackendError(f"{path.name} does not exist")
        await self._grow(path, new_size_gb)

    async def delete_volume(self, volume_id: str) -> None:
        self.volume_path(volume_id).unlink(missing_ok=True)

    async def create_snapshot(self, snapshot_id: str, volume_id: str) -> None:
        source = self.volume_path(volume_id)

        async def fill(partial: Path) -> None:
            await self._copy(source, partial)

        await self._create(self.snapshot_path(snapshot_id), fill)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        self.snapshot_path(snapshot_id).unlink(missing_ok=True)

    async def volume_exists(self, volume_id: str) -> bool:
        return await asyncio.to_thread(self.volume_path(volume_id).exists)

    def connection_info(self, volume_id: str, connector: dict[str, Any]) -> dict[str, Any]:
        path = self.volume_path(volume_id)
        return {"driver_volume_type": "file",
                "data": {"path": str(path), "format": "raw", "volume_id": volume_id}}


def _sparse_file(path: Path, size: int) -> None:
    """A new file of ``size`` bytes, all of it a hole."""
    with path.open("xb") as handle:
        handle.truncate(size)


def _sparse_copy(source: Path, target: Path) -> None:
    """Copy keeping holes: ``cp --sparse=always`` where there is one, else a plain copy."""
    cp = shutil.which("cp")
    if cp is not None:
        done = subprocess.run([cp, "--sparse=always", str(source), str(target)],
                              capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        raise BackendError(f"copy of {source.name} failed: {done.stderr.strip()[-200:]}")
    shutil.copyfile(source, target)
