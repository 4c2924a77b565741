"""The command-line tools the libvirt driver runs (qemu-img, mkfs, mkswap), with their errors as
``VirtError``s that say what failed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from stratus.compute.virt.driver import LocalDisk, VirtError


def run_tool(args: list[str], what: str, timeout: float | None = 120) -> str:
    """Run a tool (``timeout`` None: as long as it takes, a copy of a large disk)."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, check=False,
                              timeout=timeout)
    except FileNotFoundError as exc:
        raise VirtError(f"{what}: {args[0]} is not installed.") from exc
    if done.returncode != 0:
        raise VirtError(f"{what}: {done.stderr.strip()[-300:] or 'qemu-img failed'}")
    return done.stdout


def local_disk_name(disk: LocalDisk, index: int) -> str:
    """The file of the guest's ``index``-th local disk in its instance directory."""
    return "disk.swap" if disk.kind == "swap" else f"disk.eph{index}"


#: File systems ``guest_format`` may ask for on an ephemeral disk (made with ``mkfs.<fs>``).
_FILE_SYSTEMS = ("ext2", "ext3", "ext4", "xfs", "vfat")


def create_local_disk(disk: LocalDisk, directory: Path, index: int) -> Path:
    """An ephemeral or swap disk as a qcow2 file in the instance's directory: blank, or
    with the swap signature or file system ``guest_format`` asks for (made on a sparse raw
    file first, then converted)."""
    name = local_disk_name(disk, index)
    path = directory / name
    size = f"{disk.size_mb}M"
    fmt = disk.guest_format
    if fmt != "swap" and fmt not in _FILE_SYSTEMS:
        run_tool(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size],
                  f"Could not create the {disk.kind} disk")
        return path
    raw = directory / f"{name}.raw"
    try:
        with raw.open("wb") as handle:
            handle.truncate(disk.size_mb * 1024 * 1024)
        tool = ["mkswap", str(raw)] if fmt == "swap" else [f"mkfs.{fmt}", "-q", str(raw)]
        if fmt in ("ext2", "ext3", "ext4"):
            tool = [f"mkfs.{fmt}", "-q", "-F", "-L", f"ephemeral{index}", str(raw)]
        run_tool(tool, f"Could not format the {disk.kind} disk")
        run_tool(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw),
                   str(path)], f"Could not create the {disk.kind} disk")
    finally:
        raw.unlink(missing_ok=True)
    return path
