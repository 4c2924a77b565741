"""A hypervisor that keeps its guests in memory.

It behaves like a real one where the compute agent can tell: guests have power states and
a console log, capacity runs out, operations take time (``latency``), and any operation can
be made to fail on demand (``fail_next``), so failed builds and reschedules can be tested
and benchmarked at scale without a single VM.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from stratus.compute.virt.driver import (
    GuestInfo,
    GuestNotFound,
    GuestSpec,
    HostResources,
    PowerState,
    RescueSpec,
    VirtDriver,
    VirtError,
)

OPERATIONS = ("spawn", "destroy", "power_off", "power_on", "reboot", "attach_volume",
              "detach_volume", "pause", "unpause", "suspend", "resume", "rescue", "unrescue",
              "trigger_crash_dump", "set_admin_password")


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
            ips = " ".join(ip.get("address", "") for ip in vif.get("ips", []))
            created.log(f"eth: {vif.get('address', '?')} {ips}".rstrip())
        created.log(f"{guest.name} login:")
        self._guests[guest.uuid] = created

    async def destroy(self, uuid: str) -> None:
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

    def rescued_with(self, uuid: str) -> RescueSpec | None:
        """What the guest's rescue booted (None when not rescued); tests read it."""
        return self._guest(uuid).rescue

    def volumes(self, uuid: str) -> dict[str, dict[str, Any]]:
        """What is attached to a guest (mountpoint → connection_info); tests read it."""
        return dict(self._guest(uuid).volumes)

    def crash(self, uuid: str) -> None:
        """Make a guest die on its own, as a real one can (for power-state sync tests)."""
        self._guest(uuid).power_state = PowerState.CRASHED
