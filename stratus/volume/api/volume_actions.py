"""``POST /v3/{project_id}/volumes/{id}/action``: the table of volume actions.

A body names one action; each action has its policy rule, a typed argument (a pydantic model
in ``schemas``, refusing with Cinder's 400), the domain operation and the status it answers
with. The rule is checked before the argument, as Cinder does. A new action is one entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from stratus.core.context import RequestContext
from stratus.volume.api.schemas import (
    ExtendAction,
    NoArgs,
    ReadonlyAction,
    ResetStatusAction,
    SetBootableAction,
)
from stratus.volume.service import VolumeRuntime


async def _extend(rt: VolumeRuntime, ctx: RequestContext, volume_id: str,
                  project: str | None, body: Any) -> None:
    await rt.extend_volume(ctx, volume_id, project, body.new_size)


async def _set_bootable(rt: VolumeRuntime, ctx: RequestContext, volume_id: str,
                        project: str | None, body: Any) -> None:
    async with rt.service() as svc:
        await svc.volumes.set_flags(volume_id, project, bootable=body.bootable)


async def _update_readonly(rt: VolumeRuntime, ctx: RequestContext, volume_id: str,
                           project: str | None, body: Any) -> None:
    async with rt.service() as svc:
        await svc.volumes.set_flags(volume_id, project, readonly=body.readonly)


async def _reset_status(rt: VolumeRuntime, ctx: RequestContext, volume_id: str,
                        project: str | None, body: Any) -> None:
    async with rt.service() as svc:
        await svc.volumes.reset_status(volume_id, status=body.status,
                                       attach_status=body.attach_status)


async def _force_delete(rt: VolumeRuntime, ctx: RequestContext, volume_id: str,
                        project: str | None, body: Any) -> None:
    await rt.delete_volume(ctx, volume_id, None, force=True)


Run = Callable[[VolumeRuntime, RequestContext, str, "str | None", Any], Awaitable[None]]


@dataclass(frozen=True)
class Action:
    rule: str
    body: type[BaseModel]
    run: Run
    status: int


ACTIONS: dict[str, Action] = {
    "os-extend": Action("volume:extend", ExtendAction, _extend, 202),
    "os-set_bootable": Action("volume_extension:volume_actions:set_bootable",
                              SetBootableAction, _set_bootable, 200),
    "os-update_readonly_flag": Action("volume_extension:volume_actions:update_readonly_flag",
                                      ReadonlyAction, _update_readonly, 202),
    "os-reset_status": Action("volume_extension:volume_admin_actions:reset_status",
                              ResetStatusAction, _reset_status, 202),
    "os-force_delete": Action("volume:force_delete", NoArgs, _force_delete, 202),
}
