"""Moving a server: ``resize``, ``confirmResize``, ``revertResize`` and ``migrate`` (cold).

A move begins here in one transaction (the checks, the quota for a larger flavor, the
``migration`` row, the task state and the instance action), then the scheduler chooses and
claims the destination (``SchedulerAPI.move_claim``; none: the move is undone and the
answer is Nova's 400), then the source host is told (``stratus.compute.agent.moves``).
The hosts settle the move through the conductor (``stratus.compute.moves``).

Nova's rules: resize and migrate need an ``ACTIVE`` or ``SHUTOFF`` server with no task
(409 otherwise); the same flavor, a smaller root disk or a flavor nobody may use is a 400;
a larger flavor over the project's quota a 403. A cold migration never stays on its host;
a resize may, when ``allow_resize_to_same_host`` (the default here: a cloud of one host).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from stratus.compute import states
from stratus.compute.action_steps import Reply, admit, parse_args, require, version
from stratus.compute.models import Instance, Migration
from stratus.compute.moves import apply_flavor, confirmed
from stratus.compute.objects import FlavorInfo, MoveClaim
from stratus.compute.server_migrations import COLD, FINISHED, RESIZE
from stratus.compute.servers import target, visible
from stratus.compute.service import ComputeRuntime, ComputeService
from stratus.core.exceptions import BadRequest, Conflict, NotFound
from stratus.core.policy import Caller

__all__ = ["MoveStart", "begin_move", "claim_destination", "confirm_resize",
           "migrate", "parse_args", "require_state", "resize", "revert_resize"]

#: What a server must be to be resized or cold-migrated.
MOVABLE = (states.ACTIVE, states.STOPPED)


def require_state(instance: Instance, vm_states: tuple[str, ...], action: str) -> str:
    """The server's host, if it is in one of ``vm_states`` with no task (409 otherwise);
    no lock check: what may act on a locked server (confirmResize, as Nova's has none).
    The moves themselves are admitted by ``action_steps.admit``, which checks the lock."""
    require(instance, vm_states, action)
    if instance.host is None:
        raise Conflict(f"Instance {instance.uuid} has no host.")
    return instance.host


@dataclass(frozen=True)
class MoveStart:
    """A move begun: what the scheduler and the hosts are told."""

    instance_uuid: str
    migration_uuid: str
    project_id: str
    source_host: str
    flavor: FlavorInfo
    availability_zone: str | None


async def begin_move(svc: ComputeService, caller: Caller, instance: Instance,
                     migration_type: str, flavor: FlavorInfo, *, action: str, task_state: str,
                     status: str) -> MoveStart:
    """The migration row, the server's task state and the instance action, for a server
    ``action_steps.admit`` let move (so a locked one moves for admins only)."""
    assert instance.host is not None
    migration: Migration = await svc.migrations.create(instance, migration_type, flavor,
                                                       status=status)
    instance.task_state = task_state
    await svc.instances.start_action(caller.context, instance.uuid, action)
    return MoveStart(instance_uuid=instance.uuid, migration_uuid=migration.uuid,
                     project_id=instance.project_id, source_host=instance.host, flavor=flavor,
                     availability_zone=instance.availability_zone)


async def claim_destination(rt: ComputeRuntime, caller: Caller, start: MoveStart, *,
                            requested_host: str | None = None, force: bool = False,
                            allow_same_host: bool = False, free_source: bool = False,
                            event: str = "conductor_migrate_server") -> str:
    """The destination the scheduler claimed; when there is none, the move is undone (the
    server as it was, the migration ``error``, the action failed) and the answer is 400."""
    result = await rt.clients.scheduler.move_claim(caller.context, MoveClaim(
        instance_uuid=start.instance_uuid, migration_uuid=start.migration_uuid,
        project_id=start.project_id, flavor=start.flavor, source_host=start.source_host,
        requested_host=requested_host, force=force, allow_same_host=allow_same_host,
        free_source=free_source, event=event, availability_zone=start.availability_zone))
    if result.host is not None:
        return result.host
    async with rt.service() as svc:
        migration = await svc.migrations.set_status(start.migration_uuid, "error")
        instance = await svc.instances.get(start.instance_uuid)
        apply_flavor(instance, FlavorInfo.model_validate(migration.old_flavor))
        instance.task_state = None
        await svc.instances.record_event(instance.uuid, caller.context.request_id, event,
                                         host=None, finished=True, result="Error",
                                         details=result.reason)
        await svc.instances.finish_action(instance.uuid, caller.context.request_id, "Error")
    raise BadRequest(result.reason or "No valid host was found.")


async def _requested_host(svc: ComputeService, host: str | None, source: str) -> str | None:
    """An admin's ``host``: a compute host that exists and is not the source (400)."""
    if host is None:
        return None
    if not (await svc.hosts.compute_services([host])):
        raise BadRequest(f"Compute host {host} could not be found.")
    if host == source:
        raise BadRequest(f"Unable to migrate instance to its current host {host}.")
    return host


# resize ------------------------------------------------------------------------------------

class ResizeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    flavor_ref: str | int = Field(alias="flavorRef")
    disk_config: Literal["AUTO", "MANUAL"] | None = Field(None, alias="OS-DCF:diskConfig")


async def resize(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    parsed = parse_args(ResizeArgs, {} if args is None else args, "resize")
    flavor_ref = str(parsed.flavor_ref).rstrip("/").rsplit("/", 1)[-1]
    if not flavor_ref:
        raise BadRequest("Invalid flavorRef provided.")
    async with rt.service() as svc:
        instance = await admit(svc, caller, server_id, "resize", MOVABLE)
        await svc.quotas.lock_project(instance.project_id)
        try:
            flavor = await svc.flavors.get(flavor_ref, project_id=instance.project_id,
                                           admin=caller.is_admin)
        except NotFound as exc:
            raise BadRequest(f"Flavor {flavor_ref} could not be found.") from exc
        old = FlavorInfo.model_validate(instance.flavor)
        if flavor.id == old.id:
            raise BadRequest("When resizing, instances must change flavor!")
        if flavor.disabled:
            raise BadRequest(f"Flavor {flavor.id} is disabled.")
        volume_backed = not instance.image_ref
        if not volume_backed and flavor.disk < old.disk:
            raise BadRequest("Resize error: Unable to resize disk down.")
        if not volume_backed and flavor.disk == 0 and old.disk != 0:
            raise BadRequest("Resize to zero disk flavor is not allowed.")
        await svc.quotas.check_growth(instance.project_id, flavor.vcpus - old.vcpus,
                                      flavor.ram - old.ram)
        new = FlavorInfo(id=flavor.id, name=flavor.name, vcpus=flavor.vcpus, ram=flavor.ram,
                         disk=flavor.disk, ephemeral=flavor.ephemeral, swap=flavor.swap,
                         extra_specs=dict(flavor.extra_specs or {}))
        # The quota counts the new flavor from now on (a revert gives the old one back);
        # the migration keeps the old one (``instance.flavor``, unchanged until it lands).
        instance.vcpus, instance.memory_mb = new.vcpus, new.ram
        start = await begin_move(svc, caller, instance, RESIZE, new, action="resize",
                                 task_state=states.RESIZE_PREP, status="pre-migrating")
    await claim_destination(rt, caller, start,
                            allow_same_host=rt.settings.compute.allow_resize_to_same_host)
    await rt.clients.agents.resize_instance(caller.context, start.source_host,
                                            start.instance_uuid, start.migration_uuid)


# migrate (cold) ----------------------------------------------------------------------------

class MigrateArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(None, min_length=1, max_length=255)


async def migrate(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    if args is not None and not version().at_least("2.56"):
        raise BadRequest("Invalid input for field/attribute migrate: the body must be null "
                         "before microversion 2.56.")
    parsed = parse_args(MigrateArgs, {} if args is None else args, "migrate")
    async with rt.service() as svc:
        instance = await admit(svc, caller, server_id, "migrate", MOVABLE,
                               rule="os_compute_api:os-migrate-server:migrate")
        if parsed.host is not None:
            caller.authorize("os_compute_api:os-migrate-server:migrate:host",
                             target(instance))
        source = instance.host
        assert source is not None  # admit refuses a server without one
        host = await _requested_host(svc, parsed.host, source)
        same = FlavorInfo.model_validate(instance.flavor)
        start = await begin_move(svc, caller, instance, COLD, same, action="migrate",
                                 task_state=states.RESIZE_PREP, status="pre-migrating")
    await claim_destination(rt, caller, start, requested_host=host)
    await rt.clients.agents.resize_instance(caller.context, start.source_host,
                                            start.instance_uuid, start.migration_uuid)


# confirm and revert ------------------------------------------------------------------------

async def _finished_move(svc: ComputeService, instance: Instance) -> Migration:
    migration = await svc.migrations.latest(instance.uuid, (FINISHED,), (RESIZE, COLD))
    if migration is None:
        raise BadRequest(f"Instance {instance.uuid} has not been resized.")
    return migration


async def confirm_resize(rt: ComputeRuntime, caller: Caller, server_id: str,
                         args: Any) -> Reply:
    if args is not None:
        raise BadRequest("confirmResize takes no arguments.")
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:servers:confirm_resize", target(instance))
        require_state(instance, (states.RESIZED,), "confirmResize")
        migration = await _finished_move(svc, instance)
        await svc.migrations.set_status(migration, "confirming")
        await svc.instances.start_action(caller.context, instance.uuid, "confirmResize")
        source = migration.source_compute or ""
        source_up = (await svc.hosts.up_states({source})).get(source, False)
        if not source_up:
            # A dead source keeps nothing worth cleaning: settle the move here.
            await confirmed(svc, migration.uuid, instance.power_state)
            await svc.instances.finish_action(instance.uuid, caller.context.request_id)
        uuid, migration_uuid = instance.uuid, migration.uuid
    if source_up:
        await rt.clients.agents.confirm_resize(caller.context, source, uuid, migration_uuid)
    # Nova answers confirmResize 204, with no body.
    return Reply(status=204)


async def revert_resize(rt: ComputeRuntime, caller: Caller, server_id: str,
                        args: Any) -> None:
    if args is not None:
        raise BadRequest("revertResize takes no arguments.")
    async with rt.service() as svc:
        instance = await admit(svc, caller, server_id, "revertResize", (states.RESIZED,),
                               rule="os_compute_api:servers:revert_resize")
        dest = instance.host
        assert dest is not None  # admit refuses a server without one
        migration = await _finished_move(svc, instance)
        old = FlavorInfo.model_validate(migration.old_flavor)
        new = FlavorInfo.model_validate(migration.new_flavor)
        await svc.quotas.check_growth(instance.project_id, old.vcpus - new.vcpus,
                                      old.ram - new.ram)
        await svc.migrations.set_status(migration, "reverting")
        instance.task_state = states.RESIZE_REVERTING
        instance.vcpus, instance.memory_mb = old.vcpus, old.ram
        await svc.instances.start_action(caller.context, instance.uuid, "revertResize")
        uuid, migration_uuid = instance.uuid, migration.uuid
    await rt.clients.agents.revert_resize(caller.context, dest, uuid, migration_uuid)
