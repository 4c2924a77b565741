"""POSTs handed straight to an ASGI app, as an HTTP server would hand them: the profiles'
driver, so that no HTTP client's calls are counted with the API's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def post_many(app: Any, path: str, headers: dict[str, str], body_of: Callable[[int], bytes],
                    count: int, in_flight: int, expect: int) -> None:
    """``count`` ``POST path`` requests, ``in_flight`` at most at once, the ``index``-th with
    the body ``body_of(index)``. Raises ``RuntimeError`` on the first response whose status
    is not ``expect``."""
    gate = asyncio.Semaphore(in_flight)
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()] + [
        (b"host", b"bench"), (b"content-type", b"application/json")]

    async def one(index: int) -> None:
        body = body_of(index)
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "root_path": "", "query_string": b"", "client": ("127.0.0.1", 40000),
                 "server": ("bench", 80),
                 "headers": [*raw_headers, (b"content-length", str(len(body)).encode())]}
        sent = False
        status: list[int] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # a client that stays connected
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        async with gate:
            await app(scope, receive, send)
        if status != [expect]:
            raise RuntimeError(f"POST {path}: {status}")

    await asyncio.gather(*(one(i) for i in range(count)))
