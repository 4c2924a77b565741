"""``POST /v3/{project_id}/volumes/{id}/action``: the table of volume actions.

A body names one action; each action has its policy rule, a typed argument (a pydantic model
in ``schemas``, refusing with Cinder's 400), the domain operation and the status it answers
with (and the body, for an action that has one). The rule is checked before the argument,
as Cinder does. A new action is one entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel

from stratus.core.clients.image import ImageClient
from stratus.core.context import RequestContext
from stratus.core.policy import Caller
from stratus.core.web.microversions import APIVersion
from stratus.volume.api import views
from stratus.volume.api.schemas import (
    ExtendAction,
    NoArgs,
    ReadonlyAction,
    ResetStatusAction,
    SetBootableAction,
    UploadImageAction,
)
from stratus.volume.service import VolumeRuntime
from stratus.volume.uploads import ImageUpload


@dataclass(frozen=True)
class ActionCall:
    """One action request: the runtime, the caller, the volume and the microversion."""

    rt: VolumeRuntime
    caller: Caller
    volume_id: str
    version: APIVersion
    http_client: httpx.AsyncClient

    @property
    def ctx(self) -> RequestContext:
        return self.caller.context

    @property
    def project(self) -> str | None:
        """The project the volume must be in (None: an admin's, any)."""
        return None if self.ctx.is_admin else self.ctx.project_id


async def _extend(call: ActionCall, body: Any) -> None:
    await call.rt.extend_volume(call.ctx, call.volume_id, call.project, body.new_size)


async def _set_bootable(call: ActionCall, body: Any) -> None:
    async with call.rt.service() as svc:
        await svc.volumes.set_flags(call.volume_id, call.project, bootable=body.bootable)


async def _update_readonly(call: ActionCall, body: Any) -> None:
    async with call.rt.service() as svc:
        await svc.volumes.set_flags(call.volume_id, call.project, readonly=body.readonly)


async def _reset_status(call: ActionCall, body: Any) -> None:
    async with call.rt.service() as svc:
        await svc.volumes.reset_status(call.volume_id, status=body.status,
                                       attach_status=body.attach_status)


async def _force_delete(call: ActionCall, body: Any) -> None:
    await call.rt.delete_volume(call.ctx, call.volume_id, None, force=True)


async def _upload_image(call: ActionCall, body: Any) -> dict[str, Any]:
    # Visibility and protection are the caller's to choose from 3.1; before, the image
    # is private and unprotected, as Cinder makes it.
    chosen = call.version.at_least("3.1")
    upload = ImageUpload(image_name=body.image_name, disk_format=body.disk_format,
                         container_format=body.container_format,
                         visibility=body.visibility if chosen else "private",
                         protected=body.protected if chosen else False, force=body.force)
    if upload.visibility == "public":
        call.caller.authorize("volume_extension:volume_actions:upload_public",
                              {"project_id": call.ctx.project_id})
    volume, image = await call.rt.upload_to_image(call.ctx, call.volume_id, call.project,
                                                  upload, ImageClient(call.http_client))
    async with call.rt.service() as svc:
        vtype = (await svc.types.by_id([volume.volume_type_id])).get(
            volume.volume_type_id or "")
    return {"os-volume_upload_image": views.upload_view(volume, vtype, str(image["id"]),
                                                        upload, version=call.version)}


Run = Callable[[ActionCall, Any], Awaitable["dict[str, Any] | None"]]


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
    "os-volume_upload_image": Action("volume_extension:volume_actions:upload_image",
                                     UploadImageAction, _upload_image, 202),
}
