"""Instances in compute's database: their life from the boot request to deletion.

State changes from compute hosts arrive through the conductor and name the task states
they expect; an instance that has moved on (a delete began, say) refuses the change with
``UnexpectedTaskState``, which is how a build learns it was cancelled.
"""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import Table, delete, or_, select
from sqlalchemy import update as sa_update

from stratus.compute import states
from stratus.compute.errors import AlreadyPlaced, InstanceGone, UnexpectedTaskState
from stratus.compute.models import (
    ConsoleAuthToken,
    Flavor,
    Instance,
    InstanceAction,
    InstanceActionEvent,
    InstanceFault,
    ServerGroupMember,
)
from stratus.compute.objects import (
    BlockDevice,
    FlavorInfo,
    InstanceRecord,
    InstanceStates,
    InstanceUpdate,
)
from stratus.core.context import RequestContext
from stratus.core.db import Txn, utcnow
from stratus.core.exceptions import NotFound

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement
    from sqlalchemy.engine import Row

__all__ = ["Instance", "InstanceFault", "Instances", "NewInstance", "UnexpectedTaskState",
           "flavor_info", "hostname_of"]

#: The tables the boot's hot path writes with plain statements (no ORM unit of work).
_INSTANCES = cast(Table, Instance.__table__)
_ACTIONS = cast(Table, InstanceAction.__table__)
_EVENTS = cast(Table, InstanceActionEvent.__table__)

#: What ``InstanceUpdate`` may set besides the task state (None: left alone).
_UPDATABLE = ("vm_state", "power_state", "host", "node", "progress", "launched_at",
              "network_info", "system_metadata")

#: The rows of a log kept per instance, newest last (by ``id``).
_Logged = TypeVar("_Logged", InstanceFault, InstanceAction)


def flavor_info(flavor: Flavor) -> FlavorInfo:
    return FlavorInfo(id=flavor.id, name=flavor.name, vcpus=flavor.vcpus, ram=flavor.ram,
                      disk=flavor.disk, ephemeral=flavor.ephemeral, swap=flavor.swap,
                      extra_specs=dict(flavor.extra_specs or {}))


@dataclass(frozen=True)
class NewInstance:
    name: str
    image_ref: str
    flavor: Flavor
    key_name: str | None = None
    key_data: str | None = None
    user_data: str | None = None
    metadata: dict[str, str] | None = None
    availability_zone: str | None = None
    requested_networks: Any = None
    security_groups: tuple[str, ...] = ("default",)
    description: str | None = None
    access_ip_v4: str | None = None
    access_ip_v6: str | None = None
    config_drive: str = ""
    tags: tuple[str, ...] = ()
    block_devices: tuple[BlockDevice, ...] = ()


def hostname_of(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")
    return cleaned[:63] or "server"


class Instances:
    """Instances, their faults and their actions, within one transaction."""

    def __init__(self, txn: Txn) -> None:
        self.txn = txn
        self.session = txn.session

    async def create(self, ctx: RequestContext, spec: NewInstance,
                     count: int = 1) -> list[Instance]:
        """Rows for ``count`` instances of one request, building and scheduling."""
        project_id = ctx.require_project()
        assert ctx.user_id is not None  # an authenticated request has a user
        reservation = f"r-{uuidlib.uuid4().hex[:8]}"
        created = []
        for index in range(count):
            name = spec.name if count == 1 else f"{spec.name}-{index + 1}"
            instance = Instance(
                uuid=str(uuidlib.uuid4()), display_name=name,
                display_description=spec.description, hostname=hostname_of(name),
                project_id=project_id, user_id=ctx.user_id, reservation_id=reservation,
                launch_index=index, image_ref=spec.image_ref, flavor_id=spec.flavor.id,
                vcpus=spec.flavor.vcpus, memory_mb=spec.flavor.ram,
                flavor=flavor_info(spec.flavor).model_dump(), key_name=spec.key_name,
                key_data=spec.key_data, user_data=spec.user_data,
                server_metadata=dict(spec.metadata or {}), tags=list(spec.tags),
                availability_zone=spec.availability_zone,
                requested_networks=spec.requested_networks,
                security_groups=list(spec.security_groups), network_info=[],
                block_device_mapping=[d.model_dump() for d in spec.block_devices],
                config_drive=spec.config_drive, access_ip_v4=spec.access_ip_v4,
                access_ip_v6=spec.access_ip_v6, vm_state=states.BUILDING,
                task_state=states.SCHEDULING, power_state=0, progress=0)
            self.session.add(instance)
            created.append(instance)
        await self.session.flush()
        for instance in created:
            await self.start_action(ctx, instance.uuid, "create")
        return created

    async def get(self, instance_uuid: str, *, project_id: str | None = None,
                  include_deleted: bool = False, lock: bool = False) -> Instance:
        """``lock``: the row locked for this transaction (``FOR UPDATE``) and read afresh,
        so two writers that decide from its state (a conductor's reschedule, another's
        watchdog) take turns instead of each writing over the other's change."""
        instance = await self.session.get(Instance, instance_uuid, with_for_update=lock,
                                          populate_existing=lock)
        if (instance is None or (instance.deleted_at is not None and not include_deleted)
                or (project_id is not None and instance.project_id != project_id)):
            raise NotFound(f"Instance {instance_uuid} could not be found.")
        return instance

    async def _newest(self, model: type[_Logged], instance_uuid: str) -> _Logged | None:
        """The instance's last row of a log kept per instance (faults, actions)."""
        row: _Logged | None = await self.session.scalar(
            select(model).where(model.instance_uuid == instance_uuid)
            .order_by(model.id.desc()).limit(1))
        return row

    async def fault_of(self, instance_uuid: str) -> InstanceFault | None:
        return await self._newest(InstanceFault, instance_uuid)

    async def faults_of(self, uuids: list[str]) -> dict[str, InstanceFault]:
        latest: dict[str, InstanceFault] = {}
        if not uuids:
            return latest
        for fault in await self.session.scalars(
                select(InstanceFault).where(InstanceFault.instance_uuid.in_(uuids))
                .order_by(InstanceFault.id)):
            latest[fault.instance_uuid] = fault
        return latest

    async def update(self, instance_uuid: str, update: InstanceUpdate,
                     expected_task_state: list[str | None] | None = None) -> Instance:
        instance = await self.get(instance_uuid, include_deleted=True)
        if expected_task_state is not None and instance.task_state not in expected_task_state:
            raise UnexpectedTaskState(
                f"Instance {instance_uuid} is in task state {instance.task_state}, not one "
                f"of {expected_task_state}.")
        for field in _UPDATABLE:
            value = getattr(update, field)
            if value is not None:
                setattr(instance, field, value)
        if update.task_state is not None or update.clear_task_state:
            instance.task_state = update.task_state
        instance.updated_at = utcnow()
        await self.session.flush()
        return instance

    async def transition(self, instance_uuid: str, update: InstanceUpdate,
                         expected_task_state: list[str | None] | None = None, *,
                         building: bool = False) -> InstanceRecord:
        """``update`` as one guarded UPDATE (the expected task states in its WHERE), the row
        it wrote read back in the same statement: what a compute host's progress costs on
        the boot's hot path, against a load of the whole ORM object, its flush and a second
        statement (``update``). The caller must not hold this instance as an ORM object in
        the same transaction (it would not see the change). ``building``: only a live
        instance that is building takes it (else ``UnexpectedTaskState`` too)."""
        values: dict[str, Any] = {field: getattr(update, field) for field in _UPDATABLE
                                  if getattr(update, field) is not None}
        if update.task_state is not None or update.clear_task_state:
            values["task_state"] = update.task_state
        values["updated_at"] = utcnow()
        table = _INSTANCES
        statement = sa_update(table).where(table.c.uuid == instance_uuid)
        if expected_task_state is not None:
            named = [state for state in expected_task_state if state is not None]
            guard: ColumnElement[bool] = table.c.task_state.in_(named)
            if None in expected_task_state:
                guard = or_(guard, table.c.task_state.is_(None))
            statement = statement.where(guard)
        if building:
            statement = statement.where(table.c.vm_state == states.BUILDING,
                                        table.c.deleted_at.is_(None))
        row = (await self.session.execute(
            statement.values(values).returning(*table.c))).one_or_none()
        if row is None:
            current = (await self.session.execute(
                select(table.c.task_state).where(table.c.uuid == instance_uuid))).one_or_none()
            if current is None:
                raise NotFound(f"Instance {instance_uuid} could not be found.")
            raise UnexpectedTaskState(
                f"Instance {instance_uuid} is in task state {current.task_state}, not one "
                f"of {expected_task_state}.")
        return self.record(row)

    async def write(self, instance_uuid: str, values: dict[str, Any]) -> InstanceRecord:
        """``values`` (columns of the instance's row) written unguarded in one statement
        that reads the row back (as ``transition``, and with its caveat: the caller must not
        hold this instance as an ORM object in the same transaction)."""
        table = _INSTANCES
        row = (await self.session.execute(
            sa_update(table).where(table.c.uuid == instance_uuid).values(values)
            .returning(*table.c))).one_or_none()
        if row is None:
            raise NotFound(f"Instance {instance_uuid} could not be found.")
        return self.record(row)

    async def record_of(self, instance_uuid: str) -> InstanceRecord:
        """The instance (deleted or not) as the bus carries it, read as one row (no ORM
        object); ``NotFound`` when there is none."""
        row = (await self.session.execute(
            select(_INSTANCES).where(_INSTANCES.c.uuid == instance_uuid))).one_or_none()
        if row is None:
            raise NotFound(f"Instance {instance_uuid} could not be found.")
        return self.record(row)

    async def add_fault(self, instance_uuid: str, *, code: int, message: str,
                        details: str = "", host: str | None = None) -> None:
        self.session.add(InstanceFault(instance_uuid=instance_uuid, code=code,
                                       message=message[:255], details=details, host=host))
        await self.session.flush()

    async def set_error(self, instance_uuid: str, *, message: str, code: int = 500,
                        details: str = "", host: str | None = None) -> None:
        await self.update(instance_uuid, InstanceUpdate(vm_state=states.ERROR,
                                                        clear_task_state=True))
        await self.add_fault(instance_uuid, code=code, message=message, details=details,
                             host=host)

    async def soft_delete(self, instance_uuid: str) -> None:
        instance = await self.get(instance_uuid, include_deleted=True)
        now = utcnow()
        instance.vm_state, instance.task_state = states.DELETED, None
        instance.terminated_at = instance.terminated_at or now
        instance.deleted_at = instance.deleted_at or now
        instance.updated_at = now
        # A deleted server leaves its server groups (their quota counts live members).
        await self.session.execute(delete(ServerGroupMember).where(
            ServerGroupMember.instance_uuid == instance_uuid))
        # Nor does its console open any more.
        await self.session.execute(delete(ConsoleAuthToken).where(
            ConsoleAuthToken.instance_uuid == instance_uuid))
        await self.session.flush()

    async def place(self, instance_uuid: str, host: str) -> None:
        """Record the scheduler's choice of host, if the instance still waits for one.

        Raises ``InstanceGone`` when it was deleted or left ``scheduling`` meanwhile, and
        ``AlreadyPlaced`` when it has a host already (a redelivered request)."""
        table = _INSTANCES
        waiting = (table.c.uuid == instance_uuid, table.c.deleted_at.is_(None),
                   table.c.task_state == states.SCHEDULING)
        placed = await self.session.execute(sa_update(table).where(
            *waiting, or_(table.c.host.is_(None), table.c.host == "")).values(
            host=host, node=host))
        if placed.rowcount:  # type: ignore[attr-defined]
            return
        current = await self.session.scalar(select(table.c.host).where(*waiting))
        if current is None:  # no such instance, deleted, or no longer scheduling
            raise InstanceGone(instance_uuid)
        raise AlreadyPlaced(current)

    async def place_unshelved(self, instance_uuid: str, host: str) -> None:
        """Record the host a shelved-offloaded instance is unshelved on, if it still waits
        for one (``InstanceGone`` otherwise)."""
        instance = await self.session.get(Instance, instance_uuid)
        if (instance is None or instance.deleted_at is not None or instance.host
                or instance.vm_state != states.SHELVED_OFFLOADED
                or instance.task_state != states.UNSHELVING):
            raise InstanceGone(instance_uuid)
        instance.host, instance.node = host, host

    async def on_host(self, host: str) -> list[str]:
        return list(await self.session.scalars(select(Instance.uuid).where(
            Instance.host == host, Instance.deleted_at.is_(None))))

    async def states_on(self, host: str) -> list[InstanceStates]:
        """The states of the live instances on ``host`` (for its power-state sync)."""
        rows = await self.session.execute(
            select(Instance.uuid, Instance.vm_state, Instance.task_state, Instance.power_state)
            .where(Instance.host == host, Instance.deleted_at.is_(None)))
        return [InstanceStates(uuid=u, vm_state=v, task_state=t, power_state=p or 0)
                for u, v, t, p in rows.all()]

    async def shelved_on_hosts(self) -> list[Instance]:
        """Shelved servers still on a host with no task running (offload candidates)."""
        return list(await self.session.scalars(select(Instance).where(
            Instance.vm_state == states.SHELVED, Instance.task_state.is_(None),
            Instance.host.is_not(None), Instance.deleted_at.is_(None))))

    async def stranded_on(self, hosts: list[str]) -> list[str]:
        """Live instances on ``hosts`` caught building or deleting (hosts that went down)."""
        if not hosts:
            return []
        return list(await self.session.scalars(select(Instance.uuid).where(
            Instance.host.in_(hosts), Instance.deleted_at.is_(None),
            (Instance.vm_state == states.BUILDING) | (Instance.task_state == states.DELETING))))

    def record(self, instance: Instance | Row[Any]) -> InstanceRecord:
        """The instance as the bus carries it, from its ORM object or a row of its table."""
        return InstanceRecord(
            uuid=instance.uuid, name=instance.display_name, hostname=instance.hostname,
            project_id=instance.project_id, user_id=instance.user_id,
            flavor=FlavorInfo.model_validate(instance.flavor), image_ref=instance.image_ref,
            key_data=instance.key_data, user_data=instance.user_data,
            metadata=dict(instance.server_metadata or {}),
            requested_networks=instance.requested_networks,
            security_groups=list(instance.security_groups or []),
            availability_zone=instance.availability_zone,
            network_info=list(instance.network_info or []),
            block_devices=[BlockDevice.model_validate(d)
                           for d in instance.block_device_mapping or []],
            vm_state=instance.vm_state,
            task_state=instance.task_state, power_state=instance.power_state,
            host=instance.host, deleted=instance.deleted_at is not None,
            system_metadata=dict(instance.system_metadata or {}))

    # Instance actions ---------------------------------------------------------------------

    async def start_action(self, ctx: RequestContext, instance_uuid: str,
                           action: str) -> InstanceAction:
        project_id = ctx.require_project()
        assert ctx.user_id is not None  # an authenticated request has a user
        row = InstanceAction(instance_uuid=instance_uuid, request_id=ctx.request_id,
                             action=action, project_id=project_id, user_id=ctx.user_id)
        self.session.add(row)
        await self.session.flush()
        return row

    async def action_for(self, instance_uuid: str, request_id: str) -> InstanceAction | None:
        action: InstanceAction | None = await self.session.scalar(select(InstanceAction).where(
            InstanceAction.instance_uuid == instance_uuid,
            InstanceAction.request_id == request_id))
        return action

    async def latest_action(self, instance_uuid: str) -> InstanceAction | None:
        return await self._newest(InstanceAction, instance_uuid)

    async def _action_id(self, instance_uuid: str, request_id: str | None) -> int | None:
        """The id of the instance's action of ``request_id``, else of its newest action."""
        table = _ACTIONS
        found: int | None = None
        if request_id:
            found = await self.session.scalar(select(table.c.id).where(
                table.c.instance_uuid == instance_uuid, table.c.request_id == request_id))
        if found is None:
            found = await self.session.scalar(select(table.c.id).where(
                table.c.instance_uuid == instance_uuid).order_by(table.c.id.desc()).limit(1))
        return found

    async def record_event(self, instance_uuid: str, request_id: str | None, event: str, *,
                           host: str | None, finished: bool, result: str | None = None,
                           details: str | None = None,
                           started_at: dt.datetime | None = None,
                           finish_action: bool = False) -> None:
        """Start an event, or finish the started one of the same name (or, when none was
        started, record it whole, from ``started_at``); ``finish_action``: the action
        finishes with it (as ``finish_action`` would, in the same statement).

        Statements on the tables, not ORM objects: every hop of a boot records one, and
        the unit of work cost more than the SQL. An action or event already loaded as an
        ORM object in this transaction does not see these changes."""
        action_id = await self._action_id(instance_uuid, request_id)
        if action_id is None:
            return
        events = _EVENTS
        now = utcnow()
        finished_one = 0
        if finished:
            started = (select(events.c.id).where(
                events.c.action_id == action_id, events.c.event == event,
                events.c.finish_time.is_(None)).order_by(events.c.id).limit(1)
                .scalar_subquery())
            done = await self.session.execute(sa_update(events).where(
                events.c.id == started).values(finish_time=now, result=result,
                                               details=details))
            finished_one = done.rowcount  # type: ignore[attr-defined]
        if not finished_one:
            await self.session.execute(events.insert().values(
                action_id=action_id, event=event, host=host,
                start_time=(started_at or now) if finished else now,
                finish_time=now if finished else None,
                result=result if finished else None, details=details if finished else None))
        actions = _ACTIONS
        changes: dict[str, Any] = {"updated_at": now}
        if finish_action:
            changes["finish_time"] = now
        if finished and result == "Error":
            changes["message"] = "Error"
        await self.session.execute(sa_update(actions).where(actions.c.id == action_id)
                                   .values(changes))

    async def finish_action(self, instance_uuid: str, request_id: str | None,
                            message: str | None = None) -> None:
        action_id = await self._action_id(instance_uuid, request_id)
        if action_id is not None:
            actions = _ACTIONS
            changes: dict[str, Any] = {"finish_time": utcnow()}
            if message:
                changes["message"] = message
            await self.session.execute(sa_update(actions).where(actions.c.id == action_id)
                                       .values(changes))


