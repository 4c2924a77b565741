"""Remote consoles: ``POST /servers/{id}/remote-consoles`` (2.6+), the older
``os-getVNCConsole`` / ``os-getSerialConsole`` actions (up to 2.5), and the admin's look at
a token (``os-console-auth-tokens``).

The server's host says where the guest's console is (``ComputeAgentAPI.get_console``: its
VNC port or serial pty); a one-time token bound to that place is minted
(``console_tokens``) and handed out inside a URL of the ``console-proxy`` unit, which
checks the token and bridges a websocket to the console.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict

from stratus.compute import states
from stratus.compute.action_steps import parse_args, version
from stratus.compute.console_tokens import ConsoleGrant
from stratus.compute.console_types import ConsoleKind, ConsoleUnavailable
from stratus.compute.servers import target, visible
from stratus.compute.service import ComputeRuntime
from stratus.core.exceptions import BadRequest, NotFound
from stratus.core.policy import Caller
from stratus.core.web.microversions import APIVersion

#: Nova's protocols and the console types each accepts (``mks`` from 2.8, ``spice-direct``
#: from 2.99: past this cloud's newest microversion).
PROTOCOL_TYPES: dict[str, tuple[str, ...]] = {
    "vnc": ("novnc", "xvpvnc"),
    "spice": ("spice-html5",),
    "rdp": ("rdp-html5",),
    "serial": ("serial",),
}
MKS_TYPES = {"mks": ("webmks",)}

#: The console types this cloud serves, and the kind of console each needs on the host.
SERVED: dict[str, ConsoleKind] = {"novnc": "vnc", "serial": "serial"}

#: The states in which a guest runs on its host, so has its consoles (a paused guest's VNC
#: still shows its last frame).
RUNNING = (states.ACTIVE, states.PAUSED, states.RESCUED)

#: Where the console proxy is mounted under the public URL (``stratus.compute.units``).
PROXY_PREFIX = "/console"


def console_url(base_url: str, console_type: str, token: str) -> str:
    """The URL a client opens: noVNC's page with the websocket's ``path`` for ``novnc``
    (as Nova's ``vnc_lite.html?path=...``), the websocket itself for ``serial``."""
    base = base_url.rstrip("/")
    if console_type == "novnc":
        prefix = urlsplit(base).path.strip("/")
        path = "/".join(p for p in (prefix, PROXY_PREFIX.strip("/"), "websockify") if p)
        return (f"{base}{PROXY_PREFIX}/vnc_lite.html?path="
                f"{quote(f'{path}?token={token}', safe='')}")
    scheme = "wss" if base.startswith("https:") else "ws"
    return f"{scheme}:{base.split(':', 1)[1]}{PROXY_PREFIX}/serial?token={token}"


async def open_console(rt: ComputeRuntime, caller: Caller, server_id: str,
                       console_type: str) -> str:
    """A URL with a fresh token for the server's ``console_type`` console."""
    kind = SERVED.get(console_type)
    if kind is None:  # Nova's ConsoleTypeUnavailable
        raise BadRequest(f"Unavailable console type {console_type}.")
    async with rt.service() as svc:
        instance = await visible(svc, caller, server_id)
        caller.authorize("os_compute_api:os-remote-consoles", target(instance))
        if (instance.host is None or instance.vm_state not in RUNNING
                or instance.task_state == states.DELETING):
            raise ConsoleUnavailable(f"Instance {instance.uuid} is not ready.")
        uuid, host = instance.uuid, instance.host
    endpoint = await rt.clients.agents.get_console(caller.context, host, uuid, kind)
    async with rt.service() as svc:
        token = await svc.console_tokens.mint(uuid, console_type, endpoint)
    return console_url(rt.settings.base_url, console_type, token)


class RemoteConsoleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    protocol: str
    type: str


async def remote_console(rt: ComputeRuntime, caller: Caller, server_id: str,
                         body: dict[str, Any], at: APIVersion) -> dict[str, Any]:
    """``POST /servers/{id}/remote-consoles``: ``{"remote_console": {protocol, type, url}}``."""
    if set(body) != {"remote_console"} or not isinstance(body["remote_console"], dict):
        raise BadRequest("Invalid input: the body holds one 'remote_console' object.")
    asked = parse_args(RemoteConsoleRequest, body["remote_console"], "remote_console")
    known = PROTOCOL_TYPES | (MKS_TYPES if at.at_least("2.8") else {})
    if asked.protocol not in known:
        raise BadRequest(f"Invalid input for field/attribute protocol. Value: {asked.protocol}. "
                         f"It is not one of {sorted(known)}.")
    if asked.type not in known[asked.protocol]:
        raise BadRequest(f"Invalid input: console type {asked.type!r} does not go with "
                         f"protocol {asked.protocol!r} (one of {list(known[asked.protocol])}).")
    url = await open_console(rt, caller, server_id, asked.type)
    return {"remote_console": {"protocol": asked.protocol, "type": asked.type, "url": url}}


# The actions of before 2.6 -------------------------------------------------------------------

class _LegacyConsoleArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: str


async def _legacy(rt: ComputeRuntime, caller: Caller, server_id: str, args: Any, action: str,
                  types: tuple[str, ...]) -> dict[str, Any]:
    if version().at_least("2.6"):  # replaced by remote-consoles, as in Nova
        raise NotFound(f"There is no such action: {action}")
    asked = parse_args(_LegacyConsoleArgs, args, action)
    if asked.type not in types:
        raise BadRequest(f"Invalid input for field/attribute type. Value: {asked.type}. "
                         f"It is not one of {list(types)}.")
    url = await open_console(rt, caller, server_id, asked.type)
    return {"console": {"type": asked.type, "url": url}}


async def get_vnc_console(rt: ComputeRuntime, caller: Caller, server_id: str,
                          args: Any) -> dict[str, Any]:
    return await _legacy(rt, caller, server_id, args, "os-getVNCConsole", ("novnc", "xvpvnc"))


async def get_serial_console(rt: ComputeRuntime, caller: Caller, server_id: str,
                             args: Any) -> dict[str, Any]:
    return await _legacy(rt, caller, server_id, args, "os-getSerialConsole", ("serial",))


# SPICE and RDP are not served here: Nova's 400 for a console type not enabled (Horizon's
# AUTO console mode asks for them in turn after VNC).

async def get_spice_console(rt: ComputeRuntime, caller: Caller, server_id: str,
                            args: Any) -> dict[str, Any]:
    return await _legacy(rt, caller, server_id, args, "os-getSPICEConsole", ("spice-html5",))


async def get_rdp_console(rt: ComputeRuntime, caller: Caller, server_id: str,
                          args: Any) -> dict[str, Any]:
    return await _legacy(rt, caller, server_id, args, "os-getRDPConsole", ("rdp-html5",))


# The admin's look at a token -----------------------------------------------------------------

async def show_token(rt: ComputeRuntime, caller: Caller, token: str) -> dict[str, Any]:
    """``GET /os-console-auth-tokens/{token}``: where a valid token leads (not used up)."""
    caller.authorize("os_compute_api:os-console-auth-tokens")
    grant: ConsoleGrant | None = None
    if token:
        async with rt.service() as svc:
            grant = await svc.console_tokens.show(token)
    if grant is None:
        raise NotFound("The token has expired or is invalid.")
    return {"console": {"instance_uuid": grant.instance_uuid, "host": grant.host,
                        "port": grant.port,
                        "internal_access_path": grant.internal_access_path}}
