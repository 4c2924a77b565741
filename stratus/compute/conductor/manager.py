"""The conductor unit. Several can run at once: each call is one database transaction, or
(a build's steps: ``begin_build``, ``build_started``, ``instance_update``, ``action_event``)
one unit of a transaction shared with the concurrent calls' (``GroupCommit``), whose
outcome is the call's own as if alone.

On SQLite the conductor's writes do not queue with compute-api's (a burst of boots would
hold every build's progress behind every POST): SQLite's busy handler lets them in between.
When SQLite kept its lock past ``busy_timeout`` ("database is locked", the transaction
rolled back whole), a call made of one transaction runs again inside the process's queue
of writers, where it cannot be locked out (``_queued_when_busy``)."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import OperationalError

from stratus.compute import moves, states
from stratus.compute.errors import ClaimConflict, InsufficientResources, UnexpectedTaskState
from stratus.compute.hosts import Hosts, report_known_host, seen
from stratus.compute.instances import folds_event
from stratus.compute.models import Instance
from stratus.compute.objects import (
    MAX_BUILD_ATTEMPTS,
    ActionEvent,
    Fault,
    HostReport,
    InstanceRecord,
    InstanceStates,
    InstanceUpdate,
    LiveMigrationProgress,
    MigrationRecord,
    MoveStep,
)
from stratus.compute.placement import DISK_GB, MEMORY_MB, VCPU, InventorySpec, provider_uuid
from stratus.compute.rpcapi import ComputeAgentAPI
from stratus.compute.scheduler.request_spec import FlavorSpec
from stratus.compute.service import ComputeRuntime, ComputeService
from stratus.core.context import RequestContext
from stratus.core.db import GroupCommit, Txn, utcnow
from stratus.core.metrics import BOOTS

LOG = logging.getLogger(__name__)

#: Whether this call's transactions queue with the process's SQLite writers (a retry).
_IN_QUEUE: ContextVar[bool] = ContextVar("conductor_in_writer_queue", default=False)
#: SQLite's result code for a lock it could not take in ``busy_timeout``.
_SQLITE_BUSY = 5

#: Batches of builds' steps one conductor commits at once on PostgreSQL (``_grouped``).
POSTGRESQL_LANES = 4

P = ParamSpec("P")
R = TypeVar("R")


def _sqlite_busy(exc: OperationalError) -> bool:
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF == _SQLITE_BUSY
    return "database is locked" in str(exc.orig)


def _queued_when_busy(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """A call of one transaction run again in the queue of SQLite writers when SQLite
    reported its lock busy (the transaction rolled back whole, so nothing ran twice)."""

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except OperationalError as exc:
            if _IN_QUEUE.get() or not _sqlite_busy(exc):
                raise
            LOG.info("%s: SQLite's lock stayed busy; again in the queue of writers",
                     method.__name__)
        token = _IN_QUEUE.set(True)
        try:
            return await method(*args, **kwargs)
        finally:
            _IN_QUEUE.reset(token)

    return call


class ConductorManager:
    METHODS = ("instance_get", "begin_build", "build_started", "instance_update", "action_event",
               "build_failed",
               "instance_destroyed", "instance_offloaded", "host_report",
               "host_instance_states",
               "migration_get", "migration_update", "move_step", "migration_progress",
               "move_ended")

    def __init__(self, runtime: ComputeRuntime, agents: ComputeAgentAPI, *,
                 service_down_time: float | None = None) -> None:
        """``service_down_time``: only to override ``settings.compute.service_down_time``
        (which ``stratus.compute.hosts`` reads)."""
        self.runtime = runtime
        self.agents = agents
        self.service_down_time = service_down_time
        #: The builds' steps of concurrent boots, committed together (``_grouped``). Not in
        #: SQLite's queue of writers, as ``_txn``; one batch at a time on SQLite (one
        #: writer), a few on PostgreSQL (a batch waiting on a row lock holds up no other).
        backend = runtime.db.backend
        self._group = GroupCommit(runtime.db, write=False,
                                  lanes=1 if backend == "sqlite" else POSTGRESQL_LANES)

    async def _grouped(self, work: Callable[[ComputeService], Awaitable[R]], *, key: str,
                       one_statement: bool = False) -> R:
        """One instance's step of a build (``key``: its uuid), in a transaction shared with
        the steps of other builds that arrive together (``GroupCommit``: one commit for
        them all under a burst; alone, the transaction ``_txn`` makes). ``work`` may run
        more than once (a batch that failed runs again unit by unit), each run but the
        last rolled back: it only reads and writes in its transaction. A retry in the
        queue of SQLite writers (``_queued_when_busy``) runs alone."""
        if _IN_QUEUE.get():
            async with self._txn(one_statement=one_statement) as svc:
                return await work(svc)
        runtime = self.runtime

        async def unit(txn: Txn) -> R:
            return await work(ComputeService(runtime, txn))

        return await self._group.run(unit, key=key, one_statement=one_statement)

    @asynccontextmanager
    async def _txn(self, *, one_statement: bool = False) -> AsyncIterator[ComputeService]:
        """A transaction that writes: outside SQLite's queue of writers unless retrying;
        ``one_statement``: its one write is its only statement (no BEGIN/COMMIT round trips
        on PostgreSQL)."""
        async with self.runtime.service(write=_IN_QUEUE.get(),
                                        one_statement=one_statement) as svc:
            yield svc

    async def recover_orphans(self) -> list[str]:
        """Finish what hosts that went down left: builds go to ERROR, deletes complete.

        The conductor unit runs it periodically (its watchdog); every conductor may, for
        each change is guarded by the instance's current state. Returns the instances it settled.
        """
        settled: list[str] = []
        async with self.runtime.service(write=False) as svc:
            hosts = svc.hosts if self.service_down_time is None else \
                Hosts(svc.session, self.service_down_time)
            down = await hosts.down_hosts()
            stranded = await svc.instances.stranded_on(down)
        for instance_uuid in stranded:
            async with self._txn() as svc:
                row = await svc.instances.get(instance_uuid, include_deleted=True, lock=True)
                if row.deleted_at is not None or row.host not in down:
                    continue
                await svc.placement.free(row.uuid)
                if row.task_state == states.DELETING:
                    await svc.instances.soft_delete(row.uuid)
                elif row.vm_state == states.BUILDING:
                    await svc.instances.set_error(
                        row.uuid, code=500, host=row.host,
                        message=f"Compute host {row.host} stopped responding while building "
                                f"the instance.")
                    await svc.instances.finish_action(row.uuid, None, "Error")
                else:
                    continue
                settled.append(row.uuid)
        if settled:
            LOG.warning("settled %d instance(s) left by compute hosts that are down: %s",
                        len(settled), ", ".join(settled))
        return settled

    async def offload_shelved(self, older_than: float) -> list[str]:
        """Offload the servers shelved more than ``older_than`` seconds ago (Nova's
        ``shelved_offload_time``): each is marked ``shelving_offloading`` (so one conductor
        takes it) and its host told to offload it. Returns the instances sent off."""
        now = utcnow()
        due: list[tuple[str, str]] = []
        async with self._txn() as svc:
            for instance in await svc.instances.shelved_on_hosts():
                shelved_at = (instance.system_metadata or {}).get("shelved_at")
                try:
                    since = dt.datetime.fromisoformat(shelved_at) if shelved_at else None
                except ValueError:
                    since = None
                if since is None or (now - since).total_seconds() < older_than:
                    continue
                assert instance.host is not None
                instance.task_state = states.SHELVING_OFFLOADING
                due.append((instance.uuid, instance.host))
        ctx = RequestContext.for_service("conductor")
        for uuid, host in due:
            await self.agents.shelve_offload_instance(ctx, host, uuid)
        return [uuid for uuid, _ in due]

    async def instance_get(self, ctx: RequestContext, instance_uuid: str) -> InstanceRecord:
        async with self.runtime.service(write=False) as svc:
            instance = await svc.instances.get(instance_uuid, include_deleted=True)
            return svc.instances.record(instance)

    @_queued_when_busy
    async def build_started(self, ctx: RequestContext, instance_uuid: str, host: str,
                            event: str) -> InstanceRecord:
        async def work(svc: ComputeService) -> InstanceRecord:
            try:
                record = await svc.instances.transition(
                    instance_uuid, InstanceUpdate(clear_task_state=True),
                    [states.SCHEDULING, None], building=True)
            except UnexpectedTaskState:  # deleted, or on its way: the host decides on it
                return svc.instances.record(
                    await svc.instances.get(instance_uuid, include_deleted=True))
            await svc.instances.record_event(instance_uuid, ctx.request_id, event,
                                             host=host, finished=False)
            return record

        return await self._grouped(work, key=instance_uuid)

    @_queued_when_busy
    async def begin_build(self, ctx: RequestContext, instance_uuid: str, host: str,
                          event: str) -> InstanceRecord | None:
        """A host takes up a build: in one transaction (one bus round trip fewer than
        ``build_started`` and a first ``instance_update``), a live instance still building
        and not yet taken up (``scheduling``), placed on ``host``, moves to ``networking``
        and ``event`` starts. None when there is nothing to build: it was deleted, is being
        deleted, another delivery of the same build took it up, or it is no longer placed
        on ``host`` (a reschedule moved it, and its claim, to another host while this cast
        was on its way)."""
        update = InstanceUpdate(task_state=states.NETWORKING)
        # PostgreSQL: the update and the event are one statement, sent alone.
        folded = folds_event(self.runtime.db.backend, update)

        async def work(svc: ComputeService) -> InstanceRecord | None:
            try:
                record = await svc.instances.transition(
                    instance_uuid, update, [states.SCHEDULING, None], building=True,
                    on_host=host,
                    event=ActionEvent(name=event, host=host) if folded else None,
                    request_id=ctx.request_id)
            except UnexpectedTaskState:
                # This host took the build up already and the answer was lost (the broker or
                # this conductor went away between the commit and the reply): the cast's
                # redelivery to the same host takes it up again, or it stays in networking
                # for good (the chaos test's RabbitMQ stop found one so).
                current = svc.instances.record(
                    await svc.instances.get(instance_uuid, include_deleted=True))
                if (current.task_state == states.NETWORKING and current.host == host
                        and current.vm_state == states.BUILDING and not current.deleted):
                    return current
                return None
            if not folded:
                await svc.instances.record_event(instance_uuid, ctx.request_id, event,
                                                 host=host, finished=False)
            return record

        return await self._grouped(work, key=instance_uuid, one_statement=folded)

    @_queued_when_busy
    async def instance_update(self, ctx: RequestContext, instance_uuid: str,
                              update: InstanceUpdate,
                              expected_task_state: list[str | None] | None = None,
                              event: ActionEvent | None = None,
                              fault: Fault | None = None) -> InstanceRecord:
        # A step with no fault, and either no event and no new vm state (a build's move
        # to spawning) or an event the update's statement records too (PostgreSQL: a
        # build's last step), is one statement, committed on its own.
        folded = event is not None and fault is None and folds_event(
            self.runtime.db.backend, update)
        alone = folded or (event is None and fault is None and update.vm_state is None)

        async def work(svc: ComputeService) -> InstanceRecord:
            record = await svc.instances.transition(
                instance_uuid, update, expected_task_state,
                event=event if folded else None, request_id=ctx.request_id)
            if folded:
                return record
            if fault is not None:
                await svc.instances.add_fault(instance_uuid, code=fault.code,
                                              message=fault.message, details=fault.details,
                                              host=record.host)
            # A new vm state with no task left ends the action (the build's last step).
            finishing = update.vm_state is not None and record.task_state is None
            if event is not None:
                await svc.instances.record_event(
                    instance_uuid, ctx.request_id, event.name, host=event.host,
                    finished=event.finished, result=event.result, details=event.details,
                    finish_action=finishing)
            elif finishing:
                await svc.instances.finish_action(instance_uuid, ctx.request_id)
            return record

        return await self._grouped(work, key=instance_uuid, one_statement=alone)

    @_queued_when_busy
    async def action_event(self, ctx: RequestContext, instance_uuid: str, event: str,
                           host: str, finished: bool, result: str | None = None,
                           details: str | None = None) -> None:
        async def work(svc: ComputeService) -> None:
            await svc.instances.record_event(instance_uuid, ctx.request_id, event, host=host,
                                             finished=finished, result=result,
                                             details=details)

        await self._grouped(work, key=instance_uuid)

    async def build_failed(self, ctx: RequestContext, instance_uuid: str, host: str,
                           fault: Fault, alternates: list[str], attempt: int,
                           admin_password: str | None = None) -> None:
        """Free the failed host's claim; claim on the next alternate, or set ERROR."""
        async with self._txn() as svc:
            instance = await svc.instances.get(instance_uuid, include_deleted=True, lock=True)
            if not _still_building_on(instance, host):
                # Settled meanwhile (a watchdog set ERROR, freeing the claim) or moved on
                # (a report redelivered): its claim now is not this host's to free.
                LOG.info("build_failed of %s on %s ignored: it is %s/%s on %s now",
                         instance_uuid, host, instance.vm_state, instance.task_state,
                         instance.host)
                return
            await svc.placement.free(instance_uuid)
            if instance.deleted_at is not None or instance.task_state == states.DELETING:
                return
            flavor = instance.flavor
        spec = FlavorSpec(vcpus=flavor["vcpus"], memory_mb=flavor["ram"],
                          root_gb=flavor["disk"], ephemeral_gb=flavor.get("ephemeral", 0),
                          swap_mb=flavor.get("swap", 0))
        remaining = list(alternates)
        while remaining and attempt < MAX_BUILD_ATTEMPTS:
            candidate = remaining.pop(0)
            try:
                async with self._txn() as svc:
                    current = await svc.instances.get(instance_uuid, include_deleted=True,
                                                      lock=True)
                    if not _still_building_on(current, host) \
                            or current.task_state == states.DELETING:
                        LOG.info("%s left %s's build meanwhile: not rescheduled",
                                 instance_uuid, host)
                        return
                    await svc.placement.claim(instance_uuid, provider_uuid(candidate),
                                              spec.resources)
                    await svc.instances.update(instance_uuid, InstanceUpdate(
                        vm_state=states.BUILDING, task_state=states.SCHEDULING,
                        host=candidate, node=candidate))
            except (ClaimConflict, InsufficientResources) as exc:
                LOG.info("alternate %s for %s refused the claim: %s", candidate,
                         instance_uuid, exc)
                continue
            BOOTS.labels("rescheduled").inc()
            LOG.info("rescheduling %s from %s to %s (attempt %d): %s", instance_uuid, host,
                     candidate, attempt + 1, fault.message)
            await self.agents.build_and_run_instance(ctx, candidate, instance_uuid, remaining,
                                                     attempt + 1, admin_password)
            return
        async with self._txn() as svc:
            message = fault.message
            if attempt > 1 or alternates:
                message = f"Build of instance {instance_uuid} failed: {fault.message}"
            await svc.instances.set_error(instance_uuid, message=message, code=fault.code,
                                          details=fault.details, host=host)
            await svc.instances.finish_action(instance_uuid, ctx.request_id, "Error")
        BOOTS.labels("error").inc()

    @_queued_when_busy
    async def instance_destroyed(self, ctx: RequestContext, instance_uuid: str,
                                 host: str) -> None:
        async with self._txn() as svc:
            # The instance's row (written first by ``soft_delete``) before its providers',
            # the order of ``build_failed`` and the scheduler's claim: a host's report of
            # the destroy racing its report of a failed build cannot deadlock.
            await svc.instances.soft_delete(instance_uuid)
            await svc.placement.free(instance_uuid)
            await svc.instances.finish_action(instance_uuid, ctx.request_id)

    @_queued_when_busy
    async def instance_offloaded(self, ctx: RequestContext, instance_uuid: str, host: str,
                                 fault: Fault | None = None) -> None:
        async with self._txn() as svc:
            # Locked before its claim is freed: the order of ``build_failed``.
            instance = await svc.instances.get(instance_uuid, include_deleted=True,
                                               lock=True)
            await svc.placement.free(instance_uuid)
            if instance.deleted_at is not None or instance.task_state == states.DELETING:
                return  # the delete owns it now (and finds nothing left on the host)
            instance.host = instance.node = None
            instance.vm_state, instance.task_state = states.SHELVED_OFFLOADED, None
            instance.power_state = 0
            if fault is not None:
                await svc.instances.add_fault(instance_uuid, code=fault.code,
                                              message=fault.message, details=fault.details,
                                              host=host)
            await svc.instances.finish_action(instance_uuid, ctx.request_id,
                                              "Error" if fault is not None else None)

    @_queued_when_busy
    async def host_report(self, ctx: RequestContext, report: HostReport) -> list[str]:
        """A host's periodic report: its heartbeat, its provider and inventories, answered
        with the live instances it should have (if ``report.with_instances``: the start's
        report; a periodic one is answered with none, so its cost does not grow with the
        host's servers). A known host whose inventories did not change (nearly every
        report) costs four prebuilt statements (three without the instances) and no ORM
        session (on PostgreSQL one, sent alone), and writes only its service row: never the
        provider's, which the claims on the host lock, so the heartbeat does not wait for
        them (``placement.PROVIDER_AS_REPORTED``). A new host, or changed attributes or
        inventories, take the ORM path in the same transaction (on PostgreSQL a second one,
        its heartbeat counted once, already written)."""
        inventories = {
            VCPU: InventorySpec(report.vcpus, allocation_ratio=report.cpu_allocation_ratio),
            MEMORY_MB: InventorySpec(report.memory_mb, reserved=report.reserved_host_memory_mb,
                                     allocation_ratio=report.ram_allocation_ratio),
            DISK_GB: InventorySpec(report.local_gb,
                                   allocation_ratio=report.disk_allocation_ratio),
        }
        provider = provider_uuid(report.host)
        counted = False  # the heartbeat written already (PostgreSQL's one statement)
        if self.runtime.db.backend == "postgresql":
            async with self._txn(one_statement=True) as svc:
                known = await report_known_host(
                    await svc.txn.connection(), report.host, provider, inventories,
                    hypervisor_type=report.hypervisor_type, cpu_arch=report.cpu_arch,
                    with_instances=report.with_instances)
            if known.instances is not None:
                return known.instances
            counted = known.seen
        async with self._txn() as svc:
            if not counted and not await seen(await svc.txn.connection(), report.host):
                await svc.hosts.heartbeat(report.host, report.zone)
            if not await svc.placement.refresh_provider(
                    provider, inventories, hypervisor_type=report.hypervisor_type,
                    cpu_arch=report.cpu_arch):
                await svc.placement.ensure_provider(
                    provider, report.host, inventories,
                    hypervisor_type=report.hypervisor_type, cpu_arch=report.cpu_arch)
            if not report.with_instances:
                return []  # a heartbeat: not a read of every server of the host
            return await svc.instances.on_host(report.host)

    async def host_instance_states(self, ctx: RequestContext,
                                   host: str) -> list[InstanceStates]:
        async with self.runtime.service(write=False) as svc:
            return await svc.instances.states_on(host)

    # Moves between hosts (see stratus.compute.moves) ----------------------------------------

    async def migration_get(self, ctx: RequestContext, migration_uuid: str) -> MigrationRecord:
        async with self.runtime.service(write=False) as svc:
            return svc.migrations.record(await svc.migrations.get(migration_uuid))

    @_queued_when_busy
    async def migration_update(self, ctx: RequestContext, migration_uuid: str, status: str,
                               update: InstanceUpdate | None = None,
                               expected_task_state: list[str | None] | None = None,
                               event: ActionEvent | None = None) -> InstanceRecord:
        """A step of a move: the migration's status and the server's states together."""
        async with self._txn() as svc:
            step = await self._step(svc, ctx, migration_uuid, status,
                                    update or InstanceUpdate(), expected_task_state, event)
            return step.instance

    @_queued_when_busy
    async def move_step(self, ctx: RequestContext, migration_uuid: str,
                        status: str | None = None, update: InstanceUpdate | None = None,
                        expected_task_state: list[str | None] | None = None,
                        event: ActionEvent | None = None) -> MoveStep:
        """A step of a move as ``migration_update`` (``status`` or ``update`` None: left as
        they are), answered with the migration too: what a host reads as it takes a step
        up, in the step's own transaction."""
        async with self._txn() as svc:
            return await self._step(svc, ctx, migration_uuid, status, update,
                                    expected_task_state, event)

    @staticmethod
    async def _step(svc: ComputeService, ctx: RequestContext, migration_uuid: str,
                    status: str | None, update: InstanceUpdate | None,
                    expected_task_state: list[str | None] | None,
                    event: ActionEvent | None) -> MoveStep:
        # Statements, no ORM objects: each host's step of every move is one of these.
        migration = await svc.migrations.step(migration_uuid, status)
        uuid = migration.instance_uuid
        if update is not None:
            instance = await svc.instances.transition(uuid, update, expected_task_state)
        else:
            instance = await svc.instances.record_of(uuid)
            if expected_task_state is not None \
                    and instance.task_state not in expected_task_state:
                raise UnexpectedTaskState(
                    f"Instance {uuid} is in task state {instance.task_state}, not one of "
                    f"{expected_task_state}.")
        if event is not None:
            await svc.instances.record_event(
                uuid, ctx.request_id, event.name, host=event.host, finished=event.finished,
                result=event.result, details=event.details)
        return MoveStep(migration=migration, instance=instance)

    @_queued_when_busy
    async def migration_progress(self, ctx: RequestContext, migration_uuid: str,
                                 progress: LiveMigrationProgress) -> None:
        async with self._txn() as svc:
            await svc.migrations.set_progress(migration_uuid, progress)

    @_queued_when_busy
    async def move_ended(self, ctx: RequestContext, migration_uuid: str, ending: str,
                         power_state: int = 0, event: ActionEvent | None = None,
                         fault: Fault | None = None) -> InstanceRecord:
        """Settle a move (``stratus.compute.moves.ENDINGS``): states, flavor, host and both
        claims in one transaction, with the step's event and fault; the action ends."""
        settle = moves.ENDINGS[ending]
        async with self._txn() as svc:
            instance = await settle(svc, migration_uuid, power_state)
            if fault is not None:
                await svc.instances.add_fault(instance.uuid, code=fault.code,
                                              message=fault.message, details=fault.details,
                                              host=event.host if event else instance.host)
            # The action ends with the step's event (in its statement), or on its own when
            # there is none or the event does not say Error and the fault does.
            with_event = event is not None and (fault is None or event.result == "Error")
            if event is not None:
                await svc.instances.record_event(
                    instance.uuid, ctx.request_id, event.name, host=event.host,
                    finished=event.finished, result=event.result, details=event.details,
                    finish_action=with_event)
            if not with_event:
                await svc.instances.finish_action(instance.uuid, ctx.request_id,
                                                  "Error" if fault is not None else None)
            if isinstance(instance, InstanceRecord):
                return instance
            return svc.instances.record(instance)

    async def confirm_expired_resizes(self, window: float) -> list[str]:
        """Confirm the resizes and cold migrations left unconfirmed longer than ``window``
        seconds (Nova's ``resize_confirm_window``), as their owners could have: the
        ``confirmResize`` action, then the source host drops what it kept. Returns the
        migrations it began confirming."""
        if window <= 0:
            return []
        async with self._txn() as svc:
            expired = await svc.migrations.unconfirmed_before(
                utcnow() - dt.timedelta(seconds=window))
        begun: list[str] = []
        for migration_uuid in expired:
            async with self._txn() as svc:
                migration = await svc.migrations.get(migration_uuid)
                instance = await svc.instances.get(migration.instance_uuid,
                                                   include_deleted=True)
                if (migration.status != "finished" or instance.deleted_at is not None
                        or instance.vm_state != states.RESIZED or instance.task_state):
                    continue
                ctx = RequestContext(user_id=instance.user_id, project_id=instance.project_id,
                                     roles=["service"])
                await svc.migrations.set_status(migration_uuid, "confirming")
                await svc.instances.start_action(ctx, instance.uuid, "confirmResize")
                source = migration.source_compute or ""
                source_up = bool(source) and (await svc.hosts.up_states({source})).get(
                    source, False)
                if not source_up:
                    # Nothing to clean on a dead host: settle here.
                    await moves.confirmed(svc, migration_uuid, instance.power_state)
                    await svc.instances.finish_action(instance.uuid, ctx.request_id)
            begun.append(migration_uuid)
            if source_up:
                await self.agents.confirm_resize(ctx, source, instance.uuid, migration_uuid)
        if begun:
            LOG.info("confirming %d resize(s) left unconfirmed over %ss: %s", len(begun),
                     window, ", ".join(begun))
        return begun


def _still_building_on(instance: Instance, host: str) -> bool:
    """Whether ``instance`` is still being built on ``host`` (or deleted or being deleted
    there, which the caller's own checks handle)."""
    if instance.deleted_at is not None or instance.task_state == states.DELETING:
        return True
    return instance.vm_state == states.BUILDING and instance.host == host
