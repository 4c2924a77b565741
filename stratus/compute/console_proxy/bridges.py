"""Byte pumps between an accepted websocket and a guest's console on this host.

Each runs until either side closes; binary frames carry the bytes both ways (noVNC speaks
RFB in binary frames; a serial client may send text frames, taken as UTF-8).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

#: The most read from a console at once.
CHUNK = 65536


async def _from_client(websocket: WebSocket, write: Callable[[bytes], Awaitable[None]]) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is None:
            data = (message.get("text") or "").encode()
        if data:
            await write(data)


async def _run_both(*pumps: Awaitable[None]) -> None:
    """Run the pumps until the first one ends (a side closed), then stop the other."""
    tasks = [asyncio.ensure_future(p) for p in pumps]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, OSError,
                                     RuntimeError):
                await task


async def bridge_tcp(websocket: WebSocket, host: str, port: int) -> None:
    """Bridge the websocket and ``host:port`` (a guest's VNC server)."""
    reader, writer = await asyncio.open_connection(host, port)

    async def to_console(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def to_client() -> None:
        while data := await reader.read(CHUNK):
            await websocket.send_bytes(data)

    try:
        await _run_both(_from_client(websocket, to_console), to_client())
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def bridge_pty(websocket: WebSocket, path: str) -> None:
    """Bridge the websocket and the pty at ``path`` (a guest's serial port), in raw mode so
    bytes pass as they are."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    loop = asyncio.get_running_loop()
    incoming: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            incoming.put_nowait(os.read(fd, CHUNK))
        except BlockingIOError:
            return
        except OSError:  # the guest went away (EIO on a pty whose other side closed)
            loop.remove_reader(fd)
            incoming.put_nowait(b"")

    async def to_console(data: bytes) -> None:
        while data:
            try:
                data = data[os.write(fd, data):]
            except BlockingIOError:
                await asyncio.sleep(0.01)

    async def to_client() -> None:
        while data := await incoming.get():
            await websocket.send_bytes(data)

    try:
        tty.setraw(fd, termios.TCSANOW)
        loop.add_reader(fd, readable)
        await _run_both(_from_client(websocket, to_console), to_client())
    finally:
        loop.remove_reader(fd)
        os.close(fd)
