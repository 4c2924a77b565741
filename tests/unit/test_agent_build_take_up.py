"""How a host takes a build up. The scheduler's claim took it up for the host and its cast
carries the record (``Instances.place_taking_up``): on the message's first delivery the
host builds from it with no ``begin_build`` call. A delivery that may not be the first (the
broker's redelivery, a cast without a record) asks ``begin_build``; a second message for a
build under way in the process is not run; and a build from a record that finds its
instance moved on without a delete before it spawned (a sender's duplicate of the cast)
leaves the guest the other delivery made."""

from __future__ import annotations

from typing import Any, cast

from stratus.compute import states
from stratus.compute.agent.manager import ComputeAgentManager
from stratus.compute.errors import UnexpectedTaskState
from stratus.compute.objects import FlavorInfo, InstanceRecord, InstanceUpdate
from stratus.compute.rpcapi import ConductorAPI
from stratus.compute.virt.fake import FakeDriver
from stratus.core.bus import server as bus_server
from stratus.core.context import RequestContext

CTX = RequestContext(user_id="u", project_id="p", request_id="req-take-up")
UUID = "vm-1"


class Conductor:
    """The conductor's answers for one instance on ``host-1``, its task state kept as the
    database would: each update guarded by the task states it expects."""

    def __init__(self, task_state: str | None = states.NETWORKING,
                 vm_state: str = states.BUILDING, deleted: bool = False) -> None:
        self.task_state = task_state
        self.vm_state = vm_state
        self.deleted = deleted
        self.calls: list[str] = []
        self.events: list[tuple[str, bool, str | None]] = []
        #: Set ERROR (as a watchdog would) when the build's last update comes.
        self.fail_before_active = False

    def record(self) -> InstanceRecord:
        return _record(self.task_state, self.vm_state, deleted=self.deleted)

    async def begin_build(self, ctx: RequestContext, instance_uuid: str, host: str,
                          event: str) -> InstanceRecord | None:
        self.calls.append("begin_build")
        if self.deleted or self.vm_state != states.BUILDING:
            return None
        if self.task_state == states.SCHEDULING:
            self.task_state = states.NETWORKING
            return self.record()
        return self.record() if self.task_state == states.NETWORKING else None

    async def instance_update(self, ctx: RequestContext, instance_uuid: str,
                              update: InstanceUpdate,
                              expected: list[str | None] | None = None,
                              event: Any = None, *args: Any, **kwargs: Any) -> InstanceRecord:
        self.calls.append(f"instance_update {update.task_state or update.vm_state}")
        if self.fail_before_active and update.vm_state == states.ACTIVE:
            self.vm_state, self.task_state = states.ERROR, None
        if self.deleted or (expected is not None and self.task_state not in expected):
            raise UnexpectedTaskState(f"{instance_uuid} is {self.task_state}")
        self.task_state = None if update.clear_task_state else update.task_state
        self.vm_state = update.vm_state or self.vm_state
        return self.record()

    async def instance_get(self, ctx: RequestContext, instance_uuid: str) -> InstanceRecord:
        self.calls.append("instance_get")
        return self.record()

    async def action_event(self, ctx: RequestContext, instance_uuid: str, event: str,
                           host: str, finished: bool, result: str | None = None,
                           details: str | None = None) -> None:
        self.events.append((event, finished, result))

    async def build_failed(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append("build_failed")


def _record(task_state: str | None = states.NETWORKING, vm_state: str = states.BUILDING,
            deleted: bool = False) -> InstanceRecord:
    return InstanceRecord(
        uuid=UUID, name="vm-1", hostname="vm-1", project_id="p", user_id="u",
        flavor=FlavorInfo(id="1", name="tiny", vcpus=1, ram=512, disk=1), image_ref="img",
        vm_state=vm_state, task_state=task_state, host="host-1", deleted=deleted)


def _agent(conductor: Conductor) -> ComputeAgentManager:
    return ComputeAgentManager("host-1", FakeDriver(), cast(ConductorAPI, conductor))


async def test_a_first_delivery_with_the_schedulers_record_builds_without_begin_build() -> None:
    conductor = Conductor()
    agent = _agent(conductor)
    await agent.build_and_run_instance(CTX, UUID, [], instance=_record())
    assert conductor.calls == ["instance_update spawning", "instance_update active"]
    assert conductor.vm_state == states.ACTIVE
    assert await agent.driver.list_guests() == [UUID]


async def test_a_redelivered_cast_asks_begin_build_even_with_a_record() -> None:
    """The broker delivered it before (the host may have died mid-build, or built it):
    ``begin_build`` says whether there is still something to build."""
    conductor = Conductor(task_state=states.SPAWNING)  # the first delivery got that far
    agent = _agent(conductor)
    token = bus_server._FIRST_DELIVERY.set(False)
    try:
        await agent.build_and_run_instance(CTX, UUID, [], instance=_record())
    finally:
        bus_server._FIRST_DELIVERY.reset(token)
    assert conductor.calls == ["begin_build"]
    assert await agent.driver.list_guests() == []


async def test_a_cast_without_a_record_asks_begin_build() -> None:
    conductor = Conductor(task_state=states.SCHEDULING)  # a reschedule's cast
    agent = _agent(conductor)
    await agent.build_and_run_instance(CTX, UUID, [])
    assert conductor.calls[0] == "begin_build"
    assert conductor.vm_state == states.ACTIVE


async def test_a_second_message_for_a_build_under_way_here_is_not_run() -> None:
    """A scheduler's cast sent again (a redelivered request found the instance placed)
    while this process builds it: not built twice, no ``begin_build`` asked."""
    conductor = Conductor()
    agent = _agent(conductor)
    agent._building.add(UUID)
    await agent.build_and_run_instance(CTX, UUID, [])
    await agent.build_and_run_instance(CTX, UUID, [], instance=_record())
    assert conductor.calls == []
    assert await agent.driver.list_guests() == []


async def test_a_duplicate_of_a_built_cast_leaves_the_guest_alone() -> None:
    """A sender's duplicate of the scheduler's cast (a publish retried after a lost
    confirm) is a first delivery too. It finds the instance ACTIVE, built by the other
    copy: the guest, the ports and the action are left as they are."""
    conductor = Conductor()
    agent = _agent(conductor)
    await agent.build_and_run_instance(CTX, UUID, [], instance=_record())
    assert conductor.vm_state == states.ACTIVE
    conductor.calls.clear()
    conductor.events.clear()
    await agent.build_and_run_instance(CTX, UUID, [], instance=_record())
    assert conductor.calls == ["instance_update spawning", "instance_get"]
    assert conductor.events == []
    assert await agent.driver.list_guests() == [UUID]
    assert conductor.vm_state == states.ACTIVE


async def test_a_build_from_a_record_of_a_server_deleted_meanwhile_is_cancelled() -> None:
    """Deleted while the cast waited in the host's queue: the build stops at its first
    update and cleans up, its event finished as cancelled."""
    conductor = Conductor(task_state=states.DELETING)
    agent = _agent(conductor)
    await agent.build_and_run_instance(CTX, UUID, [], instance=_record())
    assert conductor.calls == ["instance_update spawning", "instance_get"]
    assert conductor.events == [("compute__do_build_and_run_instance", True, "Error")]
    assert await agent.driver.list_guests() == []


async def test_a_build_from_a_record_refused_after_its_spawn_removes_its_guest() -> None:
    """Its last update refused (the instance set ERROR meanwhile, not deleted): the guest
    this build spawned is its own, and is removed as a cancelled build's always was."""
    conductor = Conductor()
    conductor.fail_before_active = True
    agent = _agent(conductor)
    await agent.build_and_run_instance(CTX, UUID, [], instance=_record())
    assert conductor.calls == ["instance_update spawning", "instance_update active"]
    assert conductor.events == [("compute__do_build_and_run_instance", True, "Error")]
    assert await agent.driver.list_guests() == []
