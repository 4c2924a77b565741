"""``/servers/{id}/os-server-password``: read or clear what the guest posted."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from stratus.compute import passwords
from stratus.compute.api.deps import CallerDep, Service
from stratus.compute.servers import target, visible

router = APIRouter(prefix="/v2.1/servers/{server_id}/os-server-password")


@router.get("")
async def show(server_id: str, svc: Service, caller: CallerDep) -> dict[str, Any]:
    instance = await visible(svc, caller, server_id)
    caller.authorize("os_compute_api:os-server-password:show", target(instance))
    return {"password": await passwords.get(svc.session, instance.uuid)}


@router.delete("", status_code=204)
async def clear(server_id: str, svc: Service, caller: CallerDep) -> Response:
    instance = await visible(svc, caller, server_id)
    caller.authorize("os_compute_api:os-server-password:clear", target(instance))
    await passwords.clear(svc.session, instance.uuid)
    return Response(status_code=204)
