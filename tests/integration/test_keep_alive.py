"""Idle client connections outlive the clients' own idle limits (no request lost to a
server closing a connection a client is reusing)."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from stratus.cli.main import _Server, http_config
from stratus.core.config import Settings

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(REQUEST)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head.split(b"\r\n")[0] + b" " + await reader.readexactly(length)


async def test_a_connection_idle_longer_than_clients_keep_theirs_is_still_served() -> None:
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])
    server = _Server(http_config(app, Settings(), 0))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert await _answer(reader, writer) == b"HTTP/1.1 200 OK ok"
            # httpx drops an idle connection after 5 s (uvicorn's default closed it at 5 s
            # too: a client reusing it at that moment lost its request).
            await asyncio.sleep(6)
            assert await _answer(reader, writer) == b"HTTP/1.1 200 OK ok"
        finally:
            writer.close()
    finally:
        server.request_stop()
        await serving
