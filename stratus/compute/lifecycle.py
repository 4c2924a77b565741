"""A server's life after boot: delete, and the server actions (``POST /servers/{id}/action``).

Delete: a server on a live host is marked ``deleting`` and the host is told to terminate
it; one never placed, or on a host that is down, is deleted here and its resources given
back (its volumes after the answer: ``Deleted.release``).

Actions: ``ACTIONS`` maps the action name of the body to its handler. A handler loads the
server, authorizes, checks its state, records the action, and casts (or calls) the server's
host; it returns the answer's body (``None``: 202 with no body; an
``action_steps.Reply`` for another status, headers or the server's view). A new action is
one function and one line in the table; an unknown action is a 400. The larger flows have
modules of their own (``snapshots``, ``rebuild``, ``shelve``, the moves ``resize``,
``live_migration``, ``evacuate``) built on ``action_steps``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stratus.compute import (
    action_steps,
    actions_lock,
    actions_power,
    consoles,
    evacuate,
    live_migration,
    rebuild,
    resize,
    server_security_groups,
    shelve,
    snapshots,
    states,
    volume_attach,
)
from stratus.compute.action_steps import Reply, at_version, parse_args, refuse_if_locked
from stratus.compute.servers import target, visible
from stratus.compute.service import ComputeRuntime
from stratus.core.exceptions import BadRequest, Conflict
from stratus.core.policy import Caller
from stratus.core.web.microversions import APIVersion

# Delete -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Deleted:
    """What is left to do after a delete's answer: release the volumes of a server deleted
    without a host (None when its host does that)."""

    release: Callable[[], Awaitable[None]] | None = None


async def delete(rt: ComputeRuntime, caller: Caller, server_id: str) -> Deleted:
    context = caller.context
    async with rt.service() as svc:
        # Locked: a scheduler placing it meanwhile either commits first (the delete then
        # sees its host) or finds it deleted and claims nothing; unlocked, the claim it
        # committed between this read and the delete's write outlived the server.
        instance = await visible(svc, caller, server_id, lock=True)
        caller.authorize("os_compute_api:servers:delete", target(instance))
        refuse_if_locked(instance, caller)
        if instance.task_state == states.DELETING:
            return Deleted()
        await svc.instances.start_action(context, instance.uuid, "delete")
        host = instance.host
        local = host is None or not (await svc.hosts.up_states({host})).get(host, False)
        if local:
            # Never placed, or its host is down: delete here, give the resources back.
            await svc.placement.free(instance.uuid)
            await svc.instances.soft_delete(instance.uuid)
            await svc.instances.finish_action(instance.uuid, context.request_id)
        else:
            instance.task_state = states.DELETING
    uuid = instance.uuid
    if local:
        # No host will release its volumes: a root volume made for it (perhaps still
        # being made) or attachments left by a dead host. After the answer, not before.
        async def release() -> None:
            await volume_attach.release_volumes(rt.clients.volumes, context, uuid)
        return Deleted(release)
    assert host is not None
    await rt.clients.agents.terminate_instance(context, host, uuid)
    return Deleted()


# Actions ------------------------------------------------------------------------------------

#: An action's handler: (runtime, caller, server id, the action's arguments) → the
#: answer's body, or None for a 202 with no body, or a ``Reply``. The request's
#: microversion: ``action_steps.version()``.
ActionHandler = Callable[[ComputeRuntime, Caller, str, Any],
                         Awaitable[dict[str, Any] | Reply | None]]


class RebootArgs(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)

    type: str = Field(default="SOFT", pattern="^(SOFT|HARD|soft|hard)$")


class ConsoleOutputArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    length: int | str | None = None


async def stop(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    uuid, host = await action_steps.begin(rt, caller, server_id, "stop",
                                          (states.ACTIVE, states.ERROR), states.POWERING_OFF)
    await rt.clients.agents.stop_instance(caller.context, host, uuid)


async def start(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    uuid, host = await action_steps.begin(rt, caller, server_id, "start",
                                          (states.STOPPED,), states.POWERING_ON)
    await rt.clients.agents.start_instance(caller.context, host, uuid)


async def reboot(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    hard = parse_args(RebootArgs, args or {}, "reboot").type.upper() == "HARD"
    allowed = ((states.ACTIVE, states.STOPPED, states.PAUSED, states.SUSPENDED, states.ERROR)
               if hard else (states.ACTIVE,))
    uuid, host = await action_steps.begin(rt, caller, server_id, "reboot", allowed,
                                          states.REBOOTING_HARD if hard else states.REBOOTING)
    await rt.clients.agents.reboot_instance(caller.context, host, uuid, hard=hard)


async def console_output(rt: ComputeRuntime, caller: Caller, server_id: str,
                         args: Any) -> dict[str, Any]:
    requested = parse_args(ConsoleOutputArgs, args or {}, "os-getConsoleOutput")
    length = None
    if requested.length not in (None, ""):
        try:
            length = int(requested.length)
        except ValueError as exc:
            raise BadRequest("length must be an integer") from exc
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:os-console-output", target(instance))
        if instance.host is None or instance.vm_state == states.BUILDING:
            raise Conflict("The server has no console yet.")
        uuid, host = instance.uuid, instance.host
    output = await rt.clients.agents.get_console_output(caller.context, host, uuid, length)
    return {"output": output}


#: Action name (the body's one key) → its handler.
ACTIONS: dict[str, ActionHandler] = {
    "os-stop": stop,
    "os-start": start,
    "reboot": reboot,
    "os-getConsoleOutput": console_output,
    # Moves between hosts (resize.py, live_migration.py, evacuate.py)
    "resize": resize.resize,
    "confirmResize": resize.confirm_resize,
    "revertResize": resize.revert_resize,
    "migrate": resize.migrate,
    "os-migrateLive": live_migration.live_migrate,
    "evacuate": evacuate.evacuate,
    **actions_power.ACTIONS,
    **actions_lock.ACTIONS,
    # Images of the disk, rebuild, shelve (snapshots.py, rebuild.py, shelve.py)
    "createImage": snapshots.create_image,
    "rebuild": rebuild.rebuild,
    "shelve": shelve.shelve,
    "shelveOffload": shelve.shelve_offload,
    "unshelve": shelve.unshelve,
    # Security groups live on the server's ports (stratus.compute.server_security_groups).
    "addSecurityGroup": server_security_groups.add_security_group,
    "removeSecurityGroup": server_security_groups.remove_security_group,
    # Remote consoles before 2.6 (consoles.py; from 2.6: POST /servers/{id}/remote-consoles)
    "os-getVNCConsole": consoles.get_vnc_console,
    "os-getSerialConsole": consoles.get_serial_console,
    "os-getSPICEConsole": consoles.get_spice_console,
    "os-getRDPConsole": consoles.get_rdp_console,
}


async def run_action(rt: ComputeRuntime, caller: Caller, server_id: str,
                     body: dict[str, Any],
                     version: APIVersion | None = None) -> dict[str, Any] | Reply | None:
    """Run the one action ``body`` names at ``version``; its answer's body (None: 202 with
    no body; a ``Reply``: its own status, headers or the server's view)."""
    if len(body) != 1:
        raise BadRequest("An action body holds exactly one action.")
    ((action, args),) = body.items()
    handler = ACTIONS.get(action)
    if handler is None:
        raise BadRequest(f"Unknown action {action!r}.")
    with at_version(version or APIVersion(2, 1)):
        return await handler(rt, caller, server_id, args)
