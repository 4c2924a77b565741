"""Issue 14's consoles on a real guest: ``openstack console url show`` gives a noVNC URL
whose websocket, through the ``console-proxy`` unit, speaks the guest's VNC (QEMU's RFB
handshake), once per token; the serial URL's websocket reaches the guest's serial port
(the guest's tty echoes what is typed)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import websockets

from tests.e2e.cloud import Cloud
from tests.e2e.test_realvm_cli import cloud  # noqa: F401 - the fixture: stratus up, libvirt

pytestmark = [pytest.mark.e2e, pytest.mark.realvm, pytest.mark.serial]


def _vnc_websocket(url: str) -> str:
    """noVNC's page URL → the websocket it opens (``ws://<same host>/<path>``)."""
    parts = urlsplit(url)
    assert parts.path.endswith("/console/vnc_lite.html"), url
    (path,) = parse_qs(parts.query)["path"]
    return f"ws://{parts.netloc}/{path.lstrip('/')}"


async def _vnc_handshake(ws_url: str) -> bytes:
    async with websockets.connect(ws_url, subprotocols=["binary"],  # type: ignore[list-item]
                                  open_timeout=10) as ws:
        assert ws.subprotocol == "binary"
        greeting = await asyncio.wait_for(ws.recv(), 15)
        assert isinstance(greeting, bytes)
        return greeting


async def _refused(ws_url: str) -> int:
    with pytest.raises(websockets.InvalidStatus) as caught:
        async with websockets.connect(ws_url, open_timeout=10):
            pass
    return caught.value.response.status_code


async def _serial_echo(ws_url: str, word: bytes) -> bytes:
    seen = b""
    async with websockets.connect(ws_url, open_timeout=10) as ws:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and word not in seen:
            await ws.send(word + b"\r")
            try:
                while word not in seen:
                    chunk = await asyncio.wait_for(ws.recv(), 3)
                    seen += chunk if isinstance(chunk, bytes) else chunk.encode()
            except TimeoutError:
                continue
    return seen


def test_console_url_opens_the_guest_vnc_and_serial_once(cloud: Cloud) -> None:  # noqa: F811
    server = cloud.openstack_json("server", "create", "--image", "stratus-test-guest",
                                  "--flavor", "m1.tiny", "--nic", "none", "--wait", "vm1")
    assert server["status"] == "ACTIVE"

    console = cloud.openstack_json("console", "url", "show", "vm1")
    assert (console["protocol"], console["type"]) == ("vnc", "novnc")
    assert console["url"].startswith(f"{cloud.url}/console/vnc_lite.html?path=")
    ws_url = _vnc_websocket(console["url"])
    greeting = asyncio.run(_vnc_handshake(ws_url))
    assert greeting.startswith(b"RFB 003.00") and greeting.endswith(b"\n"), greeting
    assert asyncio.run(_refused(ws_url)) == 403  # one connection per token

    serial = cloud.openstack_json("console", "url", "show", "--serial", "vm1")
    assert (serial["protocol"], serial["type"]) == ("serial", "serial")
    assert serial["url"].startswith(f"ws://{urlsplit(cloud.url).netloc}/console/serial?token=")
    echoed = asyncio.run(_serial_echo(serial["url"], b"stratus-console-echo"))
    assert b"stratus-console-echo" in echoed, echoed[-500:]
    assert asyncio.run(_refused(serial["url"])) == 403

    # The tokens opened consoles; none of them reached the cloud's log.
    for url in (console["url"], serial["url"]):
        token = parse_qs(urlsplit(ws_url if url == console["url"] else url).query)["token"][0]
        assert len(token) >= 32 and token not in cloud.log()

    cloud.openstack("server", "delete", "--wait", "vm1")
