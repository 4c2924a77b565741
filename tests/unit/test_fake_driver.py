"""The fake virt driver, tested as a driver: the contract the compute agent relies on."""

from __future__ import annotations

import asyncio

import pytest

from stratus.compute.virt.driver import (
    GuestNotFound,
    GuestSpec,
    MigrationAborted,
    MigrationProgress,
    PowerState,
    RescueSpec,
    VirtError,
)
from stratus.compute.virt.fake import FakeDriver, FakeDriverOptions


def guest(uuid: str = "g-1", memory_mb: int = 512) -> GuestSpec:
    return GuestSpec(uuid=uuid, name=f"vm-{uuid}", vcpus=1, memory_mb=memory_mb, root_gb=1,
                     network_info=[{"address": "fa:16:3e:00:00:01",
                                   "ips": [{"address": "10.0.0.5"}]}])


async def test_life_cycle() -> None:
    driver = FakeDriver()
    await driver.init_host("compute-1")
    resources = await driver.get_available_resource()
    assert (resources.hostname, resources.hypervisor_type) == ("compute-1", "fake")

    await driver.spawn(guest())
    assert await driver.list_guests() == ["g-1"]
    assert (await driver.get_info("g-1")).power_state is PowerState.RUNNING
    console = await driver.get_console_output("g-1")
    assert "Booting vm-g-1" in console and "10.0.0.5" in console

    await driver.power_off("g-1")
    assert (await driver.get_info("g-1")).power_state is PowerState.SHUTDOWN
    await driver.power_on("g-1")
    await driver.reboot("g-1", hard=True)
    assert (await driver.get_info("g-1")).power_state is PowerState.RUNNING
    assert "Reset (hard reboot)." in await driver.get_console_output("g-1")

    await driver.destroy("g-1")
    await driver.destroy("g-1")  # idempotent
    assert await driver.list_guests() == []
    with pytest.raises(GuestNotFound):
        await driver.get_info("g-1")
    assert [op for op, _ in driver.calls] == ["spawn", "power_off", "power_on", "reboot",
                                              "destroy", "destroy"]


async def test_injected_failures_leave_nothing_behind() -> None:
    driver = FakeDriver()
    driver.fail_next("spawn", "disk on fire", times=2)
    for _ in range(2):
        with pytest.raises(VirtError, match="disk on fire"):
            await driver.spawn(guest())
    assert await driver.list_guests() == []
    await driver.spawn(guest())  # the third works
    with pytest.raises(ValueError):
        driver.fail_next("teleport")


async def test_capacity_runs_out() -> None:
    driver = FakeDriver(FakeDriverOptions(memory_mb=1024))
    await driver.spawn(guest("a", memory_mb=768))
    with pytest.raises(VirtError, match="Not enough memory"):
        await driver.spawn(guest("b", memory_mb=512))
    with pytest.raises(VirtError, match="already exists"):
        await driver.spawn(guest("a", memory_mb=1))


async def test_latency_per_operation(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def record(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr("stratus.compute.virt.fake.driver.asyncio.sleep", record)
    driver = FakeDriver(FakeDriverOptions(latency={"spawn": 0.25}))
    await driver.spawn(guest())
    await driver.destroy("g-1")
    assert slept == [0.25]  # spawn waits as configured; destroy has no latency


async def test_crash_is_seen_as_a_power_state() -> None:
    driver = FakeDriver()
    await driver.spawn(guest())
    driver.crash("g-1")
    assert (await driver.get_info("g-1")).power_state is PowerState.CRASHED


# Moves --------------------------------------------------------------------------------------

async def test_a_cold_move_keeps_the_guest_aside_until_confirmed_or_reverted() -> None:
    source, dest = FakeDriver(), FakeDriver()
    await source.init_host("a")
    await dest.init_host("b")
    spec = GuestSpec(uuid="g1", name="g", vcpus=1, memory_mb=512, root_gb=1)
    await source.spawn(spec)
    disk = await source.migrate_disk_and_power_off("g1", "b")
    assert await source.list_guests() == []  # aside, not a guest any more
    bigger = GuestSpec(uuid="g1", name="g", vcpus=2, memory_mb=1024, root_gb=1)
    await dest.finish_migration(bigger, disk, power_on=True)
    info = await dest.get_info("g1")
    assert (info.power_state, info.vcpus, info.memory_mb) == (PowerState.RUNNING, 2, 1024)
    assert "Booting g" in await dest.get_console_output("g1")  # the disk came along
    # Revert: the destination's guest goes, the source's comes back as it was.
    await dest.destroy("g1")
    await source.finish_revert_migration("g1", power_on=True)
    assert (await source.get_info("g1")).memory_mb == 512
    # A second move, confirmed: nothing is left aside.
    disk = await source.migrate_disk_and_power_off("g1", "b")
    await dest.finish_migration(bigger, disk, power_on=False)
    assert (await dest.get_info("g1")).power_state == PowerState.SHUTDOWN
    await source.confirm_migration("g1")
    with pytest.raises(GuestNotFound):
        await source.finish_revert_migration("g1", power_on=True)


async def test_a_live_migration_can_be_aborted_or_forced() -> None:
    slow = FakeDriverOptions(latency={"live_migration_round": 0.05})
    source, dest = FakeDriver(slow), FakeDriver(slow)
    spec = GuestSpec(uuid="g2", name="g", vcpus=1, memory_mb=256, root_gb=1)
    await source.spawn(spec)
    data = await dest.pre_live_migration(spec, await source.live_migration_source_data("g2"))
    running = asyncio.ensure_future(source.live_migration("g2", "b", data))
    await asyncio.sleep(0.02)
    await source.live_migration_abort("g2")
    with pytest.raises(MigrationAborted):
        await running
    await dest.rollback_live_migration_at_destination("g2")
    assert await source.list_guests() == ["g2"] and await dest.list_guests() == []

    data = await dest.pre_live_migration(spec, await source.live_migration_source_data("g2"))
    seen: list[MigrationProgress] = []

    async def progress(p: MigrationProgress) -> None:
        seen.append(p)

    running = asyncio.ensure_future(source.live_migration("g2", "b", data, progress))
    await asyncio.sleep(0.02)
    await source.live_migration_force_complete("g2")
    await running
    await dest.post_live_migration_at_destination("g2")
    assert await source.list_guests() == [] and await dest.list_guests() == ["g2"]
    assert (await dest.get_info("g2")).power_state == PowerState.RUNNING
    assert seen and seen[-1].memory_remaining == 0
    with pytest.raises(VirtError):
        await source.live_migration_abort("g2")  # nothing under way

async def test_pause_suspend_rescue_nmi_and_password() -> None:
    driver = FakeDriver()
    await driver.spawn(guest())
    await driver.pause("g-1")
    assert (await driver.get_info("g-1")).power_state == PowerState.PAUSED
    with pytest.raises(VirtError, match="PAUSED"):
        await driver.suspend("g-1")  # a real hypervisor refuses it too
    await driver.unpause("g-1")
    await driver.suspend("g-1")
    assert (await driver.get_info("g-1")).power_state == PowerState.SUSPENDED
    with pytest.raises(VirtError):
        await driver.unpause("g-1")
    await driver.resume("g-1")
    assert (await driver.get_info("g-1")).power_state == PowerState.RUNNING

    await driver.rescue("g-1", RescueSpec(admin_password="pw"))
    spec = driver.rescued_with("g-1")
    assert spec is not None and spec.admin_password == "pw"
    await driver.unrescue("g-1")
    assert driver.rescued_with("g-1") is None
    with pytest.raises(VirtError, match="not in rescue mode"):
        await driver.unrescue("g-1")

    await driver.trigger_crash_dump("g-1")
    await driver.set_admin_password("g-1", "s3cret")
    assert driver.admin_passwords == {"g-1": "s3cret"}
    assert "NMI received" in await driver.get_console_output("g-1")
    driver.fail_next("pause", "no")
    with pytest.raises(VirtError, match="no"):
        await driver.pause("g-1")
    assert (await driver.get_info("g-1")).power_state == PowerState.RUNNING
    with pytest.raises(GuestNotFound):
        await driver.pause("nope")
