"""What every server action's handler shares: the checks before it starts, in Nova's order
and words, the start of an action, the request's microversion and the shape of an answer
that is not a plain 200 body.

An action's handler authorizes, then (``begin``): a locked server refuses anyone but an
admin (``Instance <id> is locked``, 409), a server in a state the action does not take
refuses it (``Cannot 'pause' instance <id> while it is in vm_state paused``, 409), and only
then is anything written: the task state and the instance action. A refused action leaves
the server exactly as it was and records nothing.

``lifecycle.ACTIONS`` holds the handlers; the larger flows (``snapshots``, ``rebuild``,
``shelve``) live in modules of their own and use these steps, so they need nothing of
``lifecycle`` (which imports them for its table).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from stratus.compute.models import Instance
from stratus.compute.servers import target, visible
from stratus.compute.service import ComputeRuntime, ComputeService
from stratus.core.exceptions import BadRequest, Conflict, NotFound
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


@dataclass(frozen=True)
class Reply:
    """An action's answer other than a plain 200 with a body: a status, headers, a body,
    or the server's own view (``show_server``: the API renders the server as ``rebuild``
    answers, ``GET``'s view from 2.75 and the base view before, with ``extra`` merged)."""

    status: int = 202
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    show_server: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


M = TypeVar("M", bound=BaseModel)


def parse_args(model: type[M], args: Any, action: str) -> M:
    """An action's arguments as ``model``; what does not fit is a 400 naming the field."""
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or action
        raise BadRequest(f"Invalid input for field/attribute {where} of {action}: "
                         f"{first.get('msg', 'invalid value')}") from exc


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


async def admit(svc: ComputeService, caller: Caller, server_id: str, name: str,
                allowed: tuple[str, ...], *, rule: str | None = None,
                check: Callable[[Instance], None] | None = None) -> Instance:
    """The server, if ``name`` may act on it now: the caller sees it and policy ``rule``
    (by default ``os_compute_api:servers:<name>``) allows it (404/403), it is not locked
    (or the caller is an admin), its vm_state is one of ``allowed`` with no task, ``check``
    (after those) does not refuse it, and it has a host (409 otherwise). Inside the
    action's own transaction (``svc``), for actions that write more than ``begin`` does."""
    instance = await visible(svc, caller, server_id)
    caller.authorize(rule or f"os_compute_api:servers:{name}", target(instance))
    refuse_if_locked(instance, caller)
    require(instance, allowed, name)
    if check is not None:
        check(instance)
    if instance.host is None:
        raise Conflict(f"Instance {instance.uuid} has no host.")
    return instance


async def begin(rt: ComputeRuntime, caller: Caller, server_id: str, name: str,
                allowed: tuple[str, ...], task: str | None, *,
                rule: str | None = None, action: str | None = None,
                check: Callable[[Instance], None] | None = None) -> tuple[str, str]:
    """``admit`` the server for ``name`` (policy ``rule``, lock, state, ``check``), set the
    task state (``task``; None: none) and record the instance action (``action``, by
    default ``name``); the server's (uuid, host)."""
    async with rt.service() as svc:
        instance = await admit(svc, caller, server_id, name, allowed, rule=rule, check=check)
        assert instance.host is not None  # admit refuses a server without one
        if task is not None:
            instance.task_state = task
        await svc.instances.start_action(caller.context, instance.uuid, action or name)
        return instance.uuid, instance.host
