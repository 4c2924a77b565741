"""The command-line tools the libvirt driver runs (qemu-img), with their errors as
``VirtError``s that say what failed."""

from __future__ import annotations

import subprocess

from stratus.compute.virt.driver import VirtError


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
