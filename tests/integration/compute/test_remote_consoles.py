"""Remote consoles through the API of a whole in-process cloud (fake hypervisor, memory bus,
SQLite and PostgreSQL): Nova's validation and errors, one-time hashed tokens, and the
console proxy bridging a websocket to a VNC server's TCP port on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
import uvicorn
import websockets
from sqlalchemy import select

from stratus.compute.console_proxy.api import create_console_proxy_app
from stratus.compute.console_tokens import token_hash
from stratus.compute.console_types import ConsoleEndpoint
from stratus.compute.consoles import console_url
from stratus.compute.models import ConsoleAuthToken
from stratus.compute.service import ComputeRuntime
from stratus.core.db import utcnow
from tests.e2e.cloud import free_port
from tests.integration.compute import test_boot_flow
from tests.integration.compute.conftest import assert_compute_error
from tests.integration.compute.test_boot_flow import Cloud, upload_image
from tests.integration.compute.test_server_extras import _boot_active

cloud = test_boot_flow.cloud  # the whole in-process cloud, three fake hosts


def _runtime(cloud: Cloud) -> ComputeRuntime:
    runtime = cloud.stack.compute
    assert runtime is not None
    return runtime


async def test_fake_driver_answers_409_and_bad_requests_400(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    server = await _boot_active(cloud, image_id)
    path = f"/servers/{server['id']}/remote-consoles"

    for protocol, kind in (("vnc", "novnc"), ("serial", "serial")):
        refused = await cloud.compute("POST", path, json={
            "remote_console": {"protocol": protocol, "type": kind}})
        message = assert_compute_error(refused, 409, "conflictingRequest")
        assert "fake driver" in message
    # Nova's 400s: an unknown protocol, a type of another protocol, a type not served here.
    for body, words in (({"protocol": "telnet", "type": "novnc"}, "protocol"),
                        ({"protocol": "vnc", "type": "serial"}, "does not go with"),
                        ({"protocol": "spice", "type": "spice-html5"}, "Unavailable console"),
                        ({"protocol": "mks", "type": "webmks"}, "protocol"),
                        ({"protocol": "vnc"}, "type")):
        bad = await cloud.compute("POST", path, version="2.6", json={"remote_console": body})
        assert words in assert_compute_error(bad, 400, "badRequest")
    assert_compute_error(await cloud.compute("POST", path, json={"console": {}}), 400,
                         "badRequest")
    # mks is a protocol from 2.8; the route itself from 2.6.
    mks = await cloud.compute("POST", path, version="2.8", json={
        "remote_console": {"protocol": "mks", "type": "webmks"}})
    assert "Unavailable console type webmks" in assert_compute_error(mks, 400, "badRequest")
    assert (await cloud.compute("POST", path, version="2.5", json={
        "remote_console": {"protocol": "vnc", "type": "novnc"}})).status_code == 404
    missing = await cloud.compute("POST", "/servers/nope/remote-consoles", json={
        "remote_console": {"protocol": "vnc", "type": "novnc"}})
    assert_compute_error(missing, 404, "itemNotFound")

    # The actions of before 2.6, and their end at 2.6.
    action = f"/servers/{server['id']}/action"
    old = await cloud.compute("POST", action, version="2.1",
                              json={"os-getVNCConsole": {"type": "novnc"}})
    assert "fake driver" in assert_compute_error(old, 409, "conflictingRequest")
    old = await cloud.compute("POST", action, version="2.1",
                              json={"os-getSerialConsole": {"type": "serial"}})
    assert_compute_error(old, 409, "conflictingRequest")
    bad = await cloud.compute("POST", action, version="2.1",
                              json={"os-getVNCConsole": {"type": "serial"}})
    assert_compute_error(bad, 400, "badRequest")
    for name, kind in (("os-getSPICEConsole", "spice-html5"), ("os-getRDPConsole", "rdp-html5")):
        off = await cloud.compute("POST", action, version="2.1", json={name: {"type": kind}})
        assert f"Unavailable console type {kind}" in assert_compute_error(off, 400,
                                                                          "badRequest")
    gone = await cloud.compute("POST", action, version="2.6",
                               json={"os-getVNCConsole": {"type": "novnc"}})
    assert_compute_error(gone, 404, "itemNotFound")

    # A server that is not running has no console: 409 "not ready", before asking its host.
    stop = await cloud.compute("POST", action, json={"os-stop": None})
    assert stop.status_code == 202
    await cloud.wait_for(server["id"], "SHUTOFF")
    stopped = await cloud.compute("POST", path, json={
        "remote_console": {"protocol": "vnc", "type": "novnc"}})
    assert "is not ready" in assert_compute_error(stopped, 409, "conflictingRequest")

    assert_compute_error(await cloud.compute("GET", "/os-console-auth-tokens/nope"), 404,
                         "itemNotFound")

    # A deleted server's tokens open nothing.
    async with _runtime(cloud).service() as svc:
        token = await svc.console_tokens.mint(server["id"], "novnc", ConsoleEndpoint(
            kind="vnc", host="127.0.0.1", port=5900))
    assert (await cloud.compute("DELETE", f"/servers/{server['id']}")).status_code == 204
    await cloud.wait_for(server["id"], "DELETED")
    async with _runtime(cloud).service() as svc:
        assert await svc.console_tokens.consume(token) is None


async def test_tokens_are_stored_hashed_expire_and_open_once(cloud: Cloud) -> None:
    runtime = _runtime(cloud)
    endpoint = ConsoleEndpoint(kind="vnc", host="127.0.0.1", port=5901)
    now = utcnow()
    async with runtime.service() as svc:
        token = await svc.console_tokens.mint("uuid-1", "novnc", endpoint, now=now)
        stale = await svc.console_tokens.mint("uuid-1", "novnc", endpoint, ttl=5,
                                              now=now - dt.timedelta(seconds=10))
    assert token != stale and len(token) >= 32
    async with runtime.service() as svc:
        rows = (await svc.session.scalars(select(ConsoleAuthToken))).all()
    assert {r.token_hash for r in rows} == {hashlib.sha256(t.encode()).hexdigest()
                                            for t in (token, stale)}
    assert all(token not in (r.token_hash, r.internal_access_path) for r in rows)
    assert {r.expires_at for r in rows if r.token_hash == token_hash(token)} == {
        now + dt.timedelta(seconds=600)}

    # The admin's look leaves it usable; the proxy's use ends it; expired is as unknown.
    shown = await cloud.compute("GET", f"/os-console-auth-tokens/{token}")
    assert shown.status_code == 200, shown.text
    assert shown.json() == {"console": {"instance_uuid": "uuid-1", "host": "127.0.0.1",
                                        "port": 5901, "internal_access_path": None}}
    expired = await cloud.compute("GET", f"/os-console-auth-tokens/{stale}")
    assert_compute_error(expired, 404, "itemNotFound")
    async with runtime.service() as svc:
        assert await svc.console_tokens.consume(stale) is None
        grant = await svc.console_tokens.consume(token)
        assert grant is not None and (grant.host, grant.port) == ("127.0.0.1", 5901)
        assert await svc.console_tokens.consume(token) is None
        # Expiry counts: a token is refused once its time is up.
        later = await svc.console_tokens.mint("uuid-2", "serial", ConsoleEndpoint(
            kind="serial", host="127.0.0.1", path="/dev/pts/9"))
        assert await svc.console_tokens.consume(
            later, now=utcnow() + dt.timedelta(seconds=601)) is None
    assert_compute_error(await cloud.compute("GET", f"/os-console-auth-tokens/{token}"), 404,
                         "itemNotFound")


def test_console_urls_name_the_proxy_and_the_token() -> None:
    url = console_url("http://cloud.example:8080", "novnc", "tok-1")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "cloud.example:8080",
                                                        "/console/vnc_lite.html")
    assert unquote(parse_qs(parts.query)["path"][0]) == "console/websockify?token=tok-1"
    behind = console_url("https://cloud.example/stratus/", "novnc", "t")
    assert unquote(parse_qs(urlsplit(behind).query)["path"][0]) == \
        "stratus/console/websockify?token=t"
    assert console_url("https://cloud.example", "serial", "t") == \
        "wss://cloud.example/console/serial?token=t"
    assert console_url("http://h:1", "serial", "t") == "ws://h:1/console/serial?token=t"


async def test_without_novnc_the_page_names_the_websocket(cloud: Cloud, tmp_path: Path) -> None:
    app = create_console_proxy_app(_runtime(cloud), tmp_path / "absent")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://proxy") as http:
        page = await http.get("/vnc_lite.html",
                              params={"path": "console/websockify?token=<t>"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "noVNC is not installed" in page.text
    assert "/console/websockify?token=&lt;t&gt;" in page.text  # escaped, not injected


@contextlib.asynccontextmanager
async def _serving(app: object) -> AsyncIterator[int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           lifespan="off", access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def test_proxy_bridges_a_websocket_to_a_vnc_port_once_per_token(
        cloud: Cloud, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    runtime = _runtime(cloud)
    novnc = tmp_path / "novnc"  # laid out as Debian's noVNC
    (novnc / "core").mkdir(parents=True)
    (novnc / "vnc_lite.html").write_text("<html>noVNC lite</html>")
    (novnc / "core" / "rfb.js").write_text("export default class RFB {}")

    async def vnc_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"RFB 003.008\n")  # what a VNC server says first
        await writer.drain()
        while data := await reader.read(100):  # then echoes, to show both directions
            writer.write(data.upper())
            await writer.drain()
        writer.close()

    vnc = await asyncio.start_server(vnc_server, "127.0.0.1", 0)
    vnc_port = vnc.sockets[0].getsockname()[1]
    async with runtime.service() as svc:
        token = await svc.console_tokens.mint("uuid-v", "novnc", ConsoleEndpoint(
            kind="vnc", host="127.0.0.1", port=vnc_port))
        serial_token = await svc.console_tokens.mint("uuid-v", "serial", ConsoleEndpoint(
            kind="serial", host="127.0.0.1", path="/dev/pts/9"))
    try:
        async with _serving(create_console_proxy_app(runtime, novnc)) as port:
            ws_url = f"ws://127.0.0.1:{port}/websockify?token={token}"
            async with websockets.connect(ws_url, subprotocols=["binary"]) as ws:
                assert ws.subprotocol == "binary"
                assert await asyncio.wait_for(ws.recv(), 10) == b"RFB 003.008\n"
                await ws.send(b"hello")
                assert await asyncio.wait_for(ws.recv(), 10) == b"HELLO"
            # Used: refused at the handshake (policy violation → HTTP 403); so is a serial
            # token on the VNC path, and no token at all.
            for refused in (ws_url, f"ws://127.0.0.1:{port}/websockify?token={serial_token}",
                            f"ws://127.0.0.1:{port}/websockify",
                            f"ws://127.0.0.1:{port}/serial?token={token}"):
                with pytest.raises(websockets.InvalidStatus) as caught:
                    async with websockets.connect(refused):
                        pass
                assert caught.value.response.status_code == 403
            # The URL's page is noVNC's, with its scripts beside it.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                page = await http.get("/vnc_lite.html", params={"path": "x?token=y"})
                assert page.status_code == 200 and page.text == "<html>noVNC lite</html>"
                assert (await http.get("/core/rfb.js")).text.startswith("export default")
    finally:
        vnc.close()
        await vnc.wait_closed()
    # The server logged each websocket (accepted, 403) without its token.
    assert "WebSocket /websockify?token=***" in caplog.text
    assert token not in caplog.text and serial_token not in caplog.text
