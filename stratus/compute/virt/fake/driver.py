"""A hypervisor that keeps its guests in memory.

It behaves like a real one where the compute agent can tell: guests have power states and
a console log, capacity runs out, operations take time (``latency``), and any operation can
be made to fail on demand (``fail_next``), so failed builds and reschedules can be tested
and benchmarked at scale without a single VM.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratus.compute.virt.driver import (
    DiskSnapshot,
    GuestInfo,
    GuestNotFound,
    GuestSpec,
    HostResources,
    MigrationAborted,
    MigrationProgress,
    PowerState,
    ProgressCallback,
    RescueSpec,
    VirtDriver,
    VirtError,
)

OPERATIONS = ("spawn", "destroy", "power_off", "power_on", "reboot", "attach_volume",
              "detach_volume", "snapshot", "attach_interface", "detach_interface",
              "migrate_disk_and_power_off", "finish_migration", "pre_live_migration",
              "live_migration", "pause", "unpause", "suspend", "resume", "rescue", "unrescue",
              "trigger_crash_dump", "set_admin_password")
#: A simulated live migration copies the guest's memory in this many rounds.
LIVE_MIGRATION_ROUNDS = 4


@dataclass(frozen=True)
class FakeDriverOptions:
    vcpus: int = 64
    memory_mb: int = 262144
    local_gb: int = 4000
    #: Seconds each operation takes: one figure for all, or per operation name.
    latency: float | dict[str, float] = 0.0

    def delay(self, operation: str) -> float:
        if isinstance(self.latency, dict):
            return self.latency.get(operation, 0.0)
        return self.latency


@dataclass
class _Guest:
    spec: GuestSpec
    power_state: PowerState
    console: list[str] = field(default_factory=list)
    #: Attached volumes: mountpoint → connection_info.
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: While rescued: what the rescue booted (None otherwise).
    rescue: RescueSpec | None = None
    #: Ephemeral and swap disks: device → (kind, size in MiB).
    local_disks: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: Plugged NICs: MAC → VIF.
    nics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def connect_volumes(self) -> None:
        """The spec's volumes, as the host connected them, on the guest."""
        self.volumes = {}
        for device in self.spec.block_devices:
            self.volumes[device["mountpoint"]] = dict(device.get("connection_info") or {})
            self.log(f"disk: {device['mountpoint']} (volume)")

    def log(self, line: str) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%H:%M:%S")
        self.console.append(f"[{stamp}] {line}")


class FakeDriver(VirtDriver):
    name = "fake"

    def __init__(self, options: FakeDriverOptions | None = None) -> None:
        self.options = options or FakeDriverOptions()
        self.host = "fake-host"
        self._guests: dict[str, _Guest] = {}
        self._failures: dict[str, list[str]] = defaultdict(list)
        #: Guests a cold move keeps aside on the source until it is confirmed or reverted.
        self._aside: dict[str, _Guest] = {}
        #: Guests a live migration is bringing here, not yet running.
        self._incoming: dict[str, _Guest] = {}
        #: Live migrations under way from here: uuid → what was asked of it ("abort",
        #: "complete") or "".
        self._migrating: dict[str, str] = {}
        #: Operations performed, in order: (operation, uuid). Tests read it.
        self.calls: list[tuple[str, str]] = []
        #: The last administrator password set on each guest (``set_admin_password``).
        self.admin_passwords: dict[str, str] = {}

    def fail_next(self, operation: str, message: str = "injected failure",
                  times: int = 1) -> None:
        """Make the next ``times`` calls of ``operation`` raise ``VirtError(message)``."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        self._failures[operation].extend([message] * times)

    async def _step(self, operation: str, uuid: str) -> None:
        self.calls.append((operation, uuid))
        delay = self.options.delay(operation)
        if delay:
            await asyncio.sleep(delay)
        if self._failures[operation]:
            raise VirtError(self._failures[operation].pop(0))

    def _guest(self, uuid: str) -> _Guest:
        guest = self._guests.get(uuid)
        if guest is None:
            raise GuestNotFound(f"Guest {uuid} not found on {self.host}.")
        return guest

    async def init_host(self, host: str) -> None:
        self.host = host

    async def get_available_resource(self) -> HostResources:
        return HostResources(hostname=self.host, vcpus=self.options.vcpus,
                             memory_mb=self.options.memory_mb, local_gb=self.options.local_gb,
                             hypervisor_type="fake", hypervisor_version=1000)

    async def list_guests(self) -> list[str]:
        return list(self._guests)

    async def spawn(self, guest: GuestSpec) -> None:
        await self._step("spawn", guest.uuid)
        if guest.uuid in self._guests:
            raise VirtError(f"Guest {guest.uuid} already exists on {self.host}.")
        used_ram = sum(g.spec.memory_mb for g in self._guests.values())
        if used_ram + guest.memory_mb > self.options.memory_mb:
            raise VirtError(f"Not enough memory on {self.host} for {guest.name}.")
        created = _Guest(guest, PowerState.RUNNING)
        created.log(f"Booting {guest.name} ({guest.vcpus} vCPU, {guest.memory_mb} MB)")
        for vif in guest.network_info:
            created.nics[str(vif.get("address", ""))] = dict(vif)
            ips = " ".join(ip.get("address", "") for ip in vif.get("ips", []))
            created.log(f"eth: {vif.get('address', '?')} {ips}".rstrip())
        created.connect_volumes()
        for disk in guest.local_disks:
            created.local_disks[disk.device] = (disk.kind, disk.size_mb)
            created.log(f"disk: {disk.device} ({disk.kind}, {disk.size_mb} MiB)")
        created.log(f"{guest.name} login:")
        self._guests[guest.uuid] = created

    async def destroy(self, uuid: str, *, keep_shared_disk: bool = False) -> None:
        await self._step("destroy", uuid)
        self._guests.pop(uuid, None)

    async def power_off(self, uuid: str, grace_period: float = 60.0) -> None:
        await self._step("power_off", uuid)
        guest = self._guest(uuid)
        guest.power_state = PowerState.SHUTDOWN
        guest.log("Power down.")

    async def power_on(self, uuid: str) -> None:
        await self._step("power_on", uuid)
        guest = self._guest(uuid)
        guest.power_state = PowerState.RUNNING
        guest.log(f"Booting {guest.spec.name}")

    async def reboot(self, uuid: str, *, hard: bool) -> None:
        await self._step("reboot", uuid)
        guest = self._guest(uuid)
        guest.power_state = PowerState.RUNNING
        guest.log("Reset (hard reboot)." if hard else "Restarting system.")

    async def get_info(self, uuid: str) -> GuestInfo:
        guest = self._guest(uuid)
        return GuestInfo(power_state=guest.power_state, vcpus=guest.spec.vcpus,
                         memory_mb=guest.spec.memory_mb)

    async def get_console_output(self, uuid: str) -> str:
        return "\n".join(self._guest(uuid).console) + "\n"

    async def attach_volume(self, uuid: str, connection_info: dict[str, Any],
                            mountpoint: str) -> None:
        await self._step("attach_volume", uuid)
        guest = self._guest(uuid)
        if mountpoint in guest.volumes:
            raise VirtError(f"{mountpoint} is already in use on {guest.spec.name}.")
        guest.volumes[mountpoint] = dict(connection_info)
        guest.log(f"Attached volume at {mountpoint}")

    async def detach_volume(self, uuid: str, connection_info: dict[str, Any],
                            mountpoint: str) -> None:
        await self._step("detach_volume", uuid)
        guest = self._guests.get(uuid)
        if guest is not None and guest.volumes.pop(mountpoint, None) is not None:
            guest.log(f"Detached volume from {mountpoint}")

    # Guest state actions ------------------------------------------------------------------

    def _expect(self, guest: _Guest, wanted: tuple[PowerState, ...], operation: str) -> None:
        """Refuse an operation a real hypervisor would refuse in this power state."""
        if guest.power_state not in wanted:
            raise VirtError(f"Cannot {operation} {guest.spec.name}: it is "
                            f"{guest.power_state.name}.")

    async def pause(self, uuid: str) -> None:
        await self._step("pause", uuid)
        guest = self._guest(uuid)
        self._expect(guest, (PowerState.RUNNING,), "pause")
        guest.power_state = PowerState.PAUSED

    async def unpause(self, uuid: str) -> None:
        await self._step("unpause", uuid)
        guest = self._guest(uuid)
        self._expect(guest, (PowerState.PAUSED,), "unpause")
        guest.power_state = PowerState.RUNNING

    async def suspend(self, uuid: str) -> None:
        await self._step("suspend", uuid)
        guest = self._guest(uuid)
        self._expect(guest, (PowerState.RUNNING,), "suspend")
        guest.power_state = PowerState.SUSPENDED

    async def resume(self, uuid: str) -> None:
        await self._step("resume", uuid)
        guest = self._guest(uuid)
        self._expect(guest, (PowerState.SUSPENDED,), "resume")
        guest.power_state = PowerState.RUNNING

    async def rescue(self, uuid: str, rescue: RescueSpec) -> None:
        await self._step("rescue", uuid)
        guest = self._guest(uuid)
        guest.rescue = rescue
        guest.power_state = PowerState.RUNNING
        guest.log(f"Booting {guest.spec.name} in rescue mode (own disk as vdb)")

    async def unrescue(self, uuid: str) -> None:
        await self._step("unrescue", uuid)
        guest = self._guest(uuid)
        if guest.rescue is None:
            raise VirtError(f"{guest.spec.name} is not in rescue mode.")
        guest.rescue = None
        guest.power_state = PowerState.RUNNING
        guest.log(f"Booting {guest.spec.name}")

    async def trigger_crash_dump(self, uuid: str) -> None:
        await self._step("trigger_crash_dump", uuid)
        guest = self._guest(uuid)
        self._expect(guest, (PowerState.RUNNING,), "send an NMI to")
        guest.log("NMI received: kernel crash dump")

    async def set_admin_password(self, uuid: str, password: str) -> None:
        await self._step("set_admin_password", uuid)
        self._guest(uuid)
        self.admin_passwords[uuid] = password

    def config_drive(self, uuid: str) -> dict[str, bytes] | None:
        """The files of the config drive the guest was spawned with (None: it has none);
        tests read it."""
        return self._guest(uuid).spec.config_drive

    def rescued_with(self, uuid: str) -> RescueSpec | None:
        """What the guest's rescue booted (None when not rescued); tests read it."""
        return self._guest(uuid).rescue

    async def snapshot(self, uuid: str) -> DiskSnapshot:
        """A real, empty qcow2 of the guest's root disk size (so an uploaded snapshot is an
        image that boots anywhere a real driver runs: it just has nothing on it)."""
        await self._step("snapshot", uuid)
        guest = self._guest(uuid)
        if any(d.get("mountpoint") == "/dev/vda" for d in guest.spec.block_devices):
            raise VirtError(f"{guest.spec.name} boots from a volume: it has no local disk.")
        path = await asyncio.to_thread(_empty_qcow2, uuid, max(1, guest.spec.root_gb))
        guest.log("Snapshot taken.")
        return DiskSnapshot(path=path, disk_format="qcow2")

    async def attach_interface(self, uuid: str, vif: dict[str, Any]) -> None:
        await self._step("attach_interface", uuid)
        guest = self._guest(uuid)
        mac = str(vif.get("address", ""))
        if mac in guest.nics:
            raise VirtError(f"A NIC with MAC {mac} is already plugged into {guest.spec.name}.")
        guest.nics[mac] = dict(vif)
        guest.log(f"eth: hot-plugged {mac}")

    async def detach_interface(self, uuid: str, vif: dict[str, Any]) -> None:
        await self._step("detach_interface", uuid)
        guest = self._guests.get(uuid)
        mac = str(vif.get("address", ""))
        if guest is not None and guest.nics.pop(mac, None) is not None:
            guest.log(f"eth: unplugged {mac}")

    def interfaces(self, uuid: str) -> dict[str, dict[str, Any]]:
        """The NICs plugged into a guest (MAC → VIF); tests read it."""
        return dict(self._guest(uuid).nics)

    def local_disks(self, uuid: str) -> dict[str, tuple[str, int]]:
        """A guest's ephemeral and swap disks (device → (kind, MiB)); tests read it."""
        return dict(self._guest(uuid).local_disks)

    def volumes(self, uuid: str) -> dict[str, dict[str, Any]]:
        """What is attached to a guest (mountpoint → connection_info); tests read it."""
        return dict(self._guest(uuid).volumes)

    def crash(self, uuid: str) -> None:
        """Make a guest die on its own, as a real one can (for power-state sync tests)."""
        self._guest(uuid).power_state = PowerState.CRASHED

    # Moves ---------------------------------------------------------------------------------

    async def migrate_disk_and_power_off(self, uuid: str, dest_host: str) -> dict[str, Any]:
        await self._step("migrate_disk_and_power_off", uuid)
        guest = self._guests.pop(uuid, None) or self._guest(uuid)
        guest.power_state = PowerState.SHUTDOWN
        guest.log(f"Power down for a move to {dest_host}.")
        self._aside[uuid] = guest
        # The "disk": what the guest wrote so far, its console.
        return {"source_host": self.host, "console": list(guest.console)}

    def _check_room(self, spec: GuestSpec) -> None:
        used_ram = sum(g.spec.memory_mb for g in self._guests.values())
        if used_ram + spec.memory_mb > self.options.memory_mb:
            raise VirtError(f"Not enough memory on {self.host} for {spec.name}.")

    async def finish_migration(self, guest: GuestSpec, disk_info: dict[str, Any], *,
                               power_on: bool) -> None:
        await self._step("finish_migration", guest.uuid)
        if guest.uuid in self._guests:
            raise VirtError(f"Guest {guest.uuid} already exists on {self.host}.")
        self._check_room(guest)
        moved = _Guest(guest, PowerState.RUNNING if power_on else PowerState.SHUTDOWN,
                       console=list(disk_info.get("console", [])))
        moved.log(f"Moved from {disk_info.get('source_host', '?')}: {guest.vcpus} vCPU, "
                  f"{guest.memory_mb} MB")
        moved.connect_volumes()
        self._guests[guest.uuid] = moved

    async def confirm_migration(self, uuid: str) -> None:
        self._aside.pop(uuid, None)

    async def finish_revert_migration(self, uuid: str, *, power_on: bool) -> None:
        guest = self._aside.pop(uuid, None)
        if guest is None:
            raise GuestNotFound(f"Guest {uuid} was not kept aside on {self.host}.")
        guest.power_state = PowerState.RUNNING if power_on else PowerState.SHUTDOWN
        guest.log("Move reverted.")
        self._guests[uuid] = guest

    async def live_migration_source_data(self, uuid: str) -> dict[str, Any]:
        return {"console": list(self._guest(uuid).console)}

    async def pre_live_migration(self, guest: GuestSpec,
                                 source_data: dict[str, Any]) -> dict[str, Any]:
        await self._step("pre_live_migration", guest.uuid)
        if guest.uuid in self._guests:
            raise VirtError(f"Guest {guest.uuid} already exists on {self.host}.")
        self._check_room(guest)
        incoming = _Guest(guest, PowerState.PAUSED,
                          console=list(source_data.get("console", [])))
        incoming.connect_volumes()
        self._incoming[guest.uuid] = incoming
        return {"dest_host": self.host}

    async def live_migration(self, uuid: str, dest_host: str, migrate_data: dict[str, Any],
                             on_progress: ProgressCallback | None = None) -> None:
        guest = self._guest(uuid)
        self._migrating[uuid] = ""
        try:
            await self._step("live_migration", uuid)
            total = guest.spec.memory_mb * 1024 * 1024
            pause = self.options.delay("live_migration_round")
            for done in range(1, LIVE_MIGRATION_ROUNDS + 1):
                if self._migrating.get(uuid) == "abort":
                    raise MigrationAborted(f"The live migration of {uuid} was aborted.")
                if self._migrating.get(uuid) == "complete":
                    done = LIVE_MIGRATION_ROUNDS
                processed = total * done // LIVE_MIGRATION_ROUNDS
                # Progress is worth reporting only while the copy takes time.
                if on_progress is not None and (pause or done == LIVE_MIGRATION_ROUNDS):
                    await on_progress(MigrationProgress(
                        memory_total=total, memory_processed=processed,
                        memory_remaining=total - processed))
                if done == LIVE_MIGRATION_ROUNDS:
                    break
                if pause:
                    await asyncio.sleep(pause)
        finally:
            self._migrating.pop(uuid, None)
        guest.log(f"Live-migrated to {dest_host}.")
        self._guests.pop(uuid, None)

    async def post_live_migration_at_destination(self, uuid: str) -> None:
        guest = self._incoming.pop(uuid, None)
        if guest is None:
            raise GuestNotFound(f"No live migration of {uuid} arrived at {self.host}.")
        guest.power_state = PowerState.RUNNING
        guest.log(f"Running on {self.host}.")
        self._guests[uuid] = guest

    async def rollback_live_migration_at_destination(self, uuid: str) -> None:
        self._incoming.pop(uuid, None)

    def _asked(self, uuid: str, what: str) -> None:
        if uuid not in self._migrating:
            raise VirtError(f"No live migration of {uuid} is under way on {self.host}.")
        self._migrating[uuid] = what

    async def live_migration_abort(self, uuid: str) -> None:
        self._asked(uuid, "abort")

    async def live_migration_force_complete(self, uuid: str) -> None:
        self._asked(uuid, "complete")


def _empty_qcow2(uuid: str, size_gb: int) -> Path:
    """A new empty qcow2 of ``size_gb`` in the system's temporary directory."""
    handle, name = tempfile.mkstemp(prefix=f"snapshot-{uuid}-", suffix=".qcow2")
    os.close(handle)
    path = Path(name)
    try:
        done = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", name,
                               f"{size_gb}G"], capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        path.unlink(missing_ok=True)
        raise VirtError("The fake driver writes snapshots with qemu-img, which is not "
                        "installed.") from exc
    if done.returncode != 0:
        path.unlink(missing_ok=True)
        raise VirtError(f"Could not write the snapshot: {done.stderr.strip()}")
    return path
