"""``lock`` and ``unlock``: a locked server refuses actions and delete to everyone but admins
(``action_steps.refuse_if_locked``), as Nova's ``check_instance_lock`` does.

Nova's rules: anyone the policy lets lock a server may (``os-lock-server:lock``), in any
state; the lock remembers who took it, the server's own project (``owner``) or an admin of
another (``admin``). Unlocking a lock someone else's side took needs
``os-lock-server:unlock:unlock_override`` (admins). From 2.73 the lock may carry a
``locked_reason`` (1 to 255 characters), shown with the server and cleared by the unlock;
before 2.73 a reason is refused (400). Both record an instance action and its ``api_lock`` /
``api_unlock`` event; nothing reaches the host.
"""

from __future__ import annotations

from typing import Any

from stratus.compute.action_steps import version
from stratus.compute.models import Instance
from stratus.compute.servers import target, visible
from stratus.compute.service import ComputeRuntime, ComputeService
from stratus.core.exceptions import BadRequest
from stratus.core.policy import Caller

MAX_REASON_LENGTH = 255


def _reason(args: Any) -> str | None:
    if args is None:
        return None
    if not isinstance(args, dict):
        raise BadRequest("Invalid input for field 'lock': it must be null or an object.")
    if not version().at_least("2.73"):
        if "locked_reason" in args:
            raise BadRequest("Invalid input for field 'lock': Additional properties are not "
                             "allowed ('locked_reason' was unexpected); it needs microversion "
                             "2.73.")
        return None
    unexpected = sorted(set(args) - {"locked_reason"})
    if unexpected:
        raise BadRequest(f"Invalid input for field 'lock': Additional properties are not "
                         f"allowed ({unexpected[0]!r} was unexpected).")
    reason = args.get("locked_reason")
    if reason is None and "locked_reason" not in args:
        return None
    if not isinstance(reason, str) or not 1 <= len(reason) <= MAX_REASON_LENGTH:
        raise BadRequest("Invalid input for field 'lock/locked_reason': a string of 1 to "
                         f"{MAX_REASON_LENGTH} characters.")
    return reason


def _side(instance: Instance, caller: Caller) -> str:
    """Who a lock taken (or expected) by ``caller`` belongs to: ``owner`` or ``admin``."""
    return "owner" if instance.project_id == caller.project_id else "admin"


async def lock(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    reason = _reason(args)
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:os-lock-server:lock", target(instance))
        side = _side(instance, caller)
        if instance.locked and side == "owner":
            return  # Nova: the owner locking a locked server changes nothing
        await _record(svc, caller, instance, "lock")
        instance.locked, instance.locked_by = True, side
        instance.locked_reason = reason


async def unlock(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any) -> None:
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:os-lock-server:unlock", target(instance))
        if instance.locked_by and instance.locked_by != _side(instance, caller):
            caller.authorize("os_compute_api:os-lock-server:unlock:unlock_override",
                             target(instance))
        await _record(svc, caller, instance, "unlock")
        instance.locked, instance.locked_by, instance.locked_reason = False, None, None


async def _record(svc: ComputeService, caller: Caller, instance: Instance, name: str) -> None:
    """The instance action and its one event, whole: the API does all the work."""
    context = caller.context
    await svc.instances.start_action(context, instance.uuid, name)
    await svc.instances.record_event(instance.uuid, context.request_id, f"api_{name}",
                                     host=None, finished=True, result="Success")
    await svc.instances.finish_action(instance.uuid, context.request_id)


#: Action name → handler (``lifecycle.ACTIONS`` takes them all).
ACTIONS = {"lock": lock, "unlock": unlock}
