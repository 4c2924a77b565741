"""How a move between hosts ends, in the database: states, flavor, host and claims together.

A move (resize, cold or live migration, evacuation) holds two claims while it is under way:
the server's resources on its source, claimed with the migration's uuid as consumer, and
the server's (new) flavor on the destination, claimed with the server's uuid. Each ending
here settles both in one transaction with the server's and the migration's states:

- ``resized``: a resize or cold migration arrived (``VERIFY_RESIZE``); both claims stay.
- ``confirmed``: the source's claim is freed.
- ``reverted`` / ``rolled_back``: the destination's claim is freed and the source's is the
  server's again, with its old flavor and host (a revert, or a move that failed).
- ``live_migrated``: the server is on the destination, the source's claim freed.
- ``evacuated``: the server was rebuilt on the destination (the source's claim was freed
  when the destination was claimed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from stratus.compute import states
from stratus.compute.models import Instance, Migration
from stratus.compute.objects import FlavorInfo, InstanceRecord
from stratus.compute.service import ComputeService
from stratus.compute.virt.driver import PowerState
from stratus.core.db import utcnow

__all__ = ["ENDINGS", "apply_flavor", "flavor_columns", "roll_back"]


def flavor_columns(flavor: FlavorInfo) -> dict[str, Any]:
    """The server's columns that say its flavor: the embedded copy and what quotas sum."""
    return {"flavor": flavor.model_dump(), "flavor_id": flavor.id, "vcpus": flavor.vcpus,
            "memory_mb": flavor.ram}


def apply_flavor(instance: Instance, flavor: FlavorInfo) -> None:
    """The server takes ``flavor`` (``flavor_columns``)."""
    for column, value in flavor_columns(flavor).items():
        setattr(instance, column, value)


def _stopped_or_active(vm_state: str) -> str:
    return states.STOPPED if vm_state == states.STOPPED else states.ACTIVE


async def _load(svc: ComputeService, migration_uuid: str) -> tuple[Migration, Instance]:
    """The migration and its instance, the instance's row locked: an ending frees or moves
    claims after it, and every writer locks an instance before its providers (the
    conductor's ``build_failed``, the scheduler's claim), or two could deadlock."""
    migration = await svc.migrations.get(migration_uuid)
    instance = await svc.instances.get(migration.instance_uuid, include_deleted=True,
                                       lock=True)
    return migration, instance


async def resized(svc: ComputeService, migration_uuid: str,
                  power_state: int) -> InstanceRecord:
    # Only a host ends a move so (``move_ended``): two statements, no ORM objects.
    migration = await svc.migrations.step(migration_uuid, "finished")
    return await svc.instances.write(migration.instance_uuid, {
        **flavor_columns(migration.new_flavor), "host": migration.dest_compute,
        "node": migration.dest_compute, "vm_state": states.RESIZED, "task_state": None,
        "power_state": power_state, "updated_at": utcnow()})


async def confirmed(svc: ComputeService, migration_uuid: str, power_state: int) -> Instance:
    migration, instance = await _load(svc, migration_uuid)
    await svc.placement.free(migration.uuid)
    instance.vm_state = _stopped_or_active(migration.old_vm_state)
    instance.task_state, instance.updated_at = None, utcnow()
    await svc.migrations.set_status(migration, "confirmed")
    return instance


async def roll_back(svc: ComputeService, migration_uuid: str, power_state: int, *,
                    status: str = "error") -> Instance:
    """The server back where it was: its old flavor, host and claim; the destination's
    claim freed; the migration ``status``."""
    migration, instance = await _load(svc, migration_uuid)
    await svc.placement.free(instance.uuid)
    await svc.placement.move(migration.uuid, instance.uuid)
    apply_flavor(instance, FlavorInfo.model_validate(migration.old_flavor))
    instance.host = instance.node = migration.source_compute
    instance.vm_state = _stopped_or_active(migration.old_vm_state)
    instance.task_state, instance.updated_at = None, utcnow()
    if power_state:
        instance.power_state = power_state
    await svc.migrations.set_status(migration, status)
    return instance


async def reverted(svc: ComputeService, migration_uuid: str, power_state: int) -> Instance:
    return await roll_back(svc, migration_uuid, power_state, status="reverted")


async def cancelled(svc: ComputeService, migration_uuid: str, power_state: int) -> Instance:
    return await roll_back(svc, migration_uuid, power_state, status="cancelled")


async def live_migrated(svc: ComputeService, migration_uuid: str,
                        power_state: int) -> InstanceRecord:
    # Only a host ends a move so (``move_ended``): statements, no ORM objects.
    migration = await svc.migrations.step(migration_uuid, "completed")
    values: dict[str, Any] = {"host": migration.dest_compute,
                              "node": migration.dest_compute, "task_state": None,
                              "updated_at": utcnow()}
    if power_state:
        values["power_state"] = power_state
    instance = await svc.instances.write(migration.instance_uuid, values)
    await svc.placement.free(migration.uuid)  # the instance's row first, as ``_load``
    return instance


async def evacuated(svc: ComputeService, migration_uuid: str, power_state: int) -> Instance:
    migration, instance = await _load(svc, migration_uuid)
    instance.host = instance.node = migration.dest_compute
    instance.vm_state = (states.ACTIVE if power_state == PowerState.RUNNING
                         else states.STOPPED)
    instance.task_state, instance.power_state = None, power_state
    instance.updated_at = utcnow()
    await svc.migrations.set_status(migration, "done")
    return instance


async def evacuation_failed(svc: ComputeService, migration_uuid: str,
                            power_state: int) -> Instance:
    """The rebuild on the destination failed: its claim freed, the server ERROR (it has
    nowhere to run)."""
    migration, instance = await _load(svc, migration_uuid)
    await svc.placement.free(instance.uuid)
    instance.vm_state, instance.task_state = states.ERROR, None
    instance.updated_at = utcnow()
    await svc.migrations.set_status(migration, "failed")
    return instance


Ending = Callable[[ComputeService, str, int], Awaitable[Instance | InstanceRecord]]

#: The ending's name (as a host reports it) → what it does.
ENDINGS: dict[str, Ending] = {
    "resized": resized,
    "confirmed": confirmed,
    "reverted": reverted,
    "rolled_back": roll_back,
    "cancelled": cancelled,
    "live_migrated": live_migrated,
    "evacuated": evacuated,
    "evacuation_failed": evacuation_failed,
}
