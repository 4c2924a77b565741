"""Instances in compute's database: their life from the boot request to deletion.

State changes from compute hosts arrive through the conductor and name the task states
they expect; an instance that has moved on (a delete began, say) refuses the change with
``UnexpectedTaskState``, which is how a build learns it was cancelled.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid as uuidlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import Table, bindparam, case, delete, literal, null, or_, select, union_all
from sqlalchemy import update as sa_update
from sqlalchemy.ext.asyncio import AsyncSession

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
    ActionEvent,
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
    from sqlalchemy import ColumnElement, ScalarSelect
    from sqlalchemy.engine import Row

__all__ = ["CreatedInstance", "Instance", "InstanceFault", "Instances", "NewInstance",
           "UnexpectedTaskState", "flavor_info", "hostname_of"]

#: The tables the boot's hot path writes with plain statements (no ORM unit of work).
_INSTANCES = cast(Table, Instance.__table__)
_ACTIONS = cast(Table, InstanceAction.__table__)
_EVENTS = cast(Table, InstanceActionEvent.__table__)

#: What ``InstanceUpdate`` may set besides the task state (None: left alone).
_UPDATABLE = ("vm_state", "power_state", "host", "node", "progress", "launched_at",
              "network_info", "system_metadata")

#: The rows of a log kept per instance, newest last (by ``id``).
_Logged = TypeVar("_Logged", InstanceFault, InstanceAction)


def flavor_info(flavor: Flavor | FlavorInfo) -> FlavorInfo:
    if isinstance(flavor, FlavorInfo):
        return flavor
    return FlavorInfo(id=flavor.id, name=flavor.name, vcpus=flavor.vcpus, ram=flavor.ram,
                      disk=flavor.disk, ephemeral=flavor.ephemeral, swap=flavor.swap,
                      extra_specs=dict(flavor.extra_specs or {}))


@dataclass(frozen=True)
class NewInstance:
    name: str
    image_ref: str
    flavor: Flavor | FlavorInfo
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


@dataclass(frozen=True, slots=True)
class CreatedInstance:
    """What a boot answers with of an instance it just inserted (``Instances.create``): an
    ORM object built from the row cost ~270 Python calls (its attributes' instrumentation),
    for the three fields the API's answer shows."""

    uuid: str
    display_name: str
    reservation_id: str
    launch_index: int
    security_groups: list[str]


def hostname_of(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")
    return cleaned[:63] or "server"


class Instances:
    """Instances, their faults and their actions, within one transaction."""

    def __init__(self, txn: Txn) -> None:
        self.txn = txn

    @property
    def session(self) -> AsyncSession:
        """The transaction's ORM session (made on first use: the hot paths' prebuilt
        statements run on ``txn.connection()`` without one)."""
        return self.txn.session

    async def create(self, ctx: RequestContext, spec: NewInstance,
                     count: int = 1) -> list[CreatedInstance]:
        """Rows for ``count`` instances of one request, building and scheduling, and their
        ``create`` actions: two INSERTs, one on PostgreSQL (not the ORM's unit of work:
        every boot makes them)."""
        project_id = ctx.require_project()
        assert ctx.user_id is not None  # an authenticated request has a user
        reservation = f"r-{uuidlib.uuid4().hex[:8]}"
        now = utcnow()
        flavor = flavor_info(spec.flavor).model_dump()
        rows: list[dict[str, Any]] = []
        for index in range(count):
            name = spec.name if count == 1 else f"{spec.name}-{index + 1}"
            rows.append(dict(
                uuid=str(uuidlib.uuid4()), display_name=name,
                display_description=spec.description, hostname=hostname_of(name),
                project_id=project_id, user_id=ctx.user_id, reservation_id=reservation,
                launch_index=index, image_ref=spec.image_ref, flavor_id=spec.flavor.id,
                vcpus=spec.flavor.vcpus, memory_mb=spec.flavor.ram,
                flavor=dict(flavor), key_name=spec.key_name,
                key_data=spec.key_data, user_data=spec.user_data,
                server_metadata=dict(spec.metadata or {}), tags=list(spec.tags),
                availability_zone=spec.availability_zone,
                requested_networks=spec.requested_networks,
                security_groups=list(spec.security_groups), network_info=[],
                block_device_mapping=[d.model_dump() for d in spec.block_devices],
                config_drive=spec.config_drive, access_ip_v4=spec.access_ip_v4,
                access_ip_v6=spec.access_ip_v6, vm_state=states.BUILDING,
                task_state=states.SCHEDULING, power_state=0, progress=0, created_at=now,
                system_metadata={}))
        connection = await self.txn.connection()
        if self.txn.dialect == "postgresql":  # one statement: the action a CTE's INSERT
            await connection.execute(_insert_created(tuple(rows[0])), [
                {"a_request_id": ctx.request_id, **{f"i_{k}": v for k, v in row.items()}}
                for row in rows])
        else:
            await connection.execute(_INSERT_INSTANCE, rows)
            await connection.execute(_INSERT_ACTION, [
                {"instance_uuid": row["uuid"], "request_id": ctx.request_id,
                 "action": "create", "project_id": project_id, "user_id": ctx.user_id,
                 "start_time": now} for row in rows])
        return [CreatedInstance(row["uuid"], row["display_name"], reservation, row["launch_index"],
                                row["security_groups"]) for row in rows]

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
                         building: bool = False, on_host: str | None = None,
                         event: ActionEvent | None = None,
                         request_id: str | None = None) -> InstanceRecord:
        """``update`` as one guarded UPDATE (the expected task states in its WHERE), the row
        it wrote read back in the same statement: what a compute host's progress costs on
        the boot's hot path, against a load of the whole ORM object, its flush and a second
        statement (``update``). The caller must not hold this instance as an ORM object in
        the same transaction (it would not see the change). ``building``: only a live
        instance that is building takes it (else ``UnexpectedTaskState`` too); ``on_host``:
        only an instance placed on that host (else ``UnexpectedTaskState`` too).

        ``event`` (only where ``folds_event``: PostgreSQL): in the same statement, the
        event recorded as ``record_event`` would (of the action of ``request_id``), and
        the action finished when the update ends it (``_finishes``); nothing of it when
        the guard refuses the update. A build's first and last steps are each then one
        statement, which the conductor sends with no BEGIN/COMMIT."""
        params: dict[str, Any] = {f"v_{field}": getattr(update, field)
                                  for field in _UPDATABLE if getattr(update, field) is not None}
        if update.task_state is not None or update.clear_task_state:
            params["v_task_state"] = update.task_state
        params["v_updated_at"] = utcnow()
        params["w_uuid"] = instance_uuid
        if on_host is not None:
            params["w_host"] = on_host
        named: tuple[str, ...] = ()
        if expected_task_state is not None:
            named = tuple(state for state in expected_task_state if state is not None)
            params.update({f"w_task_{n}": state for n, state in enumerate(named)})
        shape = (tuple(params), None if expected_task_state is None else len(named),
                 expected_task_state is not None and None in expected_task_state, building)
        if event is not None:
            if not folds_event(self.txn.dialect, update):
                raise ValueError("this transition and its event are not one statement here: "
                                 "record the event on its own (folds_event)")
            params.update(_action_params(instance_uuid, request_id))
            now = params["v_updated_at"]
            params.update(v_event=event.name, v_now=now, v_host=event.host, v_start=now,
                          v_finish=now if event.finished else None,
                          v_result=event.result if event.finished else None,
                          v_details=event.details if event.finished else None)
            statement = _transition_event_statement(
                *shape, event.finished, _finishes(update), event.finished and
                event.result == "Error")
        else:
            statement = _transition_statement(*shape)
        connection = await self.txn.connection()
        row = (await connection.execute(statement, params)).one_or_none()
        table = _INSTANCES
        if row is None:
            current = (await connection.execute(
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
        connection = await self.txn.connection()
        row = (await connection.execute(
            sa_update(table).where(table.c.uuid == instance_uuid).values(values)
            .returning(*table.c))).one_or_none()
        if row is None:
            raise NotFound(f"Instance {instance_uuid} could not be found.")
        return self.record(row)

    async def record_of(self, instance_uuid: str) -> InstanceRecord:
        """The instance (deleted or not) as the bus carries it, read as one row (no ORM
        object); ``NotFound`` when there is none."""
        connection = await self.txn.connection()
        row = (await connection.execute(_RECORD_OF, {"w_uuid": instance_uuid})).one_or_none()
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

    async def place_taking_up(self, instance_uuid: str, host: str, request_id: str | None,
                              event: str, started_at: dt.datetime,
                              build_event: str) -> InstanceRecord:
        """Record the scheduler's choice of host for an instance that still waits for one,
        with the scheduler's ``event`` recorded whole (from ``started_at``, Success) and,
        in the same write, what the host's ``begin_build`` did on taking the build up: the
        instance moves to ``networking`` and ``build_event`` starts (on the host). The
        scheduler's claim runs it, and its cast carries the record back, so the host starts
        building with no call to the conductor: a bus round trip and a transaction fewer
        per boot. PostgreSQL: one statement (the placement's UPDATE ... RETURNING and both
        events as data-modifying CTEs); SQLite: three. Raises, having written nothing,
        ``InstanceGone`` when it was deleted or went past its take-up meanwhile, and
        ``AlreadyPlaced`` when it has a host already and still waits for it to build
        (``scheduling`` after a reschedule, or ``networking``: its build cast may be lost
        with the scheduler that sent it, and a redelivered request sends it again)."""
        connection = await self.txn.connection()
        now = utcnow()
        params: dict[str, Any] = _action_params(instance_uuid, request_id)
        params.update(w_uuid=instance_uuid, p_host=host, p_now=now, v_event=event,
                      v_host=None, v_start=started_at, v_finish=now, v_result="Success",
                      v_details=None, v_now=now, b_event=build_event, b_host=host)
        if self.txn.dialect == "postgresql":
            row = (await connection.execute(_PLACE_TAKING_UP, params)).one_or_none()
        else:
            row = (await connection.execute(_PLACE_NETWORKING, params)).one_or_none()
            if row is not None:
                await connection.execute(_INSERT_EVENT_AND_BUILD, params)
                await connection.execute(_touch_action(False, False), params)
        if row is not None:
            return self.record(row)
        current = (await connection.execute(_PLACED_HOST, params)).scalar()
        if current is None:  # no such instance, deleted, or past its take-up
            raise InstanceGone(instance_uuid)
        raise AlreadyPlaced(current)

    async def place_unshelved(self, instance_uuid: str, host: str) -> None:
        """Record the host a shelved-offloaded instance is unshelved on, if it still waits
        for one (``InstanceGone`` otherwise). The row is locked (read afresh) before the
        claim's provider is, as ``place_taking_up`` locks it with its update."""
        instance = await self.session.get(Instance, instance_uuid, with_for_update=True,
                                          populate_existing=True)
        if (instance is None or instance.deleted_at is not None or instance.host
                or instance.vm_state != states.SHELVED_OFFLOADED
                or instance.task_state != states.UNSHELVING):
            raise InstanceGone(instance_uuid)
        instance.host, instance.node = host, host

    async def on_host(self, host: str) -> list[str]:
        """The live instances on ``host`` (a prebuilt statement: every host report asks)."""
        connection = await self.txn.connection()
        return list((await connection.execute(_ON_HOST, {"w_host": host})).scalars())

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
            system_metadata=dict(instance.system_metadata or {}),
            config_drive=instance.config_drive == "True", key_name=instance.key_name,
            launch_index=instance.launch_index or 0,
            reservation_id=instance.reservation_id or "")

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

    async def record_event(self, instance_uuid: str, request_id: str | None, event: str, *,
                           host: str | None, finished: bool, result: str | None = None,
                           details: str | None = None,
                           started_at: dt.datetime | None = None,
                           finish_action: bool = False) -> None:
        """Start an event, or finish the started one of the same name (or, when none was
        started, record it whole); ``started_at``: an event never started (the
        scheduler's), recorded whole from then without looking for a started one;
        ``finish_action``: the action finishes with it (as ``finish_action`` would, in the
        same statement). The event belongs to the instance's action of ``request_id``, else
        to its newest; with no action nothing is recorded.

        Prebuilt statements on the tables (their SQL compiled once, the action found by a
        subquery of each), not ORM objects: every hop of a boot records one, and the unit of
        work and the statements' construction cost more than the SQL. An action or event
        already loaded as an ORM object in this transaction does not see these changes."""
        connection = await self.txn.connection()
        now = utcnow()
        params: dict[str, Any] = _action_params(instance_uuid, request_id)
        params.update(v_event=event, v_now=now, v_result=result, v_details=details)
        finished_one = 0
        failed = finished and result == "Error"
        postgresql = self.txn.dialect == "postgresql"
        if finished and started_at is None:
            if postgresql:
                # The started event finished and its action updated in one statement (a
                # data-modifying CTE): the last hop of every boot finishes its spawn event.
                touched = await connection.execute(
                    _FINISH_EVENT_TOUCHING[finish_action, failed], params)
                if touched.first() is not None:
                    return
            else:
                done = await connection.execute(_FINISH_EVENT, params)
                finished_one = done.rowcount
        if not finished_one:
            params.update(v_host=host, v_start=(started_at or now) if finished else now,
                          v_finish=now if finished else None,
                          v_result=result if finished else None,
                          v_details=details if finished else None)
            if postgresql:
                # The event and its action's update in one statement (a data-modifying CTE,
                # which SQLite has not): every hop of a boot records an event.
                await connection.execute(_INSERT_EVENT_TOUCHING[finish_action, failed], params)
                return
            await connection.execute(_INSERT_EVENT, params)
        await connection.execute(_touch_action(finish_action, failed), params)

    async def finish_action(self, instance_uuid: str, request_id: str | None,
                            message: str | None = None) -> None:
        connection = await self.txn.connection()
        params = _action_params(instance_uuid, request_id)
        params.update(v_now=utcnow(), v_message=message)
        await connection.execute(_FINISH_ACTION[bool(message)], params)


@functools.cache
def _transition_statement(keys: tuple[str, ...], expected: int | None, or_none: bool,
                          building: bool) -> Any:
    """``transition``'s UPDATE ... RETURNING for one shape of it, built (and its SQL
    compiled) once: ``keys`` its parameters (``v_<column>`` to set, ``w_...`` of the
    guard, ``w_host`` the host it must be on), ``expected`` how many named task states the
    guard takes (None: no guard), ``or_none`` whether no task state passes it too."""
    table = _INSTANCES
    statement = sa_update(table).where(table.c.uuid == bindparam("w_uuid"))
    if "w_host" in keys:
        statement = statement.where(table.c.host == bindparam("w_host"))
    if expected is not None:
        guard: ColumnElement[bool] = table.c.task_state.in_(
            [bindparam(f"w_task_{n}", type_=table.c.task_state.type) for n in range(expected)])
        if or_none:
            guard = or_(guard, table.c.task_state.is_(None))
        statement = statement.where(guard)
    if building:
        statement = statement.where(table.c.vm_state == states.BUILDING,
                                    table.c.deleted_at.is_(None))
    values = {key[2:]: bindparam(key, type_=table.c[key[2:]].type)
              for key in keys if key.startswith("v_")}
    return statement.values(values).returning(*table.c)


def _finishes(update: InstanceUpdate) -> bool:
    """Whether ``update`` ends the instance's action (a new vm state, no task left), as
    far as it says alone (``folds_event``)."""
    return update.vm_state is not None and update.clear_task_state


def folds_event(dialect: str, update: InstanceUpdate) -> bool:
    """Whether ``transition(update, event=...)`` is one statement here: on PostgreSQL
    (data-modifying CTEs), for an update that says alone whether it ends the action (a
    new vm state with the task cleared or set, or no new vm state) and names no host
    (the event's own parameter)."""
    return (dialect == "postgresql" and update.host is None
            and (update.vm_state is None or update.clear_task_state
                 or update.task_state is not None))


@functools.cache
def _transition_event_statement(keys: tuple[str, ...], expected: int | None, or_none: bool,
                                building: bool, finished: bool, finish_action: bool,
                                failed: bool) -> Any:
    """PostgreSQL: ``_transition_statement`` with ``record_event``'s statements in the same
    one (data-modifying CTEs, each run only when the instance's update was: the guard
    refusing it leaves the event unrecorded, as the rollback of the two statements did).
    A finished event finishes the started one of its name, or is recorded whole when
    none was started; the action is updated (finished: ``finish_action``) by either."""
    moved = _transition_statement(keys, expected, or_none, building).cte("moved_instance")
    went = select(moved.c.uuid).exists()
    ctes: list[Any] = []
    if finished:
        finished_event = sa_update(_EVENTS).where(_EVENTS.c.id == (
            select(_EVENTS.c.id).where(_EVENTS.c.action_id == _ACTION_OF,
                                       _EVENTS.c.event == bindparam("v_event"),
                                       _EVENTS.c.finish_time.is_(None))
            .order_by(_EVENTS.c.id).limit(1).scalar_subquery()), went).values(
            finish_time=bindparam("v_now", type_=_EVENTS.c.finish_time.type),
            result=bindparam("v_result", type_=_EVENTS.c.result.type),
            details=bindparam("v_details", type_=_EVENTS.c.details.type)).returning(
            _EVENTS.c.action_id).cte("finished_event")
        ctes.append(finished_event)
        inserted = _event_insert(went, ~select(finished_event.c.action_id).exists())
        touched_ids: Any = union_all(select(finished_event.c.action_id),
                                     select(inserted.c.action_id))
    else:
        inserted = _event_insert(went)
        touched_ids = select(inserted.c.action_id)
    ctes.append(inserted)
    touched = sa_update(_ACTIONS).where(_ACTIONS.c.id.in_(touched_ids)).values(
        updated_at=_NOW, **({"finish_time": _NOW} if finish_action else {}),
        **({"message": "Error"} if failed else {})).cte("touched_action")
    return select(moved).add_cte(*ctes, touched)


def _event_insert(*conditions: Any) -> Any:
    """``_INSERT_EVENT`` made only under ``conditions``, as a CTE giving its action."""
    return _EVENTS.insert().from_select(_EVENT_COLUMNS, _EVENT_ROW.where(*conditions)).returning(
        _EVENTS.c.action_id).cte("inserted_event")


def _action_params(instance_uuid: str, request_id: str | None) -> dict[str, Any]:
    return {"a_uuid": instance_uuid, "a_request": request_id or None}


def _action_of() -> ScalarSelect[Any]:
    """The id of the action of ``a_request`` of instance ``a_uuid``, else of its newest
    (a NULL ``a_request`` matches none)."""
    actions = _ACTIONS
    return (select(actions.c.id).where(actions.c.instance_uuid == bindparam("a_uuid"))
            .order_by(case((actions.c.request_id == bindparam("a_request"), 0), else_=1),
                      actions.c.id.desc())
            .limit(1).scalar_subquery())


_ACTION_OF = _action_of()
#: An instance waiting for its host: live and ``scheduling``.
_WAITING = (_INSTANCES.c.uuid == bindparam("w_uuid"), _INSTANCES.c.deleted_at.is_(None),
            _INSTANCES.c.task_state == states.SCHEDULING)
#: ``place_taking_up``: a waiting instance with no host yet takes ``p_host`` and moves to
#: ``networking`` (what a host's ``begin_build`` did), the row read back.
_PLACE_NETWORKING = sa_update(_INSTANCES).where(
    *_WAITING, or_(_INSTANCES.c.host.is_(None), _INSTANCES.c.host == "")).values(
    host=bindparam("p_host", type_=_INSTANCES.c.host.type),
    node=bindparam("p_host", type_=_INSTANCES.c.node.type),
    task_state=states.NETWORKING,
    updated_at=bindparam("p_now", type_=_INSTANCES.c.updated_at.type)).returning(*_INSTANCES.c)
#: The host of a live instance placed and waiting for its host (``scheduling``, or
#: ``networking`` from ``place_taking_up``): a redelivered request sends its cast again.
_PLACED_HOST = select(_INSTANCES.c.host).where(
    _INSTANCES.c.uuid == bindparam("w_uuid"), _INSTANCES.c.deleted_at.is_(None),
    _INSTANCES.c.vm_state == states.BUILDING,
    _INSTANCES.c.task_state.in_([states.SCHEDULING, states.NETWORKING]),
    _INSTANCES.c.host.is_not(None), _INSTANCES.c.host != "")


def _place_taking_up() -> Any:
    """PostgreSQL (``place_taking_up``): ``_PLACE_NETWORKING``, the scheduler's event
    recorded whole, the build's started and their action updated, each written only when
    the placement was, in one statement giving the placed row (none: nothing written)."""
    placed = _PLACE_NETWORKING.cte("placed_instance")
    went = select(placed.c.uuid).exists()
    scheduled = _event_insert(went)
    building = _EVENTS.insert().from_select(
        ["action_id", "event", "host", "start_time"],
        select(_ACTIONS.c.id, bindparam("b_event", type_=_EVENTS.c.event.type),
               bindparam("b_host", type_=_EVENTS.c.host.type),
               bindparam("v_now", type_=_EVENTS.c.start_time.type))
        .where(_ACTIONS.c.id == _ACTION_OF, went)).returning(
        _EVENTS.c.action_id).cte("build_event")
    touched = sa_update(_ACTIONS).where(_ACTIONS.c.id.in_(union_all(
        select(scheduled.c.action_id), select(building.c.action_id)))).values(
        updated_at=_NOW).cte("touched_action")
    return select(placed).add_cte(scheduled, building, touched)


_INSERT_INSTANCE = _INSTANCES.insert()
_ON_HOST = select(_INSTANCES.c.uuid).where(_INSTANCES.c.host == bindparam("w_host"),
                                           _INSTANCES.c.deleted_at.is_(None))
_RECORD_OF = select(_INSTANCES).where(_INSTANCES.c.uuid == bindparam("w_uuid"))
_INSERT_ACTION = _ACTIONS.insert()



@functools.cache
def _insert_created(columns: tuple[str, ...]) -> Any:
    """PostgreSQL: an instance's row (``columns``, bound as ``i_<column>``) and its
    ``create`` action (request ``a_request_id``) in one statement, the row's INSERT a
    data-modifying CTE: a round trip and a statement fewer per boot than two INSERTs.
    Built once (a boot's rows always name the same columns)."""
    new = _INSTANCES.insert().values(
        {c: bindparam(f"i_{c}", type_=_INSTANCES.c[c].type) for c in columns}).returning(
        _INSTANCES.c.uuid, _INSTANCES.c.project_id, _INSTANCES.c.user_id,
        _INSTANCES.c.created_at).cte("new_instance")
    return _ACTIONS.insert().from_select(
        ["instance_uuid", "request_id", "action", "project_id", "user_id", "start_time"],
        select(new.c.uuid, bindparam("a_request_id", type_=_ACTIONS.c.request_id.type),
               literal("create", _ACTIONS.c.action.type), new.c.project_id, new.c.user_id,
               new.c.created_at))


#: The oldest started and unfinished event of the name, finished.
_FINISH_EVENT = sa_update(_EVENTS).where(_EVENTS.c.id == (
    select(_EVENTS.c.id).where(_EVENTS.c.action_id == _ACTION_OF,
                               _EVENTS.c.event == bindparam("v_event"),
                               _EVENTS.c.finish_time.is_(None))
    .order_by(_EVENTS.c.id).limit(1).scalar_subquery())).values(
    finish_time=bindparam("v_now", type_=_EVENTS.c.finish_time.type),
    result=bindparam("v_result", type_=_EVENTS.c.result.type),
    details=bindparam("v_details", type_=_EVENTS.c.details.type))

#: An event of the action (none when the instance has no action).
_EVENT_COLUMNS = ["action_id", "event", "host", "start_time", "finish_time", "result",
                  "details"]
_EVENT_ROW = (select(_ACTIONS.c.id,
                     bindparam("v_event", type_=_EVENTS.c.event.type),
                     bindparam("v_host", type_=_EVENTS.c.host.type),
                     bindparam("v_start", type_=_EVENTS.c.start_time.type),
                     bindparam("v_finish", type_=_EVENTS.c.finish_time.type),
                     bindparam("v_result", type_=_EVENTS.c.result.type),
                     bindparam("v_details", type_=_EVENTS.c.details.type))
              .where(_ACTIONS.c.id == _ACTION_OF))
_INSERT_EVENT = _EVENTS.insert().from_select(_EVENT_COLUMNS, _EVENT_ROW)
#: SQLite (``place_taking_up``): ``_INSERT_EVENT`` and the build's event started on the
#: host (``b_event``, ``b_host``, at ``v_now``) in one statement, in that order: one
#: statement of every boot fewer, where a data-modifying CTE is not to be had.
_INSERT_EVENT_AND_BUILD = _EVENTS.insert().from_select(_EVENT_COLUMNS, union_all(
    _EVENT_ROW,
    select(_ACTIONS.c.id, bindparam("b_event", type_=_EVENTS.c.event.type),
           bindparam("b_host", type_=_EVENTS.c.host.type),
           bindparam("v_now", type_=_EVENTS.c.start_time.type),
           null(), null(), null())
    .where(_ACTIONS.c.id == _ACTION_OF)))


def _action_update(**values: Any) -> Any:
    return sa_update(_ACTIONS).where(_ACTIONS.c.id == _ACTION_OF).values(**values)


_NOW = bindparam("v_now", type_=_ACTIONS.c.updated_at.type)
#: The cases of an event's update of its action: (finishing it, the event failed).
_TOUCH_CASES = [(finishing, failed) for finishing in (False, True) for failed in (False, True)]


def _touched(finishing: bool, failed: bool) -> dict[str, Any]:
    """What an event writes on its action: when it was last updated, when it finished (the
    event finishing it), and that it failed (the event failing)."""
    return {"updated_at": _NOW, **({"finish_time": _NOW} if finishing else {}),
            **({"message": "Error"} if failed else {})}


def _touching(event: Any, finishing: bool, failed: bool) -> Any:
    """PostgreSQL: the update of the action of the event a data-modifying CTE wrote, in
    the statement of that CTE."""
    return sa_update(_ACTIONS).where(_ACTIONS.c.id.in_(select(event.c.action_id))).values(
        **_touched(finishing, failed)).add_cte(event)


#: The action's update by an event: (finishing it, the event failed) -> statement.
_TOUCH_ACTION = {case: _action_update(**_touched(*case)) for case in _TOUCH_CASES}
#: PostgreSQL: ``_INSERT_EVENT`` and the action's update by it in one statement, the update
#: made only when the event was (as both statements do: no action, neither writes).
_INSERTED_EVENT = _INSERT_EVENT.returning(_EVENTS.c.action_id).cte("inserted_event")
_INSERT_EVENT_TOUCHING = {case: _touching(_INSERTED_EVENT, *case) for case in _TOUCH_CASES}
#: PostgreSQL: ``_FINISH_EVENT`` and the action's update by it in one statement, the update
#: made only when an event was finished (its action is the one ``_touch_action`` updates:
#: both are ``_ACTION_OF``); a row back says one was.
_FINISHED_EVENT = _FINISH_EVENT.returning(_EVENTS.c.action_id).cte("finished_event")
_FINISH_EVENT_TOUCHING = {case: _touching(_FINISHED_EVENT, *case).returning(_ACTIONS.c.id)
                          for case in _TOUCH_CASES}
#: ``finish_action``: (with a message) -> statement.
_FINISH_ACTION = {
    False: _action_update(finish_time=_NOW),
    True: _action_update(finish_time=_NOW, message=bindparam(
        "v_message", type_=_ACTIONS.c.message.type))}


def _touch_action(finishing: bool, failed: bool) -> Any:
    return _TOUCH_ACTION[finishing, failed]


_PLACE_TAKING_UP = _place_taking_up()
