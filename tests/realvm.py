"""Real-VM test support: the test guest image and a running libvirt, or a skip (a failure in CI).

``guest_image()`` builds the project's test guest once per cache key (under
``$STRATUS_TEST_CACHE`` or ``~/.cache/stratus-tests``) and ``libvirt_ready()`` makes
``qemu:///system`` answer, starting the daemons as the driver would. Console helpers wait for
the guest's ``STRATUS-`` marker lines.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from stratus.compute.virt.libvirt import host as libvirt_host
from stratus.guest_image import GuestImageError, ensure_image
from tests.conftest import backend_unavailable


def cache_dir() -> Path:
    base = os.environ.get("STRATUS_TEST_CACHE") or str(Path.home() / ".cache" / "stratus-tests")
    return Path(base)


@functools.cache
def _image() -> Path | str:
    try:
        return ensure_image(cache_dir() / "guest-image")
    except GuestImageError as exc:
        return str(exc)


def guest_image() -> Path:
    """The test guest qcow2 (built on first use); skipped (failed in CI) if it cannot be."""
    found = _image()
    if isinstance(found, str):
        backend_unavailable(f"the test guest image cannot be built: {found}")
    return found


@functools.cache
def _libvirt() -> str | None:
    reason = libvirt_host.usable()
    if reason is not None:
        return reason
    try:
        libvirt_host.ensure_daemons()
    except libvirt_host.DaemonError as exc:
        return str(exc)
    return None


def libvirt_ready() -> None:
    reason = _libvirt()
    if reason is not None:
        backend_unavailable(f"libvirt is not usable: {reason}")


async def wait_console(read: Callable[[], Awaitable[str]], pattern: str, *, count: int = 1,
                       within: float = 120.0) -> str:
    """Poll the console until ``pattern`` (a regex) matched ``count`` times; the console."""
    regex = re.compile(pattern, re.MULTILINE)
    deadline = time.monotonic() + within
    text = ""
    while time.monotonic() < deadline:
        text = await read()
        if len(regex.findall(text)) >= count:
            return text
        await asyncio.sleep(0.25)
    raise AssertionError(f"{pattern!r} x{count} not on the console within {within:.0f} s; "
                         f"console ends with:\n{text[-2000:]}")


async def destroy_leftovers(instances_dir: Path) -> list[str]:
    """Remove the guests a failed test left running under ``instances_dir``; their uuids."""
    from stratus.compute.virt.libvirt import LibvirtDriver

    if _libvirt() is not None:
        return []
    driver = LibvirtDriver(instances_dir, start_daemons=False)
    await driver.init_host("cleanup")
    try:
        left = await driver.list_guests()
        for uuid_ in left:
            await driver.destroy(uuid_)
        return left
    finally:
        await driver.cleanup_host()
