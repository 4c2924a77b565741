"""Typed bus clients of compute's units: scheduler, conductor and compute agents.

Each class here is the only way other code talks to that unit; its manager serves the same
method names (``stratus/compute/{scheduler,conductor,agent}/manager.py``).
"""

from __future__ import annotations

from typing import Any

from stratus.compute.console_types import ConsoleEndpoint, ConsoleKind, ConsoleUnavailable
from stratus.compute.errors import GuestAgentNotEnabled, UnexpectedTaskState
from stratus.compute.objects import (
    ActionEvent,
    BuildRequest,
    ExternalEvent,
    Fault,
    HostReport,
    InstanceRecord,
    InstanceStates,
    InstanceUpdate,
    LiveMigrationProgress,
    MigrationRecord,
    MoveClaim,
    MoveClaimResult,
    MoveStep,
    UnshelveRequest,
    VifInfo,
)
from stratus.core.bus import RPCAPI
from stratus.core.context import RequestContext

SCHEDULER_TOPIC = "scheduler"
CONDUCTOR_TOPIC = "conductor"
COMPUTE_TOPIC = "compute"
#: Each compute host's external events (``compute-events.<host>``): a queue and consumer of
#: their own, so they never wait behind the host's builds (``external_instance_event``).
COMPUTE_EVENTS_TOPIC = "compute-events"


class SchedulerAPI(RPCAPI):
    TOPIC = SCHEDULER_TOPIC

    async def schedule_and_build(self, ctx: RequestContext, request: BuildRequest) -> None:
        """Place each instance, claim its resources and start its build (fire and forget)."""
        await self.client.cast(ctx, "schedule_and_build", request=request)

    async def move_claim(self, ctx: RequestContext, claim: MoveClaim) -> MoveClaimResult:
        """Choose a destination for a moving server and claim on it (the source's claim
        handed to the migration); waits for the choice."""
        return self.result(MoveClaimResult, await self.client.call(
            ctx, "move_claim", claim=claim))

    async def unshelve_instance(self, ctx: RequestContext, request: UnshelveRequest) -> None:
        """Place a shelved-offloaded instance again, claim, and have the host spawn it."""
        await self.client.cast(ctx, "unshelve_instance", request=request)


class ConductorAPI(RPCAPI):
    TOPIC = CONDUCTOR_TOPIC
    ERRORS = (UnexpectedTaskState,)

    async def instance_get(self, ctx: RequestContext, instance_uuid: str) -> InstanceRecord:
        return self.result(InstanceRecord, await self.client.call(
            ctx, "instance_get", instance_uuid=instance_uuid))

    async def begin_build(self, ctx: RequestContext, instance_uuid: str, host: str,
                          event: str) -> InstanceRecord | None:
        """One transaction as a host takes up a build: a live instance still
        ``scheduling`` moves to ``networking`` and ``event`` starts; the instance then, or
        None when there is nothing to build (deleted, being deleted, taken up already)."""
        return self.result(InstanceRecord | None, await self.client.call(  # type: ignore[arg-type]
            ctx, "begin_build", instance_uuid=instance_uuid, host=host, event=event))

    async def build_started(self, ctx: RequestContext, instance_uuid: str,
                            host: str, event: str) -> InstanceRecord:
        """One transaction as a host takes up a build: the instance as it is, and, when it
        is still building and not being deleted, its task state cleared (from
        ``scheduling``) and ``event`` started. The caller checks the returned state."""
        return self.result(InstanceRecord, await self.client.call(
            ctx, "build_started", instance_uuid=instance_uuid, host=host, event=event))

    async def instance_update(self, ctx: RequestContext, instance_uuid: str,
                              update: InstanceUpdate,
                              expected_task_state: list[str | None] | None = None,
                              event: ActionEvent | None = None,
                              fault: Fault | None = None) -> InstanceRecord:
        """Apply ``update`` (and record ``event`` and ``fault``) in one transaction; fails with
        ``UnexpectedTaskState`` when the instance is no longer in one of the expected task
        states (for example, it is being deleted)."""
        return self.result(InstanceRecord, await self.client.call(
            ctx, "instance_update", instance_uuid=instance_uuid, update=update,
            expected_task_state=expected_task_state, event=event, fault=fault))

    async def action_event(self, ctx: RequestContext, instance_uuid: str, event: str, *,
                           host: str, finished: bool, result: str | None = None,
                           details: str | None = None) -> None:
        await self.client.call(ctx, "action_event", instance_uuid=instance_uuid, event=event,
                               host=host, finished=finished, result=result, details=details)

    async def build_failed(self, ctx: RequestContext, instance_uuid: str, host: str,
                           fault: Fault, alternates: list[str], attempt: int,
                           admin_password: str | None = None) -> None:
        """The build failed on ``host``: free its claim, then reschedule or set ERROR
        (``admin_password``: the boot's, for the next host)."""
        await self.client.cast(ctx, "build_failed", instance_uuid=instance_uuid, host=host,
                               fault=fault, alternates=alternates, attempt=attempt,
                               admin_password=admin_password)

    async def instance_destroyed(self, ctx: RequestContext, instance_uuid: str,
                                 host: str) -> None:
        """The host removed the guest: free the claim and finish the delete."""
        await self.client.call(ctx, "instance_destroyed", instance_uuid=instance_uuid,
                               host=host)

    async def instance_offloaded(self, ctx: RequestContext, instance_uuid: str, host: str,
                                 fault: Fault | None = None) -> None:
        """The shelved guest is gone from ``host``: free its claim, clear its host and
        make it ``shelved_offloaded`` (with ``fault``: an unshelve that failed there)."""
        await self.client.call(ctx, "instance_offloaded", instance_uuid=instance_uuid,
                               host=host, fault=fault)

    async def host_report(self, ctx: RequestContext, report: HostReport, *,
                          answer_within: float | None = None) -> list[str]:
        """Heartbeat and inventory; returns the uuids of instances the database puts on the
        host that are not deleted (for the agent's reconciliation). ``answer_within``: seconds
        to wait for the answer, if not the client's timeout."""
        client = (self.client if answer_within is None
                  else self.client.prepare(timeout=answer_within))
        return self.result(list[str], await client.call(ctx, "host_report", report=report))

    async def host_instance_states(self, ctx: RequestContext,
                                   host: str) -> list[InstanceStates]:
        """vm, task and power states of every instance the database puts on ``host``."""
        return self.result(list[InstanceStates], await self.client.call(
            ctx, "host_instance_states", host=host))

    # Moves between hosts (stratus.compute.moves) --------------------------------------------

    async def migration_get(self, ctx: RequestContext, migration_uuid: str) -> MigrationRecord:
        return self.result(MigrationRecord, await self.client.call(
            ctx, "migration_get", migration_uuid=migration_uuid))

    async def migration_update(self, ctx: RequestContext, migration_uuid: str, status: str,
                               update: InstanceUpdate | None = None,
                               expected_task_state: list[str | None] | None = None,
                               event: ActionEvent | None = None) -> InstanceRecord:
        """A step of a move: the migration's ``status`` and the server's ``update`` in one
        transaction (``UnexpectedTaskState`` when the server moved on)."""
        return self.result(InstanceRecord, await self.client.call(
            ctx, "migration_update", migration_uuid=migration_uuid, status=status,
            update=update, expected_task_state=expected_task_state, event=event))

    async def move_step(self, ctx: RequestContext, migration_uuid: str,
                        status: str | None = None, update: InstanceUpdate | None = None,
                        expected_task_state: list[str | None] | None = None,
                        event: ActionEvent | None = None) -> MoveStep:
        """``migration_update`` with ``status`` and ``update`` optional, answered with the
        migration and the server as the step left them (a host's read and its first step
        in one call)."""
        return self.result(MoveStep, await self.client.call(
            ctx, "move_step", migration_uuid=migration_uuid, status=status, update=update,
            expected_task_state=expected_task_state, event=event))

    async def migration_progress(self, ctx: RequestContext, migration_uuid: str,
                                 progress: LiveMigrationProgress) -> None:
        await self.client.call(ctx, "migration_progress", migration_uuid=migration_uuid,
                               progress=progress)

    async def move_ended(self, ctx: RequestContext, migration_uuid: str, ending: str,
                         power_state: int = 0, event: ActionEvent | None = None,
                         fault: Fault | None = None) -> InstanceRecord:
        """Settle a move (``resized``, ``confirmed``, ``reverted``, ``rolled_back``,
        ``cancelled``, ``live_migrated``, ``evacuated``, ``evacuation_failed``)."""
        return self.result(InstanceRecord, await self.client.call(
            ctx, "move_ended", migration_uuid=migration_uuid, ending=ending,
            power_state=power_state, event=event, fault=fault))


class ComputeAgentAPI(RPCAPI):
    TOPIC = COMPUTE_TOPIC
    ERRORS = (GuestAgentNotEnabled, ConsoleUnavailable)

    async def build_and_run_instance(self, ctx: RequestContext, host: str, instance_uuid: str,
                                     alternates: list[str], attempt: int = 1,
                                     admin_password: str | None = None,
                                     instance: InstanceRecord | None = None) -> None:
        """``admin_password``: the boot's, for a config drive (as Nova's build passes it).
        ``instance``: the record of a build the scheduler took up for the host
        (``Instances.place_taking_up``); without it the host takes the build up itself
        (``begin_build``)."""
        extra: dict[str, Any] = {} if instance is None else {"instance": instance}
        await self.client.prepare(server=host).cast(
            ctx, "build_and_run_instance", instance_uuid=instance_uuid, alternates=alternates,
            attempt=attempt, admin_password=admin_password, **extra)

    async def terminate_instance(self, ctx: RequestContext, host: str,
                                 instance_uuid: str) -> None:
        await self.client.prepare(server=host).cast(ctx, "terminate_instance",
                                                    instance_uuid=instance_uuid)

    async def stop_instance(self, ctx: RequestContext, host: str, instance_uuid: str) -> None:
        await self.client.prepare(server=host).cast(ctx, "stop_instance",
                                                    instance_uuid=instance_uuid)

    async def start_instance(self, ctx: RequestContext, host: str, instance_uuid: str) -> None:
        await self.client.prepare(server=host).cast(ctx, "start_instance",
                                                    instance_uuid=instance_uuid)

    async def reboot_instance(self, ctx: RequestContext, host: str, instance_uuid: str,
                              hard: bool) -> None:
        await self.client.prepare(server=host).cast(ctx, "reboot_instance",
                                                    instance_uuid=instance_uuid, hard=hard)

    # Guest state actions (stratus.compute.actions_power) ---------------------------------

    async def pause_instance(self, ctx: RequestContext, host: str, instance_uuid: str) -> None:
        await self.client.prepare(server=host).cast(ctx, "pause_instance",
                                                    instance_uuid=instance_uuid)

    async def unpause_instance(self, ctx: RequestContext, host: str,
                               instance_uuid: str) -> None:
        await self.client.prepare(server=host).cast(ctx, "unpause_instance",
                                                    instance_uuid=instance_uuid)

    async def suspend_instance(self, ctx: RequestContext, host: str,
                               instance_uuid: str) -> None:
        await self.client.prepare(server=host).cast(ctx, "suspend_instance",
                                                    instance_uuid=instance_uuid)

    async def resume_instance(self, ctx: RequestContext, host: str,
                              instance_uuid: str) -> None:
        await self.client.prepare(server=host).cast(ctx, "resume_instance",
                                                    instance_uuid=instance_uuid)

    async def rescue_instance(self, ctx: RequestContext, host: str, instance_uuid: str,
                              rescue_image_ref: str, rescue_password: str) -> None:
        """Boot the guest from ``rescue_image_ref`` with its own disk as the second one."""
        await self.client.prepare(server=host).cast(
            ctx, "rescue_instance", instance_uuid=instance_uuid,
            rescue_image_ref=rescue_image_ref, rescue_password=rescue_password)

    async def unrescue_instance(self, ctx: RequestContext, host: str,
                                instance_uuid: str) -> None:
        await self.client.prepare(server=host).cast(ctx, "unrescue_instance",
                                                    instance_uuid=instance_uuid)

    async def trigger_crash_dump(self, ctx: RequestContext, host: str,
                                 instance_uuid: str) -> None:
        """Send the guest an NMI (its kernel's crash dump, if it has one set up)."""
        await self.client.prepare(server=host).cast(ctx, "trigger_crash_dump",
                                                    instance_uuid=instance_uuid)

    async def set_admin_password(self, ctx: RequestContext, host: str, instance_uuid: str,
                                 new_pass: str) -> None:
        """Set the guest's administrator password and wait for the answer;
        ``GuestAgentNotEnabled`` when the guest cannot take one."""
        await self.client.prepare(server=host).call(ctx, "set_admin_password",
                                                    instance_uuid=instance_uuid,
                                                    new_pass=new_pass)
    # Snapshots, rebuild, shelve (stratus.compute.snapshots, .rebuild, .shelve)

    async def snapshot_instance(self, ctx: RequestContext, host: str, instance_uuid: str,
                                image_id: str) -> None:
        """Copy the guest's disk into the queued image ``image_id``."""
        await self.client.prepare(server=host).cast(
            ctx, "snapshot_instance", instance_uuid=instance_uuid, image_id=image_id)

    async def rebuild_instance(self, ctx: RequestContext, host: str, instance_uuid: str,
                               preserve_ephemeral: bool = False,
                               admin_password: str | None = None) -> None:
        """Re-create the guest's disk from its (new) image and boot it on the same ports
        (``admin_password``: the rebuild's, for a config drive)."""
        await self.client.prepare(server=host).cast(
            ctx, "rebuild_instance", instance_uuid=instance_uuid,
            preserve_ephemeral=preserve_ephemeral, admin_password=admin_password)

    async def shelve_instance(self, ctx: RequestContext, host: str, instance_uuid: str,
                              image_id: str | None, offload: bool) -> None:
        """Power off, copy the disk into ``image_id`` (None: a volume-backed server), and
        offload at once when ``offload``."""
        await self.client.prepare(server=host).cast(
            ctx, "shelve_instance", instance_uuid=instance_uuid, image_id=image_id,
            offload=offload)

    async def shelve_offload_instance(self, ctx: RequestContext, host: str,
                                      instance_uuid: str) -> None:
        """Remove the shelved guest from the host and give its resources back."""
        await self.client.prepare(server=host).cast(
            ctx, "shelve_offload_instance", instance_uuid=instance_uuid)

    async def unshelve_instance(self, ctx: RequestContext, host: str, instance_uuid: str,
                                image_id: str | None) -> None:
        """Start the shelved guest again: power it on if it is still here, else spawn it
        from ``image_id`` (None: from its volume) on the claim the scheduler made."""
        await self.client.prepare(server=host).cast(
            ctx, "unshelve_instance", instance_uuid=instance_uuid, image_id=image_id)

    async def get_console_output(self, ctx: RequestContext, host: str, instance_uuid: str,
                                 length: int | None = None) -> str:
        return self.result(str, await self.client.prepare(server=host).call(
            ctx, "get_console_output", instance_uuid=instance_uuid, length=length))

    async def get_console(self, ctx: RequestContext, host: str, instance_uuid: str,
                          kind: ConsoleKind) -> ConsoleEndpoint:
        """Where the guest's ``kind`` console is on its host (``ConsoleUnavailable``: none)."""
        return self.result(ConsoleEndpoint, await self.client.prepare(server=host).call(
            ctx, "get_console", instance_uuid=instance_uuid, kind=kind))

    async def external_instance_event(self, ctx: RequestContext, host: str,
                                      instance_uuid: str, events: list[ExternalEvent]) -> None:
        """Hand events other services reported about the instance to its host; returns once
        the broker holds them (``DeliveryFailed`` when it does not take them in time).

        A cast on the host's own events topic (``compute-events.<host>``), not on its
        ``compute`` queue: a host's builds are casts that hold their delivery while they wait
        for ``network-vif-plugged``, so with as many builds waiting as the host takes at
        once (its prefetch) an event queued behind them would wait until their timeout, and
        so would they. Not a call either: a dead host would hold the sender until the call
        timed out. The events wait in the host's durable queue until it takes them (at
        once while it lives; when it comes back otherwise), and the handler is idempotent
        (it wakes waiters and refreshes the network info), so redelivery is harmless."""
        await self.client.prepare(topic=COMPUTE_EVENTS_TOPIC, server=host).cast(
            ctx, "external_instance_event", instance_uuid=instance_uuid, events=events)

    async def attach_volume(self, ctx: RequestContext, host: str, instance_uuid: str,
                            attachment_id: str, mountpoint: str,
                            wait_for: float | None = None) -> None:
        """Connect the reserved attachment, attach it to the guest and complete it; waits,
        so a host that does not answer leaves the caller free to release the volume."""
        await self.client.prepare(server=host, timeout=wait_for).call(
            ctx, "attach_volume", instance_uuid=instance_uuid, attachment_id=attachment_id,
            mountpoint=mountpoint)

    async def detach_volume(self, ctx: RequestContext, host: str, instance_uuid: str,
                            attachment_id: str, mountpoint: str,
                            wait_for: float | None = None) -> None:
        """Detach from the guest, then delete the attachment (the volume is available)."""
        await self.client.prepare(server=host, timeout=wait_for).call(
            ctx, "detach_volume", instance_uuid=instance_uuid, attachment_id=attachment_id,
            mountpoint=mountpoint)

    # Moves between hosts: each names the host it goes to (source or destination).

    async def resize_instance(self, ctx: RequestContext, host: str, instance_uuid: str,
                              migration_uuid: str) -> None:
        """Source: stop the guest, keep it aside, hand its disk to the destination."""
        await self.client.prepare(server=host).cast(
            ctx, "resize_instance", instance_uuid=instance_uuid, migration_uuid=migration_uuid)

    async def finish_resize(self, ctx: RequestContext, host: str, instance_uuid: str,
                            migration_uuid: str, disk_info: dict[str, Any]) -> None:
        """Destination: make the guest of the new flavor from the source's disk."""
        await self.client.prepare(server=host).cast(
            ctx, "finish_resize", instance_uuid=instance_uuid, migration_uuid=migration_uuid,
            disk_info=disk_info)

    async def confirm_resize(self, ctx: RequestContext, host: str, instance_uuid: str,
                             migration_uuid: str) -> None:
        """Source: drop the guest kept aside; the source's claim goes."""
        await self.client.prepare(server=host).cast(
            ctx, "confirm_resize", instance_uuid=instance_uuid, migration_uuid=migration_uuid)

    async def revert_resize(self, ctx: RequestContext, host: str, instance_uuid: str,
                            migration_uuid: str) -> None:
        """Destination: remove the new guest, then the source brings the old one back."""
        await self.client.prepare(server=host).cast(
            ctx, "revert_resize", instance_uuid=instance_uuid, migration_uuid=migration_uuid)

    async def finish_revert_resize(self, ctx: RequestContext, host: str, instance_uuid: str,
                                   migration_uuid: str) -> None:
        await self.client.prepare(server=host).cast(
            ctx, "finish_revert_resize", instance_uuid=instance_uuid,
            migration_uuid=migration_uuid)

    async def live_migration(self, ctx: RequestContext, host: str, instance_uuid: str,
                             migration_uuid: str) -> None:
        """Source: move the running guest to the migration's destination."""
        await self.client.prepare(server=host).cast(
            ctx, "live_migration", instance_uuid=instance_uuid, migration_uuid=migration_uuid)

    async def pre_live_migration(self, ctx: RequestContext, host: str, instance_uuid: str,
                                 migration_uuid: str,
                                 source_data: dict[str, Any]) -> dict[str, Any]:
        """Destination: get ready for the guest; what the source sends it with."""
        return self.result(dict[str, Any], await self.client.prepare(server=host).call(
            ctx, "pre_live_migration", instance_uuid=instance_uuid,
            migration_uuid=migration_uuid, source_data=source_data))

    async def post_live_migration_at_destination(self, ctx: RequestContext, host: str,
                                                 instance_uuid: str,
                                                 migration_uuid: str) -> int:
        """Destination: the guest arrived; its power state there."""
        return self.result(int, await self.client.prepare(server=host).call(
            ctx, "post_live_migration_at_destination", instance_uuid=instance_uuid,
            migration_uuid=migration_uuid))

    async def rollback_live_migration_at_destination(self, ctx: RequestContext, host: str,
                                                     instance_uuid: str,
                                                     migration_uuid: str) -> None:
        await self.client.prepare(server=host).call(
            ctx, "rollback_live_migration_at_destination", instance_uuid=instance_uuid,
            migration_uuid=migration_uuid)

    async def live_migration_abort(self, ctx: RequestContext, host: str, instance_uuid: str,
                                   migration_uuid: str) -> None:
        await self.client.prepare(server=host).cast(
            ctx, "live_migration_abort", instance_uuid=instance_uuid,
            migration_uuid=migration_uuid)

    async def live_migration_force_complete(self, ctx: RequestContext, host: str,
                                            instance_uuid: str, migration_uuid: str) -> None:
        await self.client.prepare(server=host).cast(
            ctx, "live_migration_force_complete", instance_uuid=instance_uuid,
            migration_uuid=migration_uuid)

    async def evacuate_instance(self, ctx: RequestContext, host: str, instance_uuid: str,
                                migration_uuid: str, stop: bool) -> None:
        """Destination: rebuild the server of a dead host here (stopped when ``stop``)."""
        await self.client.prepare(server=host).cast(
            ctx, "evacuate_instance", instance_uuid=instance_uuid,
            migration_uuid=migration_uuid, stop=stop)

    async def attach_interface(self, ctx: RequestContext, host: str, instance_uuid: str,
                               port_id: str, preserve_on_delete: bool,
                               tag: str | None = None,
                               wait_for: float | None = None) -> VifInfo:
        """Bind, wire and hot-plug the port; the interface as recorded. Waits, so compute-api
        can give the port back when the host fails or does not answer."""
        return self.result(VifInfo, await self.client.prepare(server=host, timeout=wait_for)
                           .call(ctx, "attach_interface", instance_uuid=instance_uuid,
                                 port_id=port_id, preserve_on_delete=preserve_on_delete,
                                 tag=tag))

    async def detach_interface(self, ctx: RequestContext, host: str, instance_uuid: str,
                               port_id: str, wait_for: float | None = None) -> None:
        """Unplug the NIC and give the port back (deleted if it was made for the server)."""
        await self.client.prepare(server=host, timeout=wait_for).call(
            ctx, "detach_interface", instance_uuid=instance_uuid, port_id=port_id)
