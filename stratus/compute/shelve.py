"""``shelve``, ``shelveOffload`` and ``unshelve``: a server put away and brought back.

shelve (ACTIVE, STOPPED, PAUSED or SUSPENDED with no task, else 409): compute-api makes the
``<name>-shelved`` snapshot image (queued; none for a volume-backed server), records
``shelved_at``, ``shelved_image_id`` and ``shelved_host`` in the system metadata, sets
``shelving`` and casts to the host, which powers the guest off, uploads the disk
(``shelving_image_pending_upload`` → ``shelving_image_uploading``) → SHELVED, and offloads
at once when ``compute.shelved_offload_time`` is 0 (-1: never; more: the conductor's
watchdog offloads it once that many seconds passed). Offload (also ``shelveOffload``): the
guest goes from its host, its ports are unbound, its claim freed and its host cleared →
SHELVED_OFFLOADED; quotas are unchanged (the server still exists).

unshelve (SHELVED or SHELVED_OFFLOADED, no task): a shelved guest still on its host is
powered on; an offloaded one is placed by the scheduler like a boot (``availability_zone``
from 2.77, ``null`` to unpin from 2.91; ``host`` from 2.91, admins), claimed, and spawned
from the shelve image on that host → ACTIVE; the shelve image is then deleted. See
``stratus.compute.agent.disk_flows`` for the host's side.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stratus.compute import states
from stratus.compute.action_steps import parse_args, refuse_if_locked, require, version
from stratus.compute.boot import image_properties
from stratus.compute.objects import FlavorInfo, UnshelveRequest
from stratus.compute.servers import target, visible
from stratus.compute.service import ComputeRuntime
from stratus.compute.snapshots import new_image, snapshot_image
from stratus.core.bus import MessagingError
from stratus.core.db import utcnow
from stratus.core.exceptions import BadRequest, Conflict
from stratus.core.policy import Caller

#: The vm_states a server may be shelved in (with no task in flight).
SHELVE_STATES = (states.ACTIVE, states.STOPPED, states.PAUSED, states.SUSPENDED)
UNSHELVE_STATES = (states.SHELVED, states.SHELVED_OFFLOADED)


async def shelve(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    context = caller.context
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:os-shelve:shelve", target(instance))
        refuse_if_locked(instance, caller)
        require(instance, SHELVE_STATES, "shelve")
        if instance.host is None:
            raise Conflict(f"Instance {instance.uuid} has no host.")
        uuid = instance.uuid
    image_id: str | None = None
    if instance.image_ref:
        base = await rt.clients.images.find(context, instance.image_ref)
        image_id = await new_image(rt, context, snapshot_image(
            instance, f"{instance.display_name}-shelved", base))
    try:
        async with rt.service() as svc:
            instance = await svc.instances.get(uuid)
            require(instance, SHELVE_STATES, "shelve")
            host = instance.host
            if host is None:
                raise Conflict(f"Instance {uuid} has no host.")
            instance.system_metadata = {
                **(instance.system_metadata or {}),
                "shelved_at": utcnow().isoformat(),
                "shelved_image_id": image_id or "", "shelved_host": host}
            instance.task_state = states.SHELVING
            await svc.instances.start_action(context, uuid, "shelve")
    except Exception:
        if image_id is not None:
            await rt.clients.images.delete(context, image_id)
        raise
    offload = rt.settings.compute.shelved_offload_time == 0
    try:
        await rt.clients.agents.shelve_instance(context, host, uuid, image_id, offload)
    except MessagingError as exc:
        async with rt.service() as svc:
            instance = await svc.instances.get(uuid)
            if instance.task_state == states.SHELVING:
                instance.task_state = None
            await svc.instances.finish_action(uuid, context.request_id, "Error")
        if image_id is not None:
            await rt.clients.images.delete(context, image_id)
        raise Conflict(f"The server's host {host} could not be reached.") from exc


async def shelve_offload(rt: ComputeRuntime, caller: Caller, server_id: str,
                         args: Any) -> None:
    context = caller.context
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:os-shelve:shelve_offload", target(instance))
        refuse_if_locked(instance, caller)
        if (instance.vm_state == states.SHELVED
                and instance.task_state == states.SHELVING_OFFLOADING):
            # Already under way (a shelve offloading at once): what the caller asks for.
            # ``openstack server shelve --offload`` asks as soon as it sees SHELVED.
            return
        require(instance, (states.SHELVED,), "shelveOffload")
        if instance.host is None:
            raise Conflict(f"Instance {instance.uuid} has no host.")
        instance.task_state = states.SHELVING_OFFLOADING
        await svc.instances.start_action(context, instance.uuid, "shelveOffload")
        uuid, host = instance.uuid, instance.host
    await rt.clients.agents.shelve_offload_instance(context, host, uuid)


class UnshelveArgs(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    availability_zone: str | None = Field(default=None, min_length=1, max_length=255)
    host: str | None = Field(default=None, min_length=1, max_length=255)


def _unshelve_args(args: Any) -> tuple[UnshelveArgs, bool]:
    """The arguments as the microversion allows them, and whether a zone was named (or,
    from 2.91, unpinned with ``null``)."""
    asked = version()
    if args is None:
        return UnshelveArgs(), False
    if not asked.at_least("2.77"):
        raise BadRequest("Invalid input for field 'unshelve': it must be null before "
                         "microversion 2.77.")
    requested = parse_args(UnshelveArgs, args, "unshelve")
    fields = requested.model_fields_set
    if "host" in fields and not asked.at_least("2.91"):
        raise BadRequest("Invalid input for field 'host': it needs microversion 2.91.")
    if ("availability_zone" in fields and requested.availability_zone is None
            and not asked.at_least("2.91")):
        raise BadRequest("Invalid input for field 'availability_zone': null needs "
                         "microversion 2.91.")
    return requested, "availability_zone" in fields


async def unshelve(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    requested, zone_given = _unshelve_args(args)
    context = caller.context
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:os-shelve:unshelve", target(instance))
        if requested.host is not None:
            caller.authorize("os_compute_api:os-shelve:unshelve_to_host", target(instance))
        refuse_if_locked(instance, caller)
        require(instance, UNSHELVE_STATES, "unshelve")
        offloaded = instance.vm_state == states.SHELVED_OFFLOADED
        if (zone_given or requested.host) and not offloaded:
            raise Conflict(f"The server {instance.uuid} is shelved, not offloaded: it "
                           "unshelves where it is, so no zone or host can be asked for.")
        if requested.host is not None and not await svc.hosts.up_states({requested.host}):
            raise BadRequest(f"Compute host {requested.host} could not be found.")
        if zone_given:
            instance.availability_zone = requested.availability_zone
        instance.task_state = states.UNSHELVING
        await svc.instances.start_action(context, instance.uuid, "unshelve")
        uuid, host, project_id = instance.uuid, instance.host, instance.project_id
        image_id = (instance.system_metadata or {}).get("shelved_image_id") or None
        flavor = FlavorInfo.model_validate(instance.flavor)
        zone = instance.availability_zone
    try:
        if not offloaded:
            assert host is not None
            await rt.clients.agents.unshelve_instance(context, host, uuid, image_id)
            return
        image = await rt.clients.images.find(context, image_id) if image_id else None
        await rt.clients.scheduler.unshelve_instance(context, UnshelveRequest(
            instance_uuid=uuid, project_id=project_id, flavor=flavor, image_id=image_id,
            image_properties=image_properties(image or {}), availability_zone=zone,
            host=requested.host))
    except MessagingError as exc:
        async with rt.service() as svc:
            instance = await svc.instances.get(uuid)
            if instance.task_state == states.UNSHELVING:
                instance.task_state = None
            await svc.instances.finish_action(uuid, context.request_id, "Error")
        raise Conflict(f"The unshelve could not be started: {type(exc).__name__}.") from exc
