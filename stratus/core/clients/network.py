"""The client of the network service (Network v2.0), as compute hosts use it.

Requests carry the user's token, so the user's quotas, ownership and isolation hold, plus
the host's service token (``X-Service-Token``), which admits the binding attributes the user
alone may not set and keeps a long build going after the user's token expires. Without a
user token (a host acting on its own) the service token acts alone, as an admin would.

Each method is one REST call under ``base`` (``find_base()``: the catalog URL plus
``/v2.0``); a refusal is raised as its ``StratusError`` type with Neutron's message.
"""

from __future__ import annotations

from typing import Any

from stratus.core.clients.base import ServiceClient
from stratus.core.context import RequestContext
from stratus.core.web.errors import ErrorStyle


class NetworkClient(ServiceClient):
    service_type = "network"
    style = ErrorStyle.NETWORK
    service_name = "network service"

    async def find_base(self, ctx: RequestContext | None = None) -> str | None:
        """The Network v2.0 root, or None when the cloud has no network service."""
        url = await self.find_endpoint(ctx)
        return None if url is None else f"{url}/v2.0"

    async def _call(self, ctx: RequestContext, method: str, url: str,
                    body: dict[str, Any] | None = None,
                    params: dict[str, Any] | None = None) -> Any:
        response = await self.request(method, url, json=body, params=params,
                                      auth=self.auth(ctx))
        return response.json() if response.content else None

    async def list_networks(self, ctx: RequestContext, base: str,
                            fields: list[str]) -> list[dict[str, Any]]:
        body = await self._call(ctx, "GET", f"{base}/networks", params={"fields": fields})
        return list(body["networks"])

    async def show_network(self, ctx: RequestContext, base: str,
                           network_id: str) -> dict[str, Any]:
        body = await self._call(ctx, "GET", f"{base}/networks/{network_id}")
        network: dict[str, Any] = body["network"]
        return network

    async def list_subnets(self, ctx: RequestContext, base: str,
                           ids: list[str]) -> list[dict[str, Any]]:
        body = await self._call(ctx, "GET", f"{base}/subnets", params={"id": ids})
        return list(body["subnets"])

    async def list_security_groups(self, ctx: RequestContext, base: str,
                                   fields: list[str]) -> list[dict[str, Any]]:
        body = await self._call(ctx, "GET", f"{base}/security-groups",
                                params={"fields": fields})
        return list(body["security_groups"])

    async def find_security_groups(self, ctx: RequestContext, base: str,
                                   params: dict[str, Any]) -> list[dict[str, Any]]:
        """The security groups matching ``params`` (Neutron's filters and ``fields``)."""
        body = await self._call(ctx, "GET", f"{base}/security-groups", params=params)
        return list(body["security_groups"])

    async def list_ports(self, ctx: RequestContext, base: str,
                         params: dict[str, Any]) -> list[dict[str, Any]]:
        body = await self._call(ctx, "GET", f"{base}/ports", params=params)
        return list(body["ports"])

    async def list_floatingips(self, ctx: RequestContext, base: str,
                               params: dict[str, Any]) -> list[dict[str, Any]]:
        body = await self._call(ctx, "GET", f"{base}/floatingips", params=params)
        return list(body["floatingips"])

    async def show_port(self, ctx: RequestContext, base: str, port_id: str) -> dict[str, Any]:
        body = await self._call(ctx, "GET", f"{base}/ports/{port_id}")
        port: dict[str, Any] = body["port"]
        return port

    async def create_port(self, ctx: RequestContext, base: str,
                          port: dict[str, Any]) -> dict[str, Any]:
        body = await self._call(ctx, "POST", f"{base}/ports", {"port": port})
        created: dict[str, Any] = body["port"]
        return created

    async def update_port(self, ctx: RequestContext, base: str, port_id: str,
                          port: dict[str, Any]) -> dict[str, Any]:
        body = await self._call(ctx, "PUT", f"{base}/ports/{port_id}", {"port": port})
        updated: dict[str, Any] = body["port"]
        return updated

    async def delete_port(self, ctx: RequestContext, base: str, port_id: str) -> None:
        await self._call(ctx, "DELETE", f"{base}/ports/{port_id}")
