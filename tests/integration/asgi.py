"""In-process HTTP between the units of a test cloud."""

from __future__ import annotations

from typing import Any

import httpx


class LateASGITransport(httpx.AsyncBaseTransport):
    """Routes service-to-service HTTP into the app, which exists only after the units."""

    def __init__(self) -> None:
        self.app: Any = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)
