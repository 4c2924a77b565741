"""The console proxy's ASGI app, mounted at ``/console``.

- ``/websockify?token=...``: a websocket bridged to the guest's VNC server (noVNC's
  protocol: RFB in binary frames, subprotocol ``binary`` when the client offers it);
- ``/serial?token=...``: a websocket bridged to the guest's serial port;
- ``/vnc_lite.html`` (Nova's URL form, ``?path=`` naming the websocket): Debian's noVNC
  (``/usr/share/novnc``) when installed, else a short page naming the websocket to give a
  noVNC client.

A token opens one connection: it is consumed (``console_tokens``) before the websocket is
accepted, and an unknown, used or expired one closes the handshake with a policy
violation (HTTP 403). Tokens are never logged.
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.status import WS_1008_POLICY_VIOLATION
from starlette.websockets import WebSocket

from stratus.compute.console_proxy.bridges import bridge_pty, bridge_tcp
from stratus.compute.console_tokens import ConsoleGrant
from stratus.compute.service import ComputeRuntime

LOG = logging.getLogger(__name__)

#: Where Debian's ``novnc`` package puts noVNC's pages and scripts.
NOVNC_DIR = Path("/usr/share/novnc")
#: The only character devices a serial grant may name: ptys.
PTY_PREFIX = "/dev/pts/"
#: The server's logger, which names each websocket's path with its query (so its token).
SERVER_LOGGER = "uvicorn.error"


class RedactTokens(logging.Filter):
    """Blanks ``token=...`` in a record's message and arguments: a console token opens a
    guest's console, so none reaches a log."""

    _TOKEN = re.compile(r"(token(?:%3D|=))[^&\s\"']+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self._TOKEN.sub(r"\1***", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._TOKEN.sub(r"\1***", a) if isinstance(a, str) else a
                                for a in record.args)
        return True


def redact_server_logs() -> None:
    """Install ``RedactTokens`` on the server's logger (once)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())


def create_console_proxy_app(runtime: ComputeRuntime, novnc_dir: Path = NOVNC_DIR) -> Starlette:
    redact_server_logs()

    async def grant_for(websocket: WebSocket, console_type: str) -> ConsoleGrant | None:
        token = websocket.query_params.get("token", "")
        grant = None
        if token:
            async with runtime.service() as svc:
                grant = await svc.console_tokens.consume(token)
        if grant is None or grant.console_type != console_type:
            LOG.info("console proxy: refused a %s console (token unknown, used or expired)",
                     console_type)
            await websocket.close(code=WS_1008_POLICY_VIOLATION)
            return None
        return grant

    async def accept(websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol="binary" if "binary" in offered else None)

    async def vnc(websocket: WebSocket) -> None:
        grant = await grant_for(websocket, "novnc")
        if grant is None:
            return
        if grant.port is None:
            await websocket.close(code=WS_1008_POLICY_VIOLATION)
            return
        await accept(websocket)
        LOG.info("console proxy: VNC of %s opened", grant.instance_uuid)
        try:
            await bridge_tcp(websocket, grant.host, grant.port)
        except OSError as exc:
            LOG.warning("console proxy: VNC of %s unreachable: %s", grant.instance_uuid, exc)
        await _close(websocket)

    async def serial(websocket: WebSocket) -> None:
        grant = await grant_for(websocket, "serial")
        if grant is None:
            return
        path = grant.internal_access_path or ""
        if not path.startswith(PTY_PREFIX) or ".." in path:
            await websocket.close(code=WS_1008_POLICY_VIOLATION)
            return
        await accept(websocket)
        LOG.info("console proxy: serial console of %s opened", grant.instance_uuid)
        try:
            await bridge_pty(websocket, path)
        except OSError as exc:
            LOG.warning("console proxy: serial console of %s unreachable: %s",
                        grant.instance_uuid, exc)
        await _close(websocket)

    async def page(request: Request) -> Response:
        name = request.url.path.rsplit("/", 1)[-1]
        found = novnc_dir / name
        if found.is_file():
            return FileResponse(found)
        path = request.query_params.get("path", "")
        where = html.escape(f"/{path.lstrip('/')}" if path else "/console/websockify")
        return HTMLResponse(
            "<!DOCTYPE html><html><head><title>Stratus console</title></head><body>"
            "<h1>Guest console</h1><p>noVNC is not installed on this cloud's proxy host. "
            f"Connect a noVNC (or other RFB-over-websocket) client to the websocket at "
            f"<code>{where}</code> on this host, protocol <code>binary</code>. The token in "
            "it opens one connection within 10 minutes.</p></body></html>")

    routes: list[Route | WebSocketRoute | Mount] = [
        WebSocketRoute("/websockify", vnc),
        WebSocketRoute("/serial", serial),
        Route("/vnc_lite.html", page),
        Route("/vnc_auto.html", page),
        Route("/vnc.html", page),
    ]
    if novnc_dir.is_dir():  # noVNC's scripts and styles, which its pages load relatively
        routes.append(Mount("/", app=StaticFiles(directory=novnc_dir)))
    return Starlette(routes=routes)


async def _close(websocket: WebSocket) -> None:
    try:
        await websocket.close()
    except RuntimeError:  # already closed by the client
        pass
