"""Stratus's HTTP protocol hands a sized request body to the application as the very
``bytes`` objects read from the socket: no copy by the parser (an image upload's largest
cost on the event loop besides reading the socket)."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from stratus.core.web.http_protocol import HttpProtocol


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.max_size = 256 * 1024

    def write(self, data: Any) -> None:
        self.written += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


async def test_a_sized_body_reaches_the_app_as_the_pieces_read() -> None:
    received: list[bytes] = []
    done = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message["body"])
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        done.set()

    config = Config(app, http=HttpProtocol, lifespan="off", log_config=None)
    protocol = HttpProtocol(config=config, server_state=ServerState(), app_state={})
    protocol.connection_made(_Transport())
    pieces = [bytes([n]) * (64 * 1024) for n in range(1, 5)]
    protocol.data_received(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                           % sum(map(len, pieces)))
    for piece in pieces:
        protocol.data_received(piece)
        await asyncio.sleep(0)  # the app takes each before the next comes
        await asyncio.sleep(0)
    await asyncio.wait_for(done.wait(), 10)
    body = [chunk for chunk in received if chunk]
    assert b"".join(body) == b"".join(pieces)
    assert all(any(chunk is piece for piece in pieces) for chunk in body)
