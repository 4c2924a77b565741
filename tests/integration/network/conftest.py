"""Identity and network-api over HTTP, built by ``stratus.units`` as ``stratus up`` builds
them, on SQLite and PostgreSQL; the bus is in-process unless a test asks for another.

``make_cloud(backend=..., bus=..., **network_settings)`` builds one; ``cloud`` is the noop
backend on the memory bus. Service-to-service HTTP (the external events to compute) is
routed into the same app.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.network.service import NetworkRuntime
from tests.integration.clouds import CloudStarter, TestCloud, Who

ADMIN_PASSWORD = "network-tests-admin-pw"
NET = "/network/v2.0"


class NetCloud(TestCloud):
    @property
    def runtime(self) -> NetworkRuntime:
        assert self.stack.network is not None
        return self.stack.network

    async def call(self, method: str, path: str, who: Who | None = None,
                   headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, f"{NET}{path}",
                                         headers={**(who or self.admin).headers,
                                                  **(headers or {})}, **kwargs)

    async def create(self, kind: str, who: Who | None = None, **attrs: Any) -> dict[str, Any]:
        """POST ``/<kind>s`` (``security-group`` → ``security-groups``); asserts a 201."""
        key = kind.replace("-", "_")
        response = await self.call("POST", f"/{kind}s", who, json={key: attrs})
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()[key]
        return result

    async def network_with_subnet(self, who: Who | None = None, cidr: str = "10.1.0.0/24",
                                  **subnet: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        net = await self.create("network", who, name=f"n-{uuid.uuid4().hex[:6]}")
        sub = await self.create("subnet", who, network_id=net["id"], cidr=cidr,
                                ip_version=4, **subnet)
        return net, sub


CloudFactory = Callable[..., Awaitable[NetCloud]]


@pytest.fixture
async def make_cloud(db_url: str, tmp_path: Path) -> AsyncIterator[CloudFactory]:
    starter = CloudStarter(db_url, tmp_path, ADMIN_PASSWORD)

    async def build(backend: str = "noop", bus: str | None = None,
                    units: tuple[str, ...] = ("identity-api", "network-api"),
                    **network: Any) -> NetCloud:
        return await starter.start(NetCloud, units,
                                   bus or f"memory://net-{uuid.uuid4().hex[:8]}",
                                   network={"backend": backend, **network})

    try:
        yield build
    finally:
        await starter.aclose()


@pytest.fixture
async def cloud(make_cloud: CloudFactory) -> NetCloud:
    return await make_cloud()


def assert_neutron_error(response: httpx.Response, status: int, type_name: str) -> str:
    """A Neutron error body of this status and type; returns its message."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"NeutronError"}, body
    error = body["NeutronError"]
    assert set(error) == {"type", "message", "detail"}, error
    assert error["type"] == type_name, error
    assert error["message"], error
    return str(error["message"])
