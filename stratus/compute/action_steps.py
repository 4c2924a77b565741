"""What every server action's handler shares: the checks before it starts, in Nova's order
and words, and the request's microversion.

An action's handler authorizes, then (``begin``): a locked server refuses anyone but an
admin (``Instance <id> is locked``, 409), a server in a state the action does not take
refuses it (``Cannot 'pause' instance <id> while it is in vm_state paused``, 409), and only
then is anything written: the task state and the instance action. A refused action leaves
the server exactly as it was and records nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

from stratus.compute.models import Instance
from stratus.compute.servers import target, visible
from stratus.compute.service import ComputeRuntime
from stratus.core.exceptions import Conflict, NotFound
from stratus.core.policy import Caller
from stratus.core.web.microversions import APIVersion

#: The microversion of the action request being handled (``run_action`` sets it): a few
#: actions take arguments or answer differently per microversion, and the handlers' common
#: signature has no place for it.
_VERSION: contextvars.ContextVar[APIVersion | None] = contextvars.ContextVar(
    "compute_action_version", default=None)


@contextlib.contextmanager
def at_version(asked: APIVersion) -> Iterator[None]:
    """Handle an action asked at ``asked`` (``version()`` answers it meanwhile)."""
    token = _VERSION.set(asked)
    try:
        yield
    finally:
        _VERSION.reset(token)


def version() -> APIVersion:
    """The microversion the current action was asked at (2.1 when none was given)."""
    return _VERSION.get() or APIVersion(2, 1)


def refuse_if_locked(instance: Instance, caller: Caller) -> None:
    """Nova's ``check_instance_lock``: a locked server acts for admins only."""
    if instance.locked and not caller.is_admin:
        raise Conflict(f"Instance {instance.uuid} is locked")


def require(instance: Instance, vm_states: tuple[str, ...], action: str,
                  task_states: tuple[str | None, ...] = (None,)) -> None:
    """Nova's ``check_instance_state``: the vm_state first, then the task state."""
    if instance.vm_state not in vm_states:
        raise Conflict(f"Cannot '{action}' instance {instance.uuid} while it is in vm_state "
                       f"{instance.vm_state}")
    if instance.task_state not in task_states:
        raise Conflict(f"Cannot '{action}' instance {instance.uuid} while it is in "
                       f"task_state {instance.task_state}")


def require_version(minimum: str) -> None:
    """An action that a microversion introduced is not found before it (Nova's 404)."""
    asked = version()
    if not asked.at_least(minimum):
        raise NotFound(f"API version {asked} is not supported on this method.")


async def begin(rt: ComputeRuntime, caller: Caller, server_id: str, name: str,
                allowed: tuple[str, ...], task: str | None, *,
                rule: str | None = None, action: str | None = None,
                check: Callable[[Instance], None] | None = None) -> tuple[str, str]:
    """Authorize ``name`` (policy ``rule``, by default ``os_compute_api:servers:<name>``),
    refuse a locked server or a wrong state, set the task state (``task``; None: none) and
    record the instance action (``action``, by default ``name``); the server's
    (uuid, host). ``check`` refuses what the state alone does not say (after it)."""
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize(rule or f"os_compute_api:servers:{name}", target(instance))
        refuse_if_locked(instance, caller)
        require(instance, allowed, name)
        if check is not None:
            check(instance)
        if instance.host is None:
            raise Conflict(f"Instance {instance.uuid} has no host.")
        if task is not None:
            instance.task_state = task
        await svc.instances.start_action(caller.context, instance.uuid, action or name)
        return instance.uuid, instance.host
