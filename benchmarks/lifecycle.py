"""A server's life after boot: a snapshot of a 1 GiB disk, resize and migration latency on the
fake driver, and the live-migration downtime of a real test guest.

Three parts, each also a scenario of its own where it has its own options:

1. **Snapshot**. The libvirt driver itself, on a running guest (QEMU: KVM where usable,
   else TCG) whose disk is laid out as the driver always lays it out (a qcow2 overlay in the
   instance's directory on a base image holding ``--disk-gb`` GiB of written data, so every
   cluster is copied):

   * ``snapshot``: ``LibvirtDriver.snapshot`` end to end: the guest paused, the chain copied
     into one standalone qcow2 with ``qemu-img convert``, the guest resumed;
   * ``plain_convert``: the same overlay copied by hand, ``qemu-img convert -U -O qcow2``,
     which is the least any snapshot of that disk costs.

   After one warm-up copy (so both read the base from the page cache), both run
   ``--rounds`` times, alternated and in turns first (so both see the same load on a shared
   machine); ``snapshot_over_convert`` = p50 snapshot / p50 plain convert, goal ≤ 1.2. The
   upload to the image service that follows a snapshot is not in either figure (it is a copy
   over HTTP into the image store, the same for any way of taking the snapshot). The guest
   runs no OS (its disk is data, not a bootable image), which is all the copy needs: a
   running QEMU holding the disk open.
2. **Moves on the fake driver** (``lifecycle_moves``): ``--move-rounds`` rounds of resize +
   confirm, resize + revert, cold migration + confirm and live migration of one server of a
   ``stratus up`` with two fake hosts; server-side latency per step (goal: p50 ≤ 100 ms for
   resize, cold and live migration).
3. **Live-migration downtime** (``lifecycle_live``): the project's test guest (real, QEMU
   TCG here) live-migrated ``--migrations`` times between two libvirt daemons on this
   machine; how long it stood still, read from its own clock on its serial console across
   each switch-over, and QEMU's own count.

``--skip`` leaves parts out (e.g. ``--skip live`` on a machine with no second libvirtd).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

from benchmarks import Goal, Result, lifecycle_live, lifecycle_moves, percentile

DESCRIPTION = ("createImage's disk copy of a running libvirt guest with a 1 GiB disk against "
               "a plain qemu-img convert; resize/migrate latency (fake driver); live "
               "migration downtime of the real test guest")

PARTS = ("snapshot", "moves", "live")

RATIO_GOAL = 1.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--disk-gb", type=int, default=1,
                        help="root disk size, all of it written (default 1)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="snapshots and plain copies measured, each (default 3)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the disks go (default: a new directory in /var/tmp)")
    parser.add_argument("--move-rounds", type=int, default=10,
                        help="rounds of moves on the fake driver (default 10)")
    parser.add_argument("--migrations", type=int, default=4,
                        help="live migrations of the real guest (default 4)")
    parser.add_argument("--ticks", type=int, default=6,
                        help="guest ticks read around each live migration (default 6)")
    parser.add_argument("--skip", action="append", default=[], choices=PARTS,
                        help="leave a part out (repeatable)")


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {done.stderr.strip()[-300:]}")


def _written_base(path: Path, size_gb: int) -> None:
    """A qcow2 of ``size_gb`` GiB with every cluster written (a pattern, not zeros, so no
    copy can skip it)."""
    _run("qemu-img", "create", "-q", "-f", "qcow2", str(path), f"{size_gb}G")
    _run("qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {size_gb}G", str(path))


async def _timed_convert(disk: Path, out: Path) -> float:
    started = time.perf_counter()
    await asyncio.to_thread(_run, "qemu-img", "convert", "-U", "-O", "qcow2", str(disk),
                            str(out))
    return time.perf_counter() - started


async def run(args: argparse.Namespace) -> Result:
    metrics: dict[str, float] = {}
    goals: list[Goal] = []
    backends: dict[str, object] = {}
    if "snapshot" not in args.skip:
        part = await measure_snapshot(args.disk_gb, args.rounds, args.work_dir)
        metrics.update(part.metrics)
        goals += part.goals
        backends.update(part.backends)
    if "moves" not in args.skip:
        moved, moves_backends = await lifecycle_moves.fake_moves(args.move_rounds, 2, 0.05)
        metrics.update(moved)
        goals += lifecycle_moves.goals()
        backends["moves"] = moves_backends
    if "live" not in args.skip:
        live, live_backends = await lifecycle_live.measure_downtime(args.migrations, args.ticks,
                                                                    5.0, 256)
        metrics.update(live)
        backends["live"] = live_backends
    return Result(metrics=metrics, goals=goals, backends=backends)


async def measure_snapshot(disk_gb: int, rounds: int, work_dir: Path | None) -> Result:
    from stratus.compute.virt.driver import GuestSpec
    from stratus.compute.virt.libvirt import LibvirtDriver
    from stratus.compute.virt.libvirt import host as libvirt_host

    reason = libvirt_host.usable()
    if reason is not None:
        raise SystemExit(f"libvirt is not usable here: {reason}")
    work = Path(tempfile.mkdtemp(prefix="stratus-bench-lifecycle-",
                                 dir=work_dir or "/var/tmp"))
    driver = LibvirtDriver(work / "instances")
    guest = str(uuidlib.uuid4())
    snapshots: list[float] = []
    plain: list[float] = []
    pause_resume: list[float] = []
    size = 0
    try:
        base = work / "base.qcow2"
        await asyncio.to_thread(_written_base, base, disk_gb)
        await driver.init_host("bench-lifecycle")
        await driver.spawn(GuestSpec(uuid=guest, name="bench-snapshot", vcpus=1,
                                     memory_mb=128, root_gb=disk_gb, image_path=base,
                                     image_format="qcow2"))
        disk = driver.instance_dir(guest) / "disk"
        out = work / "plain.qcow2"
        await _timed_convert(disk, out)  # warm-up: the base in the page cache for both
        out.unlink()
        for round_ in range(rounds):
            for kind in ("snapshot", "plain") if round_ % 2 == 0 else ("plain", "snapshot"):
                if kind == "plain":
                    plain.append(await _timed_convert(disk, out))
                    out.unlink()
                    continue
                started = time.perf_counter()
                taken = await driver.snapshot(guest)
                snapshots.append(time.perf_counter() - started)
                size = taken.path.stat().st_size
                taken.path.unlink()
            # What a snapshot adds to the copy: the guest paused and resumed through
            # libvirt (on a loaded machine, libvirtd's answers are not free).
            started = time.perf_counter()
            await driver.pause(guest)
            await driver.unpause(guest)
            pause_resume.append(time.perf_counter() - started)
    finally:
        await driver.destroy(guest)
        await driver.cleanup_host()
        shutil.rmtree(work, ignore_errors=True)
    snapshot_p50, plain_p50 = percentile(snapshots, 50), percentile(plain, 50)
    return Result(
        metrics={"snapshot_p50_s": snapshot_p50, "snapshot_max_s": max(snapshots),
                 "plain_convert_p50_s": plain_p50, "plain_convert_max_s": max(plain),
                 "snapshot_over_convert": snapshot_p50 / plain_p50,
                 "snapshot_file_gb": size / 1024**3, "disk_gb": disk_gb,
                 "pause_resume_p50_s": percentile(pause_resume, 50), "rounds": rounds},
        goals=[Goal("snapshot_over_convert", RATIO_GOAL, "<=",
                    "a snapshot of a running guest costs at most 1.2x a bare copy of its "
                    "disk")],
        backends={"virt_type": driver.virt_type or "unknown"})
