"""Service-to-service HTTP: a safe request is sent again when its pooled connection was
closed under it; an unsafe one never is."""

from __future__ import annotations

import httpx
import pytest

from stratus.core.http import service_http_client


class ClosesOnce(httpx.AsyncBaseTransport):
    """Fails the first request as a keep-alive connection the server just closed would."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request.method)
        if len(self.sent) == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json={"ok": True})


async def test_a_get_is_sent_again_on_a_stale_connection() -> None:
    transport = ClosesOnce()
    async with service_http_client(transport=transport) as client:
        response = await client.get("http://service/v2/images/x")
    assert response.status_code == 200
    assert transport.sent == ["GET", "GET"]


async def test_a_post_is_not_sent_twice() -> None:
    transport = ClosesOnce()
    async with service_http_client(transport=transport) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("http://service/v2.0/ports", json={})
    assert transport.sent == ["POST"]
