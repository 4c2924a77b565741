"""Claims against the database: capacity, atomicity, and several schedulers at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import func, select

from stratus.compute.hosts import COMPUTE_BINARY
from stratus.compute.migrations import HEAD, SCRIPT_LOCATION, VERSION_TABLE
from stratus.compute.models import Allocation, ComputeServiceRecord
from stratus.compute.placement import (
    DISK_GB,
    MEMORY_MB,
    VCPU,
    InsufficientResources,
    InventorySpec,
    Placement,
)
from stratus.compute.scheduler.request_spec import FlavorSpec, RequestSpec
from stratus.compute.scheduler.selector import HostSelector, NoValidHost, SchedulerOptions
from stratus.core.db import Database, utcnow


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.upgrade(SCRIPT_LOCATION, VERSION_TABLE, known_head=HEAD)
    yield database
    await database.dispose()


async def add_host(db: Database, name: str, *, vcpus: int = 4, ram: int = 4096,
                   disk: int = 40, cpu_ratio: float = 1.0, provider: str | None = None) -> str:
    """``provider``: its resource provider's id (a random one by default)."""
    provider = provider or str(uuid.uuid4())
    async with db.session() as session:
        await Placement(session).ensure_provider(provider, name, {
            VCPU: InventorySpec(vcpus, allocation_ratio=cpu_ratio),
            MEMORY_MB: InventorySpec(ram, reserved=0),
            DISK_GB: InventorySpec(disk)})
        session.add(ComputeServiceRecord(uuid=str(uuid.uuid4()), host=name,
                                         binary=COMPUTE_BINARY, topic=f"compute.{name}",
                                         last_seen_up=utcnow()))
    return provider


async def test_claim_checks_capacity_and_free_releases(db: Database) -> None:
    provider = await add_host(db, "h1", vcpus=2, cpu_ratio=2.0)
    async with db.session() as session:
        placement = Placement(session)
        for i in range(4):  # 2 VCPU x ratio 2.0 = 4
            await placement.claim(f"vm-{i}", provider, {VCPU: 1, MEMORY_MB: 512})
        with pytest.raises(InsufficientResources):
            await placement.claim("vm-5", provider, {VCPU: 1})
        with pytest.raises(InsufficientResources):
            await placement.claim("vm-6", provider, {MEMORY_MB: 8192})
        assert await placement.usage(provider) == {VCPU: 4, MEMORY_MB: 2048}
    async with db.session() as session:
        assert await Placement(session).free("vm-0") == [provider]
        assert await Placement(session).allocations_of("vm-1") == {
            provider: {VCPU: 1, MEMORY_MB: 512}}
    async with db.session() as session:
        await Placement(session).claim("vm-5", provider, {VCPU: 1})


async def test_claims_on_one_provider_wait_for_each_other_rather_than_conflict(
        db: Database) -> None:
    """A claim made while another on the same provider is uncommitted succeeds once that
    one commits (it read the provider under its lock), instead of failing on a generation
    that moved under it."""
    provider = await add_host(db, "h1", vcpus=4)
    first_claimed, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with db.transaction() as txn:
            await Placement(txn.session).claim("vm-a", provider, {VCPU: 1})
            first_claimed.set()
            await release.wait()

    async def second() -> None:
        await first_claimed.wait()
        async with db.transaction() as txn:
            await Placement(txn.session).claim("vm-b", provider, {VCPU: 1})

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await first_claimed.wait()
    await asyncio.sleep(0.2)  # let the second claim reach the provider while the first holds it
    release.set()
    await asyncio.gather(*tasks)
    async with db.session() as session:
        assert await Placement(session).usage(provider) == {VCPU: 2}


async def test_parallel_schedulers_never_overcommit(db: Database) -> None:
    hosts = {await add_host(db, f"host-{i}", vcpus=4, ram=4096, disk=40): f"host-{i}"
             for i in range(5)}
    flavor = FlavorSpec(vcpus=1, memory_mb=1024, root_gb=5)  # 4 fit per host by RAM and CPU
    schedulers = [HostSelector(db, SchedulerOptions(host_subset_size=2)) for _ in range(2)]

    async def boot(n: int) -> str | None:
        spec = RequestSpec(instance_uuid=f"vm-{n}", project_id="p", flavor=flavor)
        try:
            return (await schedulers[n % 2].select_and_claim(spec))[0]
        except NoValidHost:
            return None

    results = await asyncio.gather(*(boot(n) for n in range(30)))
    placed = [r for r in results if r is not None]
    assert len(placed) == 20  # 5 hosts x 4: every slot used, never more
    async with db.session() as session:
        rows = (await session.execute(
            select(Allocation.provider_uuid, Allocation.resource_class,
                   func.sum(Allocation.used))
            .group_by(Allocation.provider_uuid, Allocation.resource_class))).all()
    for provider, rc, used in rows:
        limit = {VCPU: 4, MEMORY_MB: 4096, DISK_GB: 40}[rc]
        assert used <= limit, (hosts[provider], rc, used)
    assert {hosts[p] for p, _, _ in rows} == set(hosts.values())


async def test_claims_committed_together_count_each_other_exactly(db: Database) -> None:
    """Claims in one group-commit batch each see the ones before them (the provider's
    generation and usage as the batch left them): six claims of one VCPU on four fit four,
    the other two are refused, with one commit for the four."""
    from sqlalchemy import event

    from stratus.compute.models import ResourceProvider
    from stratus.core.db import GroupCommit, Txn

    provider = await add_host(db, "h1", vcpus=4)
    group = GroupCommit(db)
    commits: list[int] = []

    def count(*_: object) -> None:
        commits.append(1)

    def claim(n: int) -> Callable[[Txn], Awaitable[None]]:
        async def unit(txn: Txn) -> None:
            await Placement(txn).claim(f"vm-{n}", provider, {VCPU: 1, MEMORY_MB: 1})
        return unit

    event.listen(db.engine.sync_engine, "commit", count)
    try:
        outcomes = await asyncio.gather(*(group.run(claim(n), key=provider)
                                          for n in range(6)), return_exceptions=True)
    finally:
        event.remove(db.engine.sync_engine, "commit", count)
    assert outcomes[:4] == [None] * 4
    assert all(isinstance(o, InsufficientResources) for o in outcomes[4:])
    assert len(commits) == 1
    async with db.session() as session:
        assert await Placement(session).usage(provider) == {VCPU: 4, MEMORY_MB: 4}
        row = await session.get(ResourceProvider, provider)
        assert row is not None and row.generation == 4  # from 0: bumped by each claim


async def test_one_scheduler_s_concurrent_claims_share_commits(db: Database) -> None:
    """Decisions of one scheduler made together commit their claims together, and still
    fill the hosts exactly."""
    from sqlalchemy import event

    for i in range(3):
        await add_host(db, f"host-{i}", vcpus=4, ram=4096, disk=40)
    selector = HostSelector(db)
    flavor = FlavorSpec(vcpus=1, memory_mb=1024, root_gb=5)
    commits: list[int] = []

    def count(*_: object) -> None:
        commits.append(1)

    async def boot(n: int) -> str | None:
        try:
            return (await selector.select_and_claim(RequestSpec(f"vm-{n}", "p", flavor)))[0]
        except NoValidHost:
            return None

    await selector.refresh()
    event.listen(db.engine.sync_engine, "commit", count)
    try:
        results = await asyncio.gather(*(boot(n) for n in range(14)))
    finally:
        event.remove(db.engine.sync_engine, "commit", count)
    assert sorted(r for r in results if r is not None) == sorted(
        f"host-{i}" for i in range(3) for _ in range(4))
    assert len(commits) < 12, len(commits)


async def test_down_or_disabled_hosts_get_nothing(db: Database) -> None:
    await add_host(db, "up")
    await add_host(db, "stale")
    await add_host(db, "off")
    async with db.session() as session:
        services = {s.host: s for s in await session.scalars(select(ComputeServiceRecord))}
        services["stale"].last_seen_up = utcnow().replace(year=2000)
        services["off"].disabled = True
    selector = HostSelector(db)
    flavor = FlavorSpec(vcpus=1, memory_mb=1, root_gb=0)
    chosen = {(await selector.select_and_claim(RequestSpec(f"vm-{n}", "p", flavor)))[0]
              for n in range(4)}
    assert chosen == {"up"}
    with pytest.raises(NoValidHost, match="ResourceFilter removed 1 of 1"):
        await selector.select_and_claim(RequestSpec("vm-full", "p", flavor))
