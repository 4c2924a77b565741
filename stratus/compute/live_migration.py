"""Live migration: ``os-migrateLive``, and the live migrations under way
(``servers/{id}/migrations``: list, show, ``force_complete``, abort).

The server stays ``ACTIVE`` (task ``migrating``) while its source host moves the running
guest to the destination the scheduler claimed (``stratus.compute.agent.moves``); success
moves the server and frees the source's claim, failure leaves it on the source with a fault
and the migration ``error``, an abort with the migration ``cancelled``.

Arguments per microversion, as Nova reads them: ``host`` (null: the scheduler chooses) and
``block_migration`` always; ``disk_over_commit`` before 2.25, from when ``block_migration``
may be ``"auto"``; ``force`` from 2.30 to 2.67.
"""

from __future__ import annotations

from typing import Any

from stratus.compute import states
from stratus.compute.action_steps import admit
from stratus.compute.action_steps import version as action_version
from stratus.compute.models import Migration
from stratus.compute.objects import FlavorInfo
from stratus.compute.resize import begin_move, claim_destination
from stratus.compute.server_migrations import IN_PROGRESS_LIVE, LIVE
from stratus.compute.servers import target, visible
from stratus.compute.service import ComputeRuntime, ComputeService
from stratus.core.exceptions import BadRequest, Conflict, NotFound
from stratus.core.policy import Caller
from stratus.core.web.microversions import APIVersion

__all__ = ["abort", "force_complete", "in_progress", "live_migrate", "show_in_progress"]

_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f"}


def _boolean(name: str, value: Any, *, auto: bool = False) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if auto and value == "auto":
            return "auto"
        if value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
    allowed = "a boolean or 'auto'" if auto else "a boolean"
    raise BadRequest(f"Invalid input for field/attribute {name}. Value: {value}. It must be "
                     f"{allowed}.")


def _parse(args: Any, version: APIVersion) -> tuple[str | None, bool]:
    """(host, force) from the body, checked as Nova's schema of ``version`` does."""
    if not isinstance(args, dict):
        raise BadRequest("Invalid input for field/attribute os-migrateLive: it must be an "
                         "object.")
    allowed = {"host", "block_migration"}
    required = {"host", "block_migration"}
    if not version.at_least("2.25"):
        allowed.add("disk_over_commit")
        required.add("disk_over_commit")
    if version.at_least("2.30") and not version.at_least("2.68"):
        allowed.add("force")
    if unknown := sorted(set(args) - allowed):
        raise BadRequest(f"Additional properties are not allowed ({', '.join(unknown)} "
                         "unexpected).")
    if missing := sorted(required - set(args)):
        raise BadRequest(f"'{missing[0]}' is a required property.")
    _boolean("block_migration", args["block_migration"], auto=version.at_least("2.25"))
    if "disk_over_commit" in args:
        _boolean("disk_over_commit", args["disk_over_commit"])
    host = args["host"]
    if host is not None and (not isinstance(host, str) or not 1 <= len(host) <= 255):
        raise BadRequest("Invalid input for field/attribute host: it must be a host name "
                         "or null.")
    force = bool(_boolean("force", args["force"])) if "force" in args else False
    return host, force


async def live_migrate(rt: ComputeRuntime, caller: Caller, server_id: str,
                       args: Any) -> None:
    host, force = _parse(args, action_version())
    async with rt.service() as svc:
        instance = await admit(svc, caller, server_id, "os-migrateLive",
                               (states.ACTIVE, states.PAUSED),
                               rule="os_compute_api:os-migrate-server:migrate_live")
        source = instance.host
        assert source is not None  # admit refuses a server without one
        if host is not None:
            if not await svc.hosts.compute_services([host]):
                raise BadRequest(f"Compute host {host} could not be found.")
            if host == source:
                raise BadRequest(f"Unable to migrate instance ({instance.uuid}) to current "
                                 f"host ({source}).")
        same = FlavorInfo.model_validate(instance.flavor)
        start = await begin_move(svc, caller, instance, LIVE, same, action="live-migration",
                                 task_state=states.MIGRATING, status="accepted")
    await claim_destination(rt, caller, start, requested_host=host, force=force,
                            event="conductor_live_migrate_instance")
    await rt.clients.agents.live_migration(caller.context, start.source_host,
                                           start.instance_uuid, start.migration_uuid)


# servers/{id}/migrations -------------------------------------------------------------------

async def in_progress(rt: ComputeRuntime, caller: Caller, server_id: str) -> list[Migration]:
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:servers:migrations:index", target(instance))
        return await svc.migrations.live_in_progress(instance.uuid)


async def _live(svc: ComputeService, instance_uuid: str, migration_id: str) -> Migration:
    migration = await svc.migrations.of_instance(instance_uuid, migration_id)
    if migration.migration_type != LIVE:
        raise BadRequest(f"Migration {migration_id} is not a live migration.")
    return migration


async def show_in_progress(rt: ComputeRuntime, caller: Caller, server_id: str,
                           migration_id: str) -> Migration:
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:servers:migrations:show", target(instance))
        migration = await svc.migrations.of_instance(instance.uuid, migration_id)
        if migration.migration_type != LIVE or migration.status not in IN_PROGRESS_LIVE:
            raise NotFound(f"In-progress live migration {migration_id} is not found for "
                           f"server {instance.uuid}.")
        return migration


async def force_complete(rt: ComputeRuntime, caller: Caller, server_id: str,
                         migration_id: str) -> None:
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:servers:migrations:force_complete", target(instance))
        if instance.vm_state != states.ACTIVE or instance.task_state != states.MIGRATING:
            raise _conflict(instance.uuid, "force_complete", instance.vm_state,
                            instance.task_state)
        migration = await _live(svc, instance.uuid, migration_id)
        if migration.status != "running":
            raise BadRequest(f"Migration {migration_id} state of instance {instance.uuid} "
                             f"is {migration.status}. Cannot force_complete while the "
                             "migration is in this state.")
        host, uuid, migration_uuid = migration.source_compute, instance.uuid, migration.uuid
    assert host is not None
    await rt.clients.agents.live_migration_force_complete(caller.context, host, uuid,
                                                          migration_uuid)


async def abort(rt: ComputeRuntime, caller: Caller, server_id: str, migration_id: str,
                version: APIVersion) -> None:
    abortable = IN_PROGRESS_LIVE if version.at_least("2.65") else ("running",)
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:servers:migrations:delete", target(instance))
        if instance.vm_state != states.ACTIVE or instance.task_state != states.MIGRATING:
            raise _conflict(instance.uuid, "abort live migration", instance.vm_state,
                            instance.task_state)
        migration = await _live(svc, instance.uuid, migration_id)
        if migration.status not in abortable:
            raise BadRequest(f"Migration {migration_id} state of instance {instance.uuid} "
                             f"is {migration.status}. Cannot abort live migration while "
                             "the migration is in this state.")
        host, uuid, migration_uuid = migration.source_compute, instance.uuid, migration.uuid
    assert host is not None
    await rt.clients.agents.live_migration_abort(caller.context, host, uuid, migration_uuid)


def _conflict(uuid: str, action: str, vm_state: str, task_state: str | None) -> Conflict:
    return Conflict(f"Cannot '{action}' instance {uuid} while it is in vm_state {vm_state} "
                    f"and task_state {task_state}.")
