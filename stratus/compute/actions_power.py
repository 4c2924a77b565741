"""The server actions that change what a guest is doing without rebuilding it: ``pause`` /
``unpause``, ``suspend`` / ``resume``, ``rescue`` / ``unrescue``, ``trigger_crash_dump``
and ``changePassword``, as Nova's API serves them.

Each checks the lock and the state (``action_steps.begin``), sets the task state Nova sets
(``pausing``, ``suspending``, ``rescuing``, ...), records the instance action and tells the
server's host, which drives the guest and records the final states and its event
(``compute_pause_instance``, ...). ``changePassword`` waits for the host's answer, as Nova
does, so a guest that cannot take a password is a 409 to the caller.
"""

from __future__ import annotations

import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stratus.compute import states
from stratus.compute.action_steps import begin, require_version, version
from stratus.compute.errors import GuestAgentNotEnabled
from stratus.compute.models import Instance
from stratus.compute.objects import InstanceUpdate
from stratus.compute.servers import target, visible
from stratus.compute.service import ComputeRuntime
from stratus.core.bus import MessagingError, RemoteError
from stratus.core.exceptions import BadRequest, Conflict, NotFound
from stratus.core.policy import Caller

#: Nova's power state of a running guest (``trigger_crash_dump`` needs one).
_RUNNING = 1


def _no_arguments(args: Any, action: str) -> None:
    """``{"pause": null}``: Nova's schema takes null (and, leniently, an empty object)."""
    if args not in (None, {}):
        raise BadRequest(f"Invalid input for field '{action}': it must be null.")


async def pause(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    _no_arguments(args, "pause")
    uuid, host = await begin(rt, caller, server_id, "pause", (states.ACTIVE,), states.PAUSING,
                             rule="os_compute_api:os-pause-server:pause")
    await rt.clients.agents.pause_instance(caller.context, host, uuid)


async def unpause(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    _no_arguments(args, "unpause")
    uuid, host = await begin(rt, caller, server_id, "unpause", (states.PAUSED,),
                             states.UNPAUSING, rule="os_compute_api:os-pause-server:unpause")
    await rt.clients.agents.unpause_instance(caller.context, host, uuid)


async def suspend(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    _no_arguments(args, "suspend")
    uuid, host = await begin(rt, caller, server_id, "suspend", (states.ACTIVE,),
                             states.SUSPENDING,
                             rule="os_compute_api:os-suspend-server:suspend")
    await rt.clients.agents.suspend_instance(caller.context, host, uuid)


async def resume(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    _no_arguments(args, "resume")
    uuid, host = await begin(rt, caller, server_id, "resume", (states.SUSPENDED,),
                             states.RESUMING, rule="os_compute_api:os-suspend-server:resume")
    await rt.clients.agents.resume_instance(caller.context, host, uuid)


# Rescue -------------------------------------------------------------------------------------

class RescueArgs(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    admin_pass: str | None = Field(default=None, alias="adminPass")
    rescue_image_ref: str | None = Field(default=None, min_length=1, max_length=255)


#: vm_states a server may be rescued from (Nova's).
RESCUABLE = (states.ACTIVE, states.STOPPED, states.ERROR)


async def _rescue_image(rt: ComputeRuntime, caller: Caller, server_id: str,
                        requested: RescueArgs) -> str:
    """The image the rescue boots: the one asked for, else the server's own."""
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:os-rescue", target(instance))
        image_ref = instance.image_ref
    if not image_ref and not (requested.rescue_image_ref and version().at_least("2.87")):
        raise BadRequest(f"Instance {server_id} cannot be rescued: Cannot rescue a "
                         "volume-backed instance")
    if requested.rescue_image_ref is None:
        return image_ref
    try:
        await rt.clients.images.get(caller.context, requested.rescue_image_ref)
    except NotFound as exc:
        raise BadRequest(f"Requested rescue image '{requested.rescue_image_ref}' is not "
                         "supported") from exc
    return requested.rescue_image_ref


async def rescue(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> dict[str, Any]:
    try:
        requested = RescueArgs.model_validate(args or {})
    except ValidationError as exc:
        raise BadRequest(f"Invalid input for field 'rescue': {exc.errors()[0]['msg']}.") \
            from exc
    image_ref = await _rescue_image(rt, caller, server_id, requested)
    password = requested.admin_pass or secrets.token_urlsafe(9)
    uuid, host = await begin(rt, caller, server_id, "rescue", RESCUABLE, states.RESCUING,
                             rule="os_compute_api:os-rescue")
    await rt.clients.agents.rescue_instance(caller.context, host, uuid, image_ref, password)
    # Nova answers the password at every microversion, unless the cloud keeps it to itself.
    return {"adminPass": password} if rt.settings.compute.enable_instance_password else {}


async def unrescue(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    _no_arguments(args, "unrescue")
    uuid, host = await begin(rt, caller, server_id, "unrescue", (states.RESCUED,),
                             states.UNRESCUING, rule="os_compute_api:os-unrescue")
    await rt.clients.agents.unrescue_instance(caller.context, host, uuid)


# Crash dump and password --------------------------------------------------------------------

#: vm_states in which a guest may be sent an NMI (Nova's).
CRASH_DUMP_STATES = (states.ACTIVE, states.PAUSED, states.RESIZED, states.RESCUED,
                     states.ERROR)


def _running(instance: Instance) -> None:
    if instance.power_state != _RUNNING:
        raise Conflict(f"Instance {instance.uuid} is not running.")


async def trigger_crash_dump(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    require_version("2.17")
    _no_arguments(args, "trigger_crash_dump")
    uuid, host = await begin(rt, caller, server_id, "trigger_crash_dump", CRASH_DUMP_STATES,
                             None, check=_running)
    await rt.clients.agents.trigger_crash_dump(caller.context, host, uuid)


class ChangePasswordArgs(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    admin_pass: str = Field(alias="adminPass")


async def change_password(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    try:
        password = ChangePasswordArgs.model_validate(args).admin_pass
    except ValidationError as exc:
        raise BadRequest("Invalid input for field 'changePassword': it must be an object "
                         "with the string 'adminPass'.") from exc
    uuid, host = await begin(rt, caller, server_id, "changePassword", (states.ACTIVE,),
                             states.UPDATING_PASSWORD, rule="os_compute_api:os-admin-password")
    try:
        await rt.clients.agents.set_admin_password(caller.context, host, uuid, password)
    except GuestAgentNotEnabled:
        raise  # a 409 in the driver's words; the host cleared the task state
    except (RemoteError, MessagingError) as exc:
        await _clear_password_task(rt, uuid)
        raise Conflict(f"Failed to set admin password on {uuid} because error setting "
                       "admin password") from exc


async def _clear_password_task(rt: ComputeRuntime, uuid: str) -> None:
    """A host that failed (or never answered) leaves the server as it was before."""
    async with rt.service() as svc:
        await svc.instances.update(uuid, InstanceUpdate(clear_task_state=True),
                                   [states.UPDATING_PASSWORD])


#: Action name → handler (``lifecycle.ACTIONS`` takes them all).
ACTIONS = {
    "pause": pause,
    "unpause": unpause,
    "suspend": suspend,
    "resume": resume,
    "rescue": rescue,
    "unrescue": unrescue,
    "trigger_crash_dump": trigger_crash_dump,
    "changePassword": change_password,
}
