"""An app served by Stratus's own HTTP server (``stratus.cli.main``'s configuration) on a
local port, and answers read off a raw connection: for tests of the HTTP protocol itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.types import ASGIApp

from stratus.cli.main import _Server, http_config
from stratus.core.config import Settings


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[int]:
    """``app`` served on a free port of 127.0.0.1 (the port); stopped on exit."""
    server = _Server(http_config(app, Settings(), 0))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done()
            await asyncio.sleep(0.01)
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.request_stop()
        await task


async def read_answer(reader: asyncio.StreamReader, within: float) -> bytes:
    """The next response on the connection: its status line, a space and its body (by its
    ``Content-Length``); its head must come ``within`` seconds."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head.split(b"\r\n")[0] + b" " + await reader.readexactly(length)
