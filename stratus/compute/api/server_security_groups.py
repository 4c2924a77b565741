"""``GET /servers/{id}/os-security-groups``: the groups of the server's ports
(``stratus.compute.server_security_groups``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stratus.compute import server_security_groups
from stratus.compute.api.deps import CallerDep, Runtime

router = APIRouter(prefix="/v2.1/servers/{server_id}/os-security-groups")


@router.get("")
async def list_server_security_groups(server_id: str, rt: Runtime,
                                      caller: CallerDep) -> dict[str, Any]:
    groups = await server_security_groups.list_server_groups(rt, caller, server_id)
    return {"security_groups": groups}
