"""What the uploaded bytes are: format checks on the first bytes, ``virtual_size`` by qemu-img.

Uploaded data is untrusted. ``qemu-img info`` is therefore always told the format
(``-f``, never probing), runs under CPU and memory limits, and images that would make it or a
hypervisor read other files (a qcow2 backing file or external data file, a VMDK descriptor
naming extents) are refused, as Glance's format inspector refuses them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from stratus.core.exceptions import ValidationError

LOG = logging.getLogger(__name__)

#: Bytes kept from the start of each upload for the magic-number checks.
HEAD_SIZE = 64 * 1024

#: disk_format → qemu-img's name for it.
QEMU_FORMATS = {"qcow2": "qcow2", "vmdk": "vmdk", "vhd": "vpc",
                "vhdx": "vhdx", "vdi": "vdi"}

#: Formats whose files always start with their magic number (a fixed VHD ends with it).
HEADERED = frozenset({"qcow2", "vmdk", "vhdx", "vdi"})

QEMU_IMG_TIMEOUT = 30.0
#: Address-space and CPU-seconds limits for qemu-img, as Nova and Glance use.
QEMU_IMG_LIMITS = ("--as=1073741824", "--cpu=30")


class FormatMismatch(ValidationError):
    """The data is not in the image's ``disk_format``, or is unsafe to accept."""


def sniff(head: bytes) -> str | None:
    """The disk format the first bytes announce, if any (None: no known header, e.g. raw)."""
    if head.startswith(b"QFI\xfb"):
        return "qcow2"
    if head.startswith(b"KDMV") or head.startswith(b"# Disk DescriptorFile"):
        return "vmdk"
    if head.startswith(b"vhdxfile"):
        return "vhdx"
    if head.startswith(b"conectix"):
        return "vhd"
    if len(head) >= 0x44 and head[0x40:0x44] == b"\x7f\x10\xda\xbe":
        return "vdi"
    return None


def check_qcow2_header(head: bytes) -> int | None:
    """The virtual size a qcow2 header records; refuses backing and external data files."""
    if len(head) < 32:
        raise FormatMismatch("Image data is too short to be a qcow2 image.")
    version = struct.unpack_from(">I", head, 4)[0]
    backing_offset = struct.unpack_from(">Q", head, 8)[0]
    if backing_offset:
        raise FormatMismatch("Images with a backing file are refused.")
    if version >= 3 and len(head) >= 80:
        incompatible = struct.unpack_from(">Q", head, 72)[0]
        if incompatible & 0x4:
            raise FormatMismatch("qcow2 images with an external data file are refused.")
    size: int = struct.unpack_from(">Q", head, 24)[0]
    return size


@dataclass(frozen=True)
class Inspection:
    virtual_size: int | None


class Inspector:
    """Checks staged data against its ``disk_format`` and reads its virtual size."""

    def __init__(self, qemu_img: str = "qemu-img", *, require_match: bool = True) -> None:
        self.qemu_img = shutil.which(qemu_img)
        self.prlimit = shutil.which("prlimit")
        self.require_match = require_match
        if self.qemu_img is None:
            LOG.warning("%s is not installed: images get no virtual_size "
                        "(Debian: apt-get install qemu-utils)", qemu_img)

    async def inspect(self, path: Path | None, disk_format: str, size: int,
                      head: bytes) -> Inspection:
        found = sniff(head)
        if self.require_match and found is not None and found != disk_format:
            raise FormatMismatch(f"Image data is in the {found} format, not the declared "
                                 f"disk_format {disk_format}.")
        if found is not None and found != disk_format:
            # Accepted only because the operator switched the match off: the safety checks
            # on what the data really is still apply (as Glance keeps them), since a
            # consumer that probes the format would follow its backing file or extents.
            self._check_found(found, head)
        if disk_format in ("iso", "raw"):
            # The data is the disk: its virtual size is its size, as Glance records it
            # (qemu-img would round a raw file up to whole 512-byte sectors).
            return Inspection(size)
        if disk_format in HEADERED and found != disk_format:
            if self.require_match:
                raise FormatMismatch(f"Image data is not in the declared disk_format "
                                     f"{disk_format}.")
            return Inspection(None)
        if disk_format == "vmdk" and not head.startswith(b"KDMV"):
            # A text descriptor names extent files elsewhere: reading it reads those.
            raise FormatMismatch("VMDK images must be a single sparse file (monolithicSparse "
                                 "or streamOptimized); descriptor files are refused.")
        header_size = check_qcow2_header(head) if disk_format == "qcow2" else None
        qemu_format = QEMU_FORMATS.get(disk_format)
        if qemu_format is None or path is None or self.qemu_img is None:
            # No qemu-img here (or no local copy, for remote stores): what the header says.
            return Inspection(header_size)
        try:
            info = await self._qemu_img_info(path, qemu_format)
        except FormatMismatch:
            if self.require_match or found == disk_format:
                raise
            # Not this format (nothing announced it, e.g. a VHD footer missing): with the
            # match switched off it is kept as opaque data, without a virtual size.
            return Inspection(None)
        self._check_safe(info, disk_format)
        virtual = info.get("virtual-size")
        return Inspection(int(virtual) if isinstance(virtual, int) else None)

    @staticmethod
    def _check_found(found: str, head: bytes) -> None:
        if found == "qcow2":
            check_qcow2_header(head)
        elif found == "vmdk" and not head.startswith(b"KDMV"):
            raise FormatMismatch("VMDK descriptor files are refused.")

    async def _qemu_img_info(self, path: Path, qemu_format: str) -> dict[str, object]:
        assert self.qemu_img is not None
        command = [self.qemu_img, "info", "-f", qemu_format, "--output=json", str(path)]
        if self.prlimit is not None:
            command = [self.prlimit, *QEMU_IMG_LIMITS, *command]
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={"LC_ALL": "C"})
        try:
            async with asyncio.timeout(QEMU_IMG_TIMEOUT):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise FormatMismatch("Image data could not be inspected in time.") from None
        if process.returncode != 0:
            detail = err.decode(errors="replace").strip().splitlines()
            raise FormatMismatch(f"Image data is not a valid {qemu_format} image"
                                 f"{': ' + detail[-1] if detail else ''}".replace(str(path),
                                                                                  "<data>"))
        try:
            info = json.loads(out)
        except ValueError as exc:
            raise FormatMismatch("qemu-img gave no readable description of the data.") from exc
        if not isinstance(info, dict):
            raise FormatMismatch("qemu-img gave no readable description of the data.")
        return info

    @staticmethod
    def _check_safe(info: dict[str, object], disk_format: str) -> None:
        if info.get("backing-filename") or info.get("full-backing-filename"):
            raise FormatMismatch("Images with a backing file are refused.")
        specific = info.get("format-specific")
        data = specific.get("data") if isinstance(specific, dict) else None
        if isinstance(data, dict):
            if data.get("data-file"):
                raise FormatMismatch("qcow2 images with an external data file are refused.")
            create_type = data.get("create-type")
            if disk_format == "vmdk" and create_type not in (None, "monolithicSparse",
                                                             "streamOptimized"):
                raise FormatMismatch(f"VMDK create-type {create_type} is refused.")
            extents = data.get("extents")
            if disk_format == "vmdk" and isinstance(extents, list) and len(extents) > 1:
                raise FormatMismatch("VMDK images with several extents are refused.")
