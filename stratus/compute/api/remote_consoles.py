"""``/servers/{id}/remote-consoles`` (2.6+) and ``/os-console-auth-tokens/{token}`` (admin).

The flows are ``stratus.compute.consoles``; the console proxy that takes the URLs' tokens
is the ``console-proxy`` unit (``stratus.compute.console_proxy``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stratus.compute import consoles
from stratus.compute.api.deps import CallerDep, Runtime, Version
from stratus.core.exceptions import NotFound

router = APIRouter(prefix="/v2.1")


@router.post("/servers/{server_id}/remote-consoles")
async def create_remote_console(server_id: str, body: dict[str, Any], rt: Runtime,
                                caller: CallerDep, version: Version) -> dict[str, Any]:
    if not version.at_least("2.6"):  # before 2.6: the os-get*Console actions
        raise NotFound("The resource could not be found.")
    return await consoles.remote_console(rt, caller, server_id, body, version)


@router.get("/os-console-auth-tokens/{token}")
async def show_console_auth_token(token: str, rt: Runtime, caller: CallerDep) -> dict[str, Any]:
    return await consoles.show_token(rt, caller, token)
