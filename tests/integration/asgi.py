"""In-process HTTP between the units of a test cloud."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from stratus.core.config import Settings
from stratus.stack import Stack
from stratus.units import root_app, run_bootstrap


class LateASGITransport(httpx.AsyncBaseTransport):
    """Routes service-to-service HTTP into the app, which exists only after the units."""

    def __init__(self) -> None:
        self.app: Any = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)


@contextlib.asynccontextmanager
async def served_stack(settings: Settings,
                       units: Sequence[str]) -> AsyncIterator[tuple[Stack, Any]]:
    """The stack of ``units`` bootstrapped, and its root ASGI app, through which its services
    reach each other; the stack closed on leaving (whatever the bootstrap got to)."""
    transport = LateASGITransport()
    stack = Stack(settings, http_transport=transport)
    try:
        await run_bootstrap(stack)
        app = await root_app(stack, list(units))
        transport.app = app
        yield stack, app
    finally:
        await stack.aclose()


async def admin_token(client: httpx.AsyncClient, password: str) -> tuple[str, str]:
    """A token of the bootstrap admin scoped to the admin project, and that project's id,
    asked of the identity API ``client`` reaches."""
    response = await client.post("/identity/v3/auth/tokens", json={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"], str(response.json()["token"]["project"]["id"])
