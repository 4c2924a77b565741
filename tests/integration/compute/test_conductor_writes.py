"""The conductor's writes while compute-api writes to the same database, on SQLite and
PostgreSQL: they all land. (On SQLite the conductor's writes wait for the file's lock in
SQLite's busy handler, beside the process's queue of writers; when that queue kept the lock
past ``busy_timeout`` an ``instance_update`` failed with "database is locked" and its build
was rescheduled. Such a call now runs again inside the queue.)"""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from typing import Any

import pytest
from sqlalchemy import event, func, select

from stratus.compute import states
from stratus.compute.models import Instance, InstanceAction, InstanceActionEvent
from stratus.compute.objects import ActionEvent, InstanceUpdate
from stratus.compute.rpcapi import ConductorAPI
from stratus.core.context import RequestContext
from stratus.stack import Stack

CTX = RequestContext(user_id="u", project_id="p", roles=["admin"], request_id="req-writes")
INSTANCES = 40
#: How long the test keeps a compute-api write open: well past the busy timeout below.
HOLD = 1.0


def _short_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
    """SQLite's own wait for a busy write lock (5 s in Stratus) made 0.1 s, so that a write
    open for ``HOLD`` outlasts it as a queue of writers does under load."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=100")
    cursor.close()


@pytest.fixture
def stack(conductor_stack: Stack) -> Stack:
    return conductor_stack


async def _building(stack: Stack, count: int) -> list[str]:
    uuids = [str(uuidlib.uuid4()) for _ in range(count)]
    assert stack.compute is not None
    async with stack.compute.service() as svc:
        for uuid in uuids:
            svc.session.add(Instance(
                uuid=uuid, display_name="vm", hostname="vm", project_id="p", user_id="u",
                reservation_id="r-1", flavor_id="1", vm_state=states.BUILDING,
                task_state=states.SCHEDULING,
                flavor={"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 64, "disk": 1},
                host="node", node="node"))
        for uuid in uuids:
            await svc.instances.start_action(CTX, uuid, "create")
    return uuids


async def test_concurrent_instance_updates_all_land(stack: Stack) -> None:
    """Every host walks its build through the task states at once (each update reads the
    instance, then writes it and an action event) while compute-api renames servers: no
    update fails, and each instance ends ACTIVE with its events recorded."""
    uuids = await _building(stack, INSTANCES)
    assert stack.bus is not None and stack.compute is not None
    conductor = ConductorAPI(stack.bus)
    compute = stack.compute

    async def build(uuid: str) -> None:
        for step in (states.NETWORKING, states.BLOCK_DEVICE_MAPPING, states.SPAWNING):
            await conductor.instance_update(
                CTX, uuid, InstanceUpdate(task_state=step),
                event=ActionEvent(name=f"compute_{step}", host="node", finished=True,
                                  result="Success"))
        await conductor.instance_update(CTX, uuid, InstanceUpdate(
            vm_state=states.ACTIVE, power_state=1, clear_task_state=True),
            expected_task_state=[states.SPAWNING])

    async def rename(uuid: str) -> None:
        for n in range(3):
            async with compute.service() as svc:
                row = await svc.instances.get(uuid)
                row.display_name = f"vm-{n}"

    results = await asyncio.gather(*(build(u) for u in uuids),
                                   *(rename(u) for u in uuids), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    async with compute.service() as svc:
        for uuid in uuids:
            row = await svc.instances.get(uuid)
            assert (row.vm_state, row.task_state, row.display_name) == (
                states.ACTIVE, None, "vm-2")
        events = await svc.session.scalar(
            select(func.count()).select_from(InstanceActionEvent)
            .join(InstanceAction, InstanceAction.id == InstanceActionEvent.action_id)
            .where(InstanceAction.instance_uuid.in_(uuids),
                   InstanceActionEvent.finish_time.is_not(None)))
        assert events == 3 * INSTANCES


async def test_an_update_waits_for_a_write_longer_than_the_busy_timeout(stack: Stack) -> None:
    """A compute host's update arriving while compute-api holds a write transaction open
    (longer than SQLite would wait for its lock) lands once that transaction committed."""
    uuid, other = await _building(stack, 2)
    assert stack.bus is not None and stack.compute is not None
    compute = stack.compute
    if compute.db.backend == "sqlite":
        event.listen(compute.db.engine.sync_engine, "connect", _short_busy_timeout)
        await compute.db.engine.dispose()  # every connection from now on has it
    update = None
    async with compute.service() as svc:
        row = await svc.instances.get(other)
        row.display_name = "renamed"
        await svc.session.flush()  # this transaction now holds the database's write lock
        update = asyncio.create_task(ConductorAPI(stack.bus).instance_update(
            CTX, uuid, InstanceUpdate(task_state=states.NETWORKING),
            event=ActionEvent(name="compute__do_build_and_run_instance", host="node")))
        await asyncio.sleep(HOLD)
    record = await update
    assert record.task_state == states.NETWORKING
    async with compute.service() as svc:
        assert (await svc.instances.get(uuid)).task_state == states.NETWORKING
        assert (await svc.instances.get(other)).display_name == "renamed"


async def test_a_build_failure_report_for_a_settled_instance_changes_nothing(
        stack: Stack) -> None:
    """A conductor's watchdog set the build ERROR (its host looked down) while the host's
    build_failed report was on its way: the report neither reschedules the instance nor
    touches a claim. (Before, the two writes raced: the chaos run ended with a server in
    ERROR but still ``scheduling``, claimed on another host.)"""
    from stratus.compute.conductor.manager import ConductorManager
    from stratus.compute.objects import Fault
    from stratus.compute.rpcapi import ComputeAgentAPI

    (uuid,) = await _building(stack, 1)
    assert stack.compute is not None and stack.bus is not None
    compute = stack.compute
    async with compute.service() as svc:
        await svc.instances.set_error(uuid, message="Compute host node stopped responding "
                                                    "while building the instance.")
    conductor = ConductorManager(compute, ComputeAgentAPI(stack.bus))
    await conductor.build_failed(CTX, uuid, "node", Fault(message="port failed"),
                                 alternates=["node"], attempt=1)
    async with compute.service() as svc:
        instance = await svc.instances.get(uuid)
        assert (instance.vm_state, instance.task_state) == (states.ERROR, None)
        assert await svc.placement.allocations_of(uuid) == {}
        fault = await svc.instances.fault_of(uuid)
        assert fault is not None and "stopped responding" in fault.message


async def test_a_build_whose_take_up_answer_was_lost_is_taken_up_again_by_its_host(
        stack: Stack) -> None:
    """``begin_build`` committed but its answer never reached the host (a broker or
    conductor restart between the commit and the reply): the cast's redelivery to the same
    host takes the build up again instead of leaving it in networking for good; another
    host's delivery does not take it."""
    (uuid,) = await _building(stack, 1)
    assert stack.bus is not None
    conductor = ConductorAPI(stack.bus)
    first = await conductor.begin_build(CTX, uuid, "node", "compute__do_build_and_run_instance")
    assert first is not None and first.task_state == states.NETWORKING
    again = await conductor.begin_build(CTX, uuid, "node", "compute__do_build_and_run_instance")
    assert again is not None and (again.uuid, again.task_state) == (uuid, states.NETWORKING)
    assert await conductor.begin_build(CTX, uuid, "other",
                                       "compute__do_build_and_run_instance") is None


async def test_a_build_cast_to_a_host_the_instance_is_not_placed_on_is_not_taken_up(
        stack: Stack) -> None:
    """A cast that reaches a host the instance is not (or no longer) placed on, while it
    still waits to be taken up (a redelivered request re-cast to the host a failed build
    left, while the reschedule moves it): that host does not take the build up, which would
    build it where it holds no claim; the host it is placed on still does."""
    (uuid,) = await _building(stack, 1)
    assert stack.bus is not None and stack.compute is not None
    conductor = ConductorAPI(stack.bus)
    name = "compute__do_build_and_run_instance"
    assert await conductor.begin_build(CTX, uuid, "other", name) is None
    async with stack.compute.service() as svc:
        assert (await svc.instances.get(uuid)).task_state == states.SCHEDULING
    taken = await conductor.begin_build(CTX, uuid, "node", name)
    assert taken is not None and (taken.host, taken.task_state) == ("node", states.NETWORKING)


async def test_a_builds_last_update_finishes_its_event_and_action(stack: Stack) -> None:
    """The build's last ``instance_update`` finishes the event ``begin_build`` started and
    the action with it: on PostgreSQL all in the instance's update (data-modifying CTEs),
    one statement; on SQLite three. A second finish of the same event (a redelivered
    report) finds none started and records it whole."""
    from tests.dbcount import statements_of

    (uuid,) = await _building(stack, 1)
    assert stack.bus is not None and stack.compute is not None
    conductor = ConductorAPI(stack.bus)
    name = "compute__do_build_and_run_instance"
    with statements_of(stack.compute.db.engine) as began:
        assert await conductor.begin_build(CTX, uuid, "node", name) is not None
    postgresql = stack.compute.db.engine.dialect.name == "postgresql"
    assert len([sql for sql, _ in began.seen if sql.split(None, 1)[0].upper() in (
        "SELECT", "UPDATE", "INSERT", "WITH")]) == (1 if postgresql else 3), began.seen
    done = ActionEvent(name=name, host="node", finished=True, result="Success")
    with statements_of(stack.compute.db.engine) as seen:
        record = await conductor.instance_update(
            CTX, uuid, InstanceUpdate(vm_state=states.ACTIVE, power_state=1,
                                      clear_task_state=True),
            expected_task_state=[states.NETWORKING], event=done)
    assert (record.vm_state, record.task_state) == (states.ACTIVE, None)
    written = [sql for sql, _ in seen.seen
               if sql.split(None, 1)[0].upper() in ("SELECT", "UPDATE", "INSERT", "WITH")]
    assert len(written) == (1 if postgresql else 3), written
    async with stack.compute.service() as svc:
        action = await svc.session.scalar(select(InstanceAction).where(
            InstanceAction.instance_uuid == uuid))
        assert action is not None and action.finish_time is not None
        events = list(await svc.session.scalars(select(InstanceActionEvent).where(
            InstanceActionEvent.action_id == action.id)))
    assert [(e.event, e.result, e.finish_time is not None) for e in events] == [
        (name, "Success", True)]

    await conductor.action_event(CTX, uuid, name, host="node", finished=True, result="Error")
    async with stack.compute.service() as svc:
        action = await svc.session.scalar(select(InstanceAction).where(
            InstanceAction.instance_uuid == uuid))
        assert action is not None and action.message == "Error"
        results = sorted(r or "" for r in await svc.session.scalars(
            select(InstanceActionEvent.result).where(
                InstanceActionEvent.action_id == action.id)))
    assert results == ["Error", "Success"]


async def test_concurrent_builds_steps_commit_together_and_fail_alone(stack: Stack) -> None:
    """Hosts taking up builds at once: their ``begin_build`` calls share commits (group
    commit), each host gets its own instance back, and the one whose instance is no
    longer placed on it (refused) or gone (``instance_update`` of a deleted instance) fails
    no other's step."""
    from stratus.compute.conductor.manager import ConductorManager
    from stratus.compute.errors import UnexpectedTaskState
    from stratus.compute.rpcapi import ComputeAgentAPI

    uuids = await _building(stack, 12)
    assert stack.compute is not None and stack.bus is not None
    compute = stack.compute
    async with compute.service() as svc:
        await svc.instances.soft_delete(uuids[-1])
    conductor = ConductorManager(compute, ComputeAgentAPI(stack.bus))
    name = "compute__do_build_and_run_instance"
    commits: list[int] = []

    def count(*_: Any) -> None:
        commits.append(1)

    event.listen(compute.db.engine.sync_engine, "commit", count)
    try:
        taken = await asyncio.gather(*(
            conductor.begin_build(CTX, uuid, "other" if n == 0 else "node", name)
            for n, uuid in enumerate(uuids[:-1])))
        updated = await asyncio.gather(*(
            conductor.instance_update(CTX, uuid, InstanceUpdate(task_state=states.SPAWNING),
                                      expected_task_state=[states.NETWORKING])
            for uuid in uuids), return_exceptions=True)
    finally:
        event.remove(compute.db.engine.sync_engine, "commit", count)
    assert taken[0] is None  # not placed on "other"
    assert [record.uuid for record in taken[1:] if record is not None] == uuids[1:-1]
    # The first instance was never taken up, the last is deleted: those two fail alone.
    assert isinstance(updated[0], UnexpectedTaskState)
    assert isinstance(updated[-1], UnexpectedTaskState)
    assert [getattr(r, "uuid", None) for r in updated[1:-1]] == uuids[1:-1]
    assert all(getattr(r, "task_state", None) == states.SPAWNING for r in updated[1:-1])
    # 23 steps, alone 21 commits (the two refused commit nothing); together, a handful:
    # the first steps of 11 builds in one, the second steps in another (after the two
    # refused ones were taken out and run alone).
    assert len(commits) <= 4, len(commits)
    assert conductor._group.batches >= 2
