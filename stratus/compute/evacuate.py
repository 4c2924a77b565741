"""``evacuate``: rebuild the servers of a dead host on another (admin only).

Only when the server's host is down (its compute service stopped reporting, or was forced
down): 409 otherwise, as Nova. The source's claim is freed, the destination claimed (the
scheduler's choice, or ``host``, from 2.29 checked by the scheduler unless ``force``), and
the destination rebuilds the server from its image with its ports (migration type
``evacuation``). Before 2.14 ``onSharedStorage`` is required and the answer carries the
``adminPass``; from 2.95 the evacuated server is left stopped.
"""

from __future__ import annotations

import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stratus.compute import states
from stratus.compute.action_steps import Reply, admit, parse_args, version
from stratus.compute.objects import FlavorInfo
from stratus.compute.resize import begin_move, claim_destination
from stratus.compute.server_migrations import EVACUATION
from stratus.compute.service import ComputeRuntime
from stratus.core.exceptions import BadRequest, Conflict
from stratus.core.policy import Caller

__all__ = ["evacuate"]

EVACUABLE = (states.ACTIVE, states.STOPPED, states.ERROR)


class EvacuateArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    host: str | None = Field(None, min_length=1, max_length=255)
    admin_pass: str | None = Field(None, alias="adminPass")
    on_shared_storage: bool | None = Field(None, alias="onSharedStorage")
    force: bool | None = None


async def evacuate(rt: ComputeRuntime, caller: Caller, server_id: str,
                   args: Any) -> dict[str, Any] | Reply:
    asked = version()
    parsed = parse_args(EvacuateArgs, {} if args is None else args, "evacuate")
    if asked.at_least("2.14"):
        if parsed.on_shared_storage is not None:
            raise BadRequest("Additional properties are not allowed (onSharedStorage was "
                             "unexpected).")
    elif parsed.on_shared_storage is None:
        raise BadRequest("'onSharedStorage' is a required property.")
    if parsed.force is not None and not (asked.at_least("2.29")
                                         and not asked.at_least("2.68")):
        raise BadRequest("Additional properties are not allowed (force was unexpected).")
    if parsed.on_shared_storage and parsed.admin_pass:
        raise BadRequest("admin password can't be changed on existing disk")
    async with rt.service() as svc:
        instance = await admit(svc, caller, server_id, "evacuate", EVACUABLE,
                               rule="os_compute_api:os-evacuate")
        source = instance.host
        assert source is not None  # admit refuses a server without one
        if (await svc.hosts.up_states({source})).get(source, False):
            raise Conflict(f"Compute service of {source} is still in use.")
        host = parsed.host
        if host is not None:
            if not await svc.hosts.compute_services([host]):
                raise BadRequest(f"Compute host {host} could not be found.")
            if host == source:
                raise BadRequest("The target host can't be the same one.")
        stop = asked.at_least("2.95") or instance.vm_state == states.STOPPED
        start = await begin_move(svc, caller, instance, EVACUATION,
                                 FlavorInfo.model_validate(instance.flavor),
                                 action="evacuate", task_state=states.REBUILDING,
                                 status="accepted")
    dest = await claim_destination(rt, caller, start, requested_host=host,
                                   force=bool(parsed.force), free_source=True,
                                   event="conductor_rebuild_server")
    await rt.clients.agents.evacuate_instance(caller.context, dest, start.instance_uuid,
                                              start.migration_uuid, stop)
    if asked.at_least("2.14") or not rt.settings.compute.enable_instance_password:
        return Reply(status=200)
    return {"adminPass": parsed.admin_pass or secrets.token_urlsafe(9)}
