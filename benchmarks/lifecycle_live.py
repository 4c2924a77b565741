"""Lifecycle, live migration: how long the test guest stops while it moves between two hosts.

Two "hosts" on this machine, as the real-guest migration tests have them: the machine's
libvirtd and a second one in a mount namespace of its own (``tests.realvm.second_libvirtd``),
each with a ``LibvirtDriver`` and its own instance directory. The test guest (the project's
busybox guest, QEMU: KVM where usable, else TCG; its disk an overlay copied along by the
migration) boots on the first; once it is up it is live-migrated ``--migrations`` times, back
and forth, through the driver calls a compute agent makes (``live_migration_source_data``,
``pre_live_migration``, ``live_migration``, ``post_live_migration_at_destination``).

**Downtime as the guest lived it.** The guest prints ``STRATUS-TICK uptime=S`` on its serial
console every two seconds, ``S`` its own clock (``/proc/uptime``). A guest's clock only runs
while its vCPUs do: it stops when QEMU stops the guest on the source for the switch-over and
goes on from there when the destination starts it. So against the host's clock the guest
falls behind by exactly the time it did not run. A thread reads both hosts' console logs
every ``--poll-ms`` and notes when each tick line arrived; ``arrival - S`` is the guest's
offset. Between two migrations it stays level (up to the tick's own delay: the guest forking
``cut`` to read its clock, the console, the polling); across a migration it steps up by the
downtime. ``--ticks`` ticks are collected after each migration (and before the first); the
offsets are fitted with one slope (the guest's clock may run a little fast or slow) and one
level per stretch, and each step between levels is one migration's downtime.
``guest_offset_residual_ms`` (the fit's residual standard deviation) says how precise that is.

**Downtime as QEMU counted it**: libvirt's completed-job statistics on the destination
(``downtime``: from the source stopping the guest to the destination resuming it), read after
each migration, for comparison.

The wall time of each migration (``live_migration`` call) is recorded too.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid as uuidlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import Result, percentile

DESCRIPTION = ("live migration downtime of a real test guest between two libvirt daemons on "
               "this machine (the guest's clock across the switch-over, and QEMU's figure)")

TICK = re.compile(rb"STRATUS-TICK uptime=(\d+(?:\.\d+)?)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--migrations", type=int, default=4,
                        help="live migrations, back and forth (default 4)")
    parser.add_argument("--ticks", type=int, default=6,
                        help="guest ticks (2 s apart) read before the first and after each "
                             "migration (default 6)")
    parser.add_argument("--poll-ms", type=float, default=5.0,
                        help="how often the console logs are read (default 5 ms)")
    parser.add_argument("--memory-mb", type=int, default=256,
                        help="the guest's memory (default 256)")


def _progress(message: str) -> None:
    print(f"[lifecycle_live] {message}", file=sys.stderr, flush=True)


@dataclass
class TickWatch:
    """Reads console log files from a thread; every tick line as (host time seen, guest
    uptime)."""

    poll_s: float
    ticks: list[tuple[float, float]] = field(default_factory=list)
    #: Path → (inode, bytes read): a host's log is made anew when the guest comes back.
    _files: dict[Path, tuple[int, int]] = field(default_factory=dict)
    _partial: dict[Path, bytes] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def watch(self, path: Path) -> None:
        with self._lock:
            self._files.setdefault(path, (0, 0))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tick-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def count(self) -> int:
        with self._lock:
            return len(self.ticks)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                files = list(self._files.items())
            for path, (inode, offset) in files:
                try:
                    with path.open("rb") as f:
                        now = os.fstat(f.fileno()).st_ino
                        if now != inode:
                            inode, offset = now, 0
                            self._partial.pop(path, None)
                        f.seek(offset)
                        data = f.read()
                except FileNotFoundError:
                    # Not there yet, or gone with the source's instance directory: a new
                    # one is read from its start (its inode may be the old one's again).
                    with self._lock:
                        self._files[path] = (0, 0)
                    self._partial.pop(path, None)
                    continue
                if not data:
                    continue
                seen = time.monotonic()
                lines = (self._partial.pop(path, b"") + data).split(b"\n")
                self._partial[path] = lines.pop()
                with self._lock:
                    self._files[path] = (inode, offset + len(data))
                    for line in lines:
                        match = TICK.search(line)
                        if match:
                            self.ticks.append((seen, float(match.group(1))))
            time.sleep(self.poll_s)


def fit_steps(stretches: list[list[tuple[float, float]]]) -> tuple[list[float], float, float]:
    """Offsets (host time - guest uptime) of each stretch of ticks between migrations, fitted
    as one common slope plus a level per stretch (least squares): the steps between levels
    (s), the slope, and the residual standard deviation (s)."""
    groups = [[(t, t - up) for t, up in stretch] for stretch in stretches]
    if any(len(g) < 2 for g in groups):
        raise RuntimeError("each stretch needs at least two ticks")
    means = [(statistics.fmean(t for t, _ in g), statistics.fmean(o for _, o in g))
             for g in groups]
    num = sum((t - mt) * (o - mo) for g, (mt, mo) in zip(groups, means, strict=True)
              for t, o in g)
    den = sum((t - mt) ** 2 for g, (mt, _) in zip(groups, means, strict=True) for t, _ in g)
    slope = num / den if den else 0.0
    levels = [mo - slope * mt for mt, mo in means]
    residuals = [o - (level + slope * t) for g, level in zip(groups, levels, strict=True)
                 for t, o in g]
    dof = max(1, len(residuals) - len(groups) - 1)
    residual = (sum(r * r for r in residuals) / dof) ** 0.5
    return [b - a for a, b in itertools.pairwise(levels)], slope, residual


def _completed_downtime_ms(uri: str, uuid: str) -> float | None:
    """libvirt's completed-job ``downtime`` of the guest's last migration, on ``uri``."""
    from stratus.compute.virt.libvirt import host as libvirt_host

    libvirt = libvirt_host.libvirt_module()
    conn = libvirt.open(uri)
    try:
        stats = conn.lookupByUUIDString(uuid).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    except libvirt.libvirtError:
        return None
    finally:
        conn.close()
    value = stats.get("downtime")
    return float(value) if value is not None else None


async def _wait_ticks(watch: TickWatch, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while watch.count() < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the guest printed {watch.count()} ticks, {count} wanted, "
                               f"within {within:.0f} s")
        await asyncio.sleep(0.1)


async def measure_downtime(migrations: int, ticks: int, poll_ms: float,
                           memory_mb: int) -> tuple[dict[str, float], dict[str, Any]]:
    """Boot the test guest on one host, live-migrate it ``migrations`` times between two
    libvirt daemons; its downtime figures (ms) and the backends."""
    from stratus.compute.virt.driver import GuestSpec
    from stratus.compute.virt.libvirt import LibvirtDriver
    from stratus.compute.virt.libvirt import host as libvirt_host
    from tests.realvm import second_libvirtd

    reason = libvirt_host.usable()
    if reason is not None:
        raise SystemExit(f"libvirt is not usable here: {reason}")
    libvirt_host.ensure_daemons()
    image = _guest_image()
    work = Path(tempfile.mkdtemp(prefix="stratus-bench-live-", dir="/var/tmp"))
    watch = TickWatch(poll_ms / 1000)
    walls: list[float] = []
    qemu: list[float] = []
    with second_libvirtd() as uri:
        # The way back: the second daemon's own /run/libvirt hides this machine's socket,
        # which it reaches through this process's root (its mount namespace).
        back = f"qemu+unix:///system?socket=/proc/{os.getpid()}/root/run/libvirt/libvirt-sock"
        a = LibvirtDriver(work / "a" / "instances", migration_uri=back)
        b = LibvirtDriver(work / "b" / "instances", uri=uri, start_daemons=False,
                          migration_uri=uri)
        uris = {"host-a": a.uri, "host-b": uri}
        await a.init_host("host-a")
        await b.init_host("host-b")
        guest = GuestSpec(uuid=str(uuidlib.uuid4()), name="bench-live", vcpus=1,
                          memory_mb=memory_mb, root_gb=1, image_path=image,
                          image_format="qcow2")
        stretches: list[list[tuple[float, float]]] = []
        try:
            _progress("booting the test guest on host-a")
            await a.spawn(guest)
            watch.watch(a.console_log(guest.uuid))
            watch.watch(b.console_log(guest.uuid))
            watch.start()
            await _wait_ticks(watch, 1, 300)  # up: its first tick
            here, there = a, b
            mark = watch.count()
            await _wait_ticks(watch, mark + ticks, 10 + 4 * ticks)
            for n in range(migrations):
                stretch_end = watch.count()
                stretches.append(watch.ticks[mark:stretch_end])
                _progress(f"migration {n + 1}: {here.host} -> {there.host}")
                data = await there.pre_live_migration(
                    guest, await here.live_migration_source_data(guest.uuid))
                started = time.monotonic()
                await here.live_migration(guest.uuid, there.host, data)
                walls.append(time.monotonic() - started)
                await there.post_live_migration_at_destination(guest.uuid)
                counted = await asyncio.to_thread(_completed_downtime_ms, uris[there.host],
                                                  guest.uuid)
                if counted is not None:
                    qemu.append(counted)
                # A tick printed while the migration ran may be read only after it: the
                # next stretch starts after the switch-over surely, at the next new tick.
                mark = watch.count()
                await _wait_ticks(watch, mark + ticks, 10 + 4 * ticks)
                here, there = there, here
            stretches.append(watch.ticks[mark:watch.count()])
        finally:
            watch.stop()
            for driver in (a, b):
                for left in await driver.list_guests():
                    await driver.destroy(left)
                await driver.cleanup_host()
            shutil.rmtree(work, ignore_errors=True)
    steps, slope, residual = fit_steps(stretches)
    downtimes = [s * 1e3 for s in steps]
    metrics = {
        "live_downtime_guest_p50_ms": percentile(downtimes, 50),
        "live_downtime_guest_max_ms": max(downtimes),
        "guest_offset_residual_ms": residual * 1e3,
        "guest_clock_drift_ppm": slope * 1e6,
        "live_migration_wall_p50_s": percentile(walls, 50),
        "live_migration_wall_max_s": max(walls),
        "migrations": migrations,
    }
    if qemu:
        metrics["live_downtime_qemu_p50_ms"] = percentile(qemu, 50)
        metrics["live_downtime_qemu_max_ms"] = max(qemu)
    _progress("guest-seen downtimes (ms): " + _fmt(downtimes)
              + "; QEMU's: " + (_fmt(qemu) if qemu else "not reported"))
    backends = {"virt_type": a.virt_type or "unknown", "guest_memory_mb": memory_mb,
                "live_migration": "two libvirtd on this machine, QEMU stream on the loopback, "
                                  "disk copied along (NON_SHARED_INC)"}
    return metrics, backends


def _fmt(values: Iterable[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


def _guest_image() -> Path:
    from stratus.guest_image import ensure_image
    from tests.realvm import cache_dir

    return ensure_image(cache_dir() / "guest-image")


async def run(args: argparse.Namespace) -> Result:
    if args.migrations < 1 or args.ticks < 2:
        raise SystemExit("--migrations must be at least 1 and --ticks at least 2")
    metrics, backends = await measure_downtime(args.migrations, args.ticks, args.poll_ms,
                                               args.memory_mb)
    return Result(metrics=metrics, backends=backends)
