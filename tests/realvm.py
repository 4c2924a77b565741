"""Real-VM test support: the test guest image and a running libvirt, or a skip (a failure in CI).

``guest_image()`` builds the project's test guest once per cache key (under
``$STRATUS_TEST_CACHE`` or ``~/.cache/stratus-tests``) and ``libvirt_ready()`` makes
``qemu:///system`` answer, starting the daemons as the driver would. Console helpers wait for
the guest's ``STRATUS-`` marker lines. ``second_libvirtd()`` runs another libvirtd on this
machine, a second "host" to migrate guests to (tests and the ``lifecycle`` benchmark).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from stratus.compute.virt.libvirt import host as libvirt_host
from stratus.guest_image import GuestImageError, ensure_image
from stratus.network.agents import linux
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


def _destroy_all(uri: str) -> None:
    """Destroy and undefine every domain of the (private) daemon at ``uri``."""
    libvirt = libvirt_host.libvirt_module()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return
    try:
        for domain in conn.listAllDomains(0):
            with contextlib.suppress(libvirt.libvirtError):
                if domain.isActive():
                    domain.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                domain.undefine()
    finally:
        conn.close()


class SecondLibvirtdError(RuntimeError):
    """The second libvirtd cannot run here (no unshare(1), or it did not start)."""


_SECOND_START = """#!/bin/sh
set -e
mount --make-rprivate /
mount --bind {root}/etc /etc/libvirt
mount --bind {root}/run /run/libvirt
mount --bind {root}/lib /var/lib/libvirt
mount --bind {root}/cache /var/cache/libvirt
mount --bind {root}/log /var/log/libvirt
exec /usr/sbin/libvirtd --config {root}/etc/libvirtd.conf -p {root}/libvirtd.pid
"""


@contextlib.contextmanager
def second_libvirtd(namespace: str | None = None) -> Iterator[str]:
    """A second libvirtd on this machine; its URI while the context lasts.

    libvirt will not migrate a guest to the daemon it runs on (nor to one with the same host
    UUID), so this one runs in a mount namespace of its own (its state, configuration, logs
    and pid files private, its own ``host_uuid`` and socket; QEMU writing its own logs, as
    the machine's virtlogd holds the first daemon's). The machine's libvirtd must be running
    (``libvirt_ready()``).

    With ``namespace`` (a network namespace: a host of a test) the daemon runs in it, and
    so do its QEMU processes: a guest's NIC is the tap of that name in the namespace (the
    l2-agent of that host made it there), as on a host of its own. Its socket is a file, so
    it answers from any network namespace. Guests it still runs at the end are destroyed
    (they would outlive it: QEMU keeps running without libvirtd)."""
    if shutil.which("unshare") is None:
        raise SecondLibvirtdError("a second libvirtd needs unshare(1)")
    root = Path(tempfile.mkdtemp(prefix="stratus-lv-", dir="/tmp"))  # short: socket paths
    for name in ("run", "lib", "cache", "sock", "log/qemu"):
        (root / name).mkdir(parents=True)
    shutil.copytree("/etc/libvirt", root / "etc", dirs_exist_ok=True)
    for leftover in ("qemu", "storage", "nwfilter"):  # no domains, pools or filters of the
        shutil.rmtree(root / "etc" / leftover, ignore_errors=True)  # first daemon's
    # QEMU writes its logs itself: the machine's virtlogd holds the first daemon's files,
    # which have the same names. Its guests' VNC and incoming migration ports come from a
    # block of its own: each daemon picks the lowest port it can bind at that moment, so
    # two daemons in one network namespace starting guests at once (a real-guest test on
    # each of the serial part's two workers) could otherwise both pick the one QEMU of
    # either has not bound yet. Below the kernel's ephemeral range: no client takes them.
    block = random.randrange(64)
    with (root / "etc" / "qemu.conf").open("a") as conf:
        conf.write('\nstdio_handler = "file"\n'
                   f"remote_display_port_min = {7000 + 64 * block}\n"
                   f"remote_display_port_max = {7000 + 64 * block + 63}\n"
                   f"migration_port_min = {12000 + 64 * block}\n"
                   f"migration_port_max = {12000 + 64 * block + 63}\n")
    (root / "etc" / "libvirtd.conf").write_text(
        f'host_uuid = "{uuid.uuid4()}"\nunix_sock_dir = "{root}/sock"\n')
    script = root / "start.sh"
    script.write_text(_SECOND_START.format(root=root))
    script.chmod(0o755)
    log = (root / "libvirtd.log").open("wb")
    with (linux.preexec_in(namespace) if namespace else contextlib.nullcontext(None)) as enter:
        daemon = subprocess.Popen(["unshare", "-m", str(script)], stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True,
                                  preexec_fn=enter)
    uri = f"qemu+unix:///system?socket={root}/sock/libvirt-sock"
    try:
        deadline = time.monotonic() + 60
        libvirt = libvirt_host.libvirt_module()
        while True:
            try:
                libvirt.open(uri).close()
                break
            except libvirt.libvirtError:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise SecondLibvirtdError(
                        "the second libvirtd did not start: "
                        f"{(root / 'libvirtd.log').read_text()[-500:]}") from None
                time.sleep(0.2)
        yield uri
    finally:
        if daemon.poll() is None:
            _destroy_all(uri)
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
