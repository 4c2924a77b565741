"""Idle client connections outlive the clients' own idle limits (no request lost to a
server closing a connection a client is reusing)."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.integration.http_server import read_answer, serving

REQUEST = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(REQUEST)
    await writer.drain()
    return await read_answer(reader, 10)


async def test_a_connection_idle_longer_than_clients_keep_theirs_is_still_served() -> None:
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])
    async with serving(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert await _answer(reader, writer) == b"HTTP/1.1 200 OK ok"
            # httpx drops an idle connection after 5 s (uvicorn's default closed it at 5 s
            # too: a client reusing it at that moment lost its request).
            await asyncio.sleep(6)
            assert await _answer(reader, writer) == b"HTTP/1.1 200 OK ok"
        finally:
            writer.close()
