"""The scheduler's claim transaction: the claim, the placement and the scheduling event
commit together, or nothing does; on PostgreSQL in fewer statements."""

from __future__ import annotations

import asyncio
import re
import uuid as uuidlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, text

from stratus.compute import lifecycle, states
from stratus.compute.conductor.manager import ConductorManager
from stratus.compute.instances import Instances
from stratus.compute.models import Instance, InstanceAction, InstanceActionEvent
from stratus.compute.objects import BUILD_EVENT, BuildRequest, Fault, FlavorInfo, InstanceRecord
from stratus.compute.placement import Placement, provider_uuid
from stratus.compute.scheduler.manager import SCHEDULE_EVENT, SchedulerManager
from stratus.compute.scheduler.selector import HostSelector
from stratus.compute.service import ComputeRuntime
from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.core.policy import Caller
from tests.dbcount import statements_of
from tests.integration.compute.test_placement import add_host

CTX = RequestContext(user_id="u", project_id="p", roles=["admin"], request_id="req-claim")
FLAVOR = FlavorInfo(id="1", name="m1.tiny", vcpus=1, ram=512, disk=1)


class Agents:
    """The hosts' side of the bus: the builds the scheduler cast, recorded."""

    def __init__(self) -> None:
        self.builds: list[tuple[str, str]] = []
        self.alternates: list[list[str]] = []
        #: The record each cast carried (None: the host takes the build up itself).
        self.records: list[InstanceRecord | None] = []

    async def build_and_run_instance(self, ctx: RequestContext, host: str, instance_uuid: str,
                                     alternates: list[str], *args: Any,
                                     instance: InstanceRecord | None = None,
                                     **kwargs: Any) -> None:
        self.builds.append((host, instance_uuid))
        self.alternates.append(alternates)
        self.records.append(instance)


@pytest.fixture
async def runtime(db_url: str, tmp_path: Path) -> AsyncIterator[ComputeRuntime]:
    compute = ComputeRuntime(Settings(data_dir=tmp_path, database_url=db_url))
    await compute.start()
    await add_host(compute.db, "h1")
    yield compute
    await compute.db.dispose()


async def _scheduling(runtime: ComputeRuntime, *, deleted: bool = False) -> str:
    uuid = str(uuidlib.uuid4())
    async with runtime.service() as svc:
        svc.session.add(Instance(
            uuid=uuid, display_name="vm", hostname="vm", project_id="p", user_id="u",
            reservation_id="r-1", flavor_id="1", vm_state=states.BUILDING,
            task_state=states.SCHEDULING, flavor=FLAVOR.model_dump()))
        await svc.session.flush()
        await svc.instances.start_action(CTX, uuid, "create")
        if deleted:
            await svc.instances.soft_delete(uuid)
    return uuid


async def _schedule(runtime: ComputeRuntime, uuid: str,
                    selector: HostSelector | None = None) -> Agents:
    agents = Agents()
    manager = SchedulerManager(runtime, selector or HostSelector(runtime.db),
                               agents)  # type: ignore[arg-type]
    await manager.schedule_and_build(CTX, BuildRequest(instance_uuids=[uuid], project_id="p",
                                                       flavor=FLAVOR))
    return agents


async def _events(runtime: ComputeRuntime, uuid: str) -> list[tuple[str, str | None]]:
    async with runtime.service(write=False) as svc:
        action = await svc.session.scalar(select(InstanceAction).where(
            InstanceAction.instance_uuid == uuid))
        assert action is not None
        return [(e.event, e.result) for e in await svc.session.scalars(
            select(InstanceActionEvent).where(InstanceActionEvent.action_id == action.id))]


async def _held(runtime: ComputeRuntime, uuid: str) -> dict[str, dict[str, int]]:
    async with runtime.service(write=False) as svc:
        return await Placement(svc.session).allocations_of(uuid)


#: A placed instance's events: the scheduler's (whole), the build's started on its host.
PLACED_EVENTS = [(SCHEDULE_EVENT, "Success"), (BUILD_EVENT, None)]


async def test_a_placement_commits_with_its_claim_and_event(runtime: ComputeRuntime) -> None:
    """The instance gets its host, its claim and its scheduling event (Success), and is
    taken up for its host as the host's ``begin_build`` did (``networking``, the build's
    event started on the host), the cast carrying its record; scheduled again by a
    scheduler whose view counts that claim (a redelivered request: the other host is
    chosen), it keeps its one claim and its events, and the build is cast to the host it
    holds, without a record (the host checks it with ``begin_build``)."""
    await add_host(runtime.db, "h2")
    selector = HostSelector(runtime.db)
    uuid = await _scheduling(runtime)
    agents = await _schedule(runtime, uuid, selector)
    [(host, built)] = agents.builds
    assert built == uuid
    async with runtime.service(write=False) as svc:
        instance = await svc.instances.get(uuid)
    assert (instance.host, instance.task_state) == (host, states.NETWORKING)
    [record] = agents.records
    assert record is not None
    assert (record.uuid, record.host, record.task_state, record.vm_state) == (
        uuid, host, states.NETWORKING, states.BUILDING)
    assert record.flavor == FLAVOR
    claims = await _held(runtime, uuid)
    assert list(claims.values()) == [{"VCPU": 1, "MEMORY_MB": 512, "DISK_GB": 1}]
    assert await _events(runtime, uuid) == PLACED_EVENTS
    async with runtime.service(write=False) as svc:
        started = await svc.session.scalar(select(InstanceActionEvent.host).where(
            InstanceActionEvent.event == BUILD_EVENT))
    assert started == host

    again = await _schedule(runtime, uuid, selector)
    assert again.builds == [(host, uuid)]
    assert again.records == [None]
    assert await _held(runtime, uuid) == claims
    assert await _events(runtime, uuid) == PLACED_EVENTS


async def test_an_instance_deleted_before_its_placement_keeps_no_claim(
        runtime: ComputeRuntime) -> None:
    """Deleted while it waited for the scheduler: no host, no claim, no event, no build."""
    uuid = await _scheduling(runtime, deleted=True)
    agents = await _schedule(runtime, uuid)
    assert agents.builds == []
    assert await _held(runtime, uuid) == {}
    assert await _events(runtime, uuid) == []
    async with runtime.service(write=False) as svc:
        assert (await svc.instances.get(uuid, include_deleted=True)).host is None


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_the_claim_transaction_is_four_statements_on_postgresql(
        runtime: ComputeRuntime) -> None:
    """The provider's lock, its inventories with their usage, the allocations with the
    generation's bump, and the placement with its event: four statements between BEGIN
    and COMMIT (six before: the allocations, the bump, the placement and the event were
    one each)."""
    selector = HostSelector(runtime.db)
    # The first decision loads the host view; the next one reads nothing before its claim.
    await _schedule(runtime, await _scheduling(runtime), selector)
    second = await _scheduling(runtime)
    with statements_of(runtime.db.engine) as seen:
        await _schedule(runtime, second, selector)
    claim = [sql for sql, _ in seen.seen if sql.split(None, 1)[0].upper() in (
        "SELECT", "UPDATE", "INSERT", "WITH", "DELETE")]
    assert len(claim) == 4, claim
    assert await _events(runtime, second) == PLACED_EVENTS


async def test_a_redelivered_build_on_the_host_it_holds_is_cast_there_again(
        runtime: ComputeRuntime) -> None:
    """The scheduler placed and claimed, then died before its cast (or the broker delivered
    the request again): a new scheduler, whose view is the database's, chooses the same
    host (it weighs the other, smaller, lower). It recognises the placement, keeps the one claim
    and event, and casts the build to that host with the alternates the first cast had (a
    failed build reschedules from them); it neither raises (the request would go to the
    dead-letter queue, the instance left ``scheduling`` for good) nor claims twice."""
    await add_host(runtime.db, "h2", vcpus=2, ram=1024)
    uuid = await _scheduling(runtime)
    first = await _schedule(runtime, uuid)
    assert first.builds == [("h1", uuid)]
    assert first.alternates == [["h2"]]
    claims = await _held(runtime, uuid)

    again = await _schedule(runtime, uuid)  # a new HostSelector: a restarted scheduler
    assert again.builds == [("h1", uuid)]
    assert again.alternates == [["h2"]]
    assert again.records == [None]
    assert await _held(runtime, uuid) == claims
    assert await _events(runtime, uuid) == PLACED_EVENTS
    async with runtime.service(write=False) as svc:
        instance = await svc.instances.get(uuid)
    assert (instance.host, instance.task_state) == ("h1", states.NETWORKING)


async def test_a_redelivered_build_its_host_took_up_is_left_alone(
        runtime: ComputeRuntime) -> None:
    """The build went further (its host moved it on to ``spawning``) before the request
    came again: the redelivery changes nothing and casts nothing."""
    uuid = await _scheduling(runtime)
    await _schedule(runtime, uuid)
    claims = await _held(runtime, uuid)
    async with runtime.service() as svc:
        (await svc.instances.get(uuid)).task_state = states.SPAWNING

    again = await _schedule(runtime, uuid)
    assert again.builds == []
    assert await _held(runtime, uuid) == claims
    assert await _events(runtime, uuid) == PLACED_EVENTS
    async with runtime.service(write=False) as svc:
        instance = await svc.instances.get(uuid)
    assert (instance.host, instance.task_state) == ("h1", states.SPAWNING)


#: A statement reading or writing the instance's table, the resource provider's.
_ON_INSTANCE = re.compile(r"\b(FROM|UPDATE|JOIN)\s+instance\b", re.IGNORECASE)
_ON_PROVIDER = re.compile(r"\b(FROM|UPDATE|JOIN)\s+resource_provider\b", re.IGNORECASE)


def _tables_in_order(seen: list[tuple[str, Any]]) -> list[str]:
    """Which of the two rows each statement touches, in order (repeats folded)."""
    order: list[str] = []
    for sql, _ in seen:
        touched = ("instance" if _ON_INSTANCE.search(sql) else
                   "provider" if _ON_PROVIDER.search(sql) else None)
        if touched is not None and (not order or order[-1] != touched):
            order.append(touched)
    return order


async def test_the_scheduler_and_the_conductor_lock_an_instance_before_its_provider(
        runtime: ComputeRuntime) -> None:
    """The scheduler's claim transaction, the conductor's ``build_failed`` (its freeing
    and its claim on an alternate) and its ``instance_destroyed`` each take the instance's
    row, then the provider's: the same order, so a reschedule racing a failure, or a
    failure racing a destroy, cannot deadlock on PostgreSQL. (The claim locked the
    provider, then placed the instance, and ``instance_destroyed`` freed, then deleted;
    ``build_failed`` locks the instance, then frees or claims on a provider.)"""
    selector = HostSelector(runtime.db)
    # The first decision loads the host view (it reads every provider, in no transaction
    # that writes); the next one's statements are its claim transaction's.
    await _schedule(runtime, await _scheduling(runtime), selector)
    uuid = await _scheduling(runtime)
    with statements_of(runtime.db.engine) as scheduled:
        agents = await _schedule(runtime, uuid, selector)
    assert agents.builds == [("h1", uuid)]
    assert _tables_in_order(scheduled.seen) == ["instance", "provider"], scheduled.seen

    # The alternate, with the provider the conductor claims on (named after its host).
    await add_host(runtime.db, "h2", provider=provider_uuid("h2"))
    conductor = ConductorManager(runtime, Agents())  # type: ignore[arg-type]
    with statements_of(runtime.db.engine) as failed:
        await conductor.build_failed(CTX, uuid, "h1", Fault(message="spawn failed"),
                                     alternates=["h2"], attempt=1)
    # Its freeing transaction, then its claim on the alternate's: each instance first (the
    # last, the new host written on the row it locked).
    assert _tables_in_order(failed.seen) == ["instance", "provider", "instance", "provider",
                                             "instance"], failed.seen
    async with runtime.service(write=False) as svc:
        instance = await svc.instances.get(uuid)
    assert (instance.host, instance.task_state) == ("h2", states.SCHEDULING)
    assert list(await _held(runtime, uuid)) == [provider_uuid("h2")]

    # And its host's report of the instance destroyed (a delete during the build).
    with statements_of(runtime.db.engine) as destroyed:
        await conductor.instance_destroyed(CTX, uuid, "h2")
    assert _tables_in_order(destroyed.seen) == ["instance", "provider"], destroyed.seen
    assert await _held(runtime, uuid) == {}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_claim_racing_a_conductor_holding_its_instance_does_not_deadlock(
        runtime: ComputeRuntime) -> None:
    """PostgreSQL: a conductor's transaction holds the instance's row (``build_failed``'s
    first statement) when the scheduler's claim for it starts, then frees on the provider
    (its ``placement.free``). Each waits for the other in turn, never both at once: no
    transaction is aborted as a deadlock and the placement lands. (The claim used to lock
    the provider first: the two waited for each other until PostgreSQL aborted one.)"""
    deadlocks: list[BaseException] = []

    def on_error(context: Any) -> None:
        if "deadlock" in str(context.original_exception).lower():
            deadlocks.append(context.original_exception)

    engine = runtime.db.engine
    event.listen(engine.sync_engine, "handle_error", on_error)
    try:
        uuid = await _scheduling(runtime)
        async with engine.connect() as conductor, engine.connect() as watcher:
            await conductor.execute(text("SELECT uuid FROM instance WHERE uuid = :u "
                                         "FOR UPDATE"), {"u": uuid})
            claim = asyncio.create_task(_schedule(runtime, uuid))
            # Until the claim's transaction waits for a lock (the instance's; in the old
            # order, after it took the provider's). Each look its own transaction: one
            # keeps its first snapshot of the activity.
            while True:
                waiting = (await watcher.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"))).scalar_one()
                await watcher.rollback()
                if waiting:
                    break
                assert not claim.done(), claim.result()
                await asyncio.sleep(0.01)
            try:
                await conductor.execute(text(
                    "UPDATE resource_provider SET generation = generation + 1 "
                    "WHERE name = 'h1'"))
                await conductor.commit()
            except Exception as exc:  # the deadlock's victim may be this one
                deadlocks.append(exc)
                await conductor.rollback()
            agents = await claim
    finally:
        event.remove(engine.sync_engine, "handle_error", on_error)
    assert deadlocks == []
    assert agents.builds == [("h1", uuid)]
    assert list((await _held(runtime, uuid)).values()) == [
        {"VCPU": 1, "MEMORY_MB": 512, "DISK_GB": 1}]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_an_offload_locks_its_instance_before_freeing_its_claim(
        runtime: ComputeRuntime) -> None:
    """A host's report of a shelved server offloaded locks the instance's row (``FOR
    UPDATE``) before its claim's provider, as ``build_failed`` does: it read the row
    without a lock, freed the claim, then wrote the row, the order that deadlocks against
    a writer holding the instance and waiting for the provider."""
    uuid = await _scheduling(runtime)
    await _schedule(runtime, uuid)
    async with runtime.service() as svc:
        instance = await svc.instances.get(uuid)
        instance.vm_state, instance.task_state = states.SHELVED, states.SHELVING_OFFLOADING
    conductor = ConductorManager(runtime, Agents())  # type: ignore[arg-type]
    with statements_of(runtime.db.engine) as offloaded:
        await conductor.instance_offloaded(CTX, uuid, "h1")
    touching = [sql for sql, _ in offloaded.seen
                if _ON_INSTANCE.search(sql) or _ON_PROVIDER.search(sql)]
    assert _ON_INSTANCE.search(touching[0]) and "FOR UPDATE" in touching[0], touching
    assert _tables_in_order(offloaded.seen)[:2] == ["instance", "provider"], offloaded.seen
    assert await _held(runtime, uuid) == {}
    async with runtime.service(write=False) as svc:
        instance = await svc.instances.get(uuid)
    assert (instance.vm_state, instance.host) == (states.SHELVED_OFFLOADED, None)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_delete_racing_the_claim_leaves_no_claim_behind(runtime: ComputeRuntime) -> None:
    """A server deleted while the scheduler places it (never placed: deleted in the API's
    own transaction): the delete locks the instance first, so the scheduler's placement
    waits for it, finds the server deleted and claims nothing. Read unlocked, a claim
    committed between the delete's freeing and its write outlived the server."""
    uuid = await _scheduling(runtime)
    caller = Caller(RequestContext(user_id="u", project_id="p", roles=["admin"],
                                   request_id="req-delete"), runtime.enforcer)
    scheduling = asyncio.Event()

    class WaitsForTheDelete(HostSelector):
        async def select_and_claim(self, *args: Any, **kwargs: Any) -> Any:
            await scheduling.wait()
            return await super().select_and_claim(*args, **kwargs)

    placing = asyncio.create_task(_schedule(runtime, uuid, WaitsForTheDelete(runtime.db)))
    real_soft_delete = Instances.soft_delete

    async def soft_delete(self: Instances, *args: Any, **kwargs: Any) -> Any:
        # After the delete freed the server's claim (none yet), before it writes the row:
        # the scheduler runs.
        scheduling.set()
        await asyncio.sleep(0.5)
        return await real_soft_delete(self, *args, **kwargs)

    Instances.soft_delete = soft_delete  # type: ignore[method-assign]
    try:
        await lifecycle.delete(runtime, caller, uuid)
        agents = await asyncio.wait_for(placing, 10)
    finally:
        Instances.soft_delete = real_soft_delete  # type: ignore[method-assign]
    assert agents.builds == []
    assert await _held(runtime, uuid) == {}
    async with runtime.service(write=False) as svc:
        instance = await svc.instances.get(uuid, include_deleted=True)
    assert instance.deleted_at is not None and instance.host is None
