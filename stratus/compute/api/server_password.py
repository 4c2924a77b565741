"""``/servers/{id}/os-server-password``: read or clear what the guest posted."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from stratus.compute import passwords
from stratus.compute.api.deps import Authorize, Context, Service

router = APIRouter(prefix="/v2.1/servers/{server_id}/os-server-password")


@router.get("")
async def show(server_id: str, svc: Service, context: Context,
               authorize: Authorize) -> dict[str, Any]:
    instance = await svc.instances.get(
        server_id, project_id=None if context.is_admin else context.project_id)
    authorize("os_compute_api:os-server-password:show",
              {"project_id": instance.project_id, "user_id": instance.user_id})
    return {"password": await passwords.get(svc.session, instance.uuid)}


@router.delete("", status_code=204)
async def clear(server_id: str, svc: Service, context: Context,
                authorize: Authorize) -> Response:
    instance = await svc.instances.get(
        server_id, project_id=None if context.is_admin else context.project_id)
    authorize("os_compute_api:os-server-password:clear",
              {"project_id": instance.project_id, "user_id": instance.user_id})
    await passwords.clear(svc.session, instance.uuid)
    return Response(status_code=204)
