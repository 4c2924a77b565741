"""compute-api's client of the image service: REST, found through the caller's catalog."""

from __future__ import annotations

from typing import Any

import httpx

from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, ServiceUnavailable


def endpoint(ctx: RequestContext, service_type: str, interface: str = "public") -> str:
    """The URL of ``service_type`` in the caller's token catalog."""
    for entry in (ctx.token or {}).get("catalog") or []:
        if entry.get("type") != service_type:
            continue
        for ep in entry.get("endpoints") or []:
            if ep.get("interface") == interface:
                return str(ep["url"]).rstrip("/")
    raise ServiceUnavailable(f"No {service_type} endpoint in the service catalog.")


class ImageClient:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def get(self, ctx: RequestContext, image_id: str) -> dict[str, Any]:
        """The image as its owner sees it; ``BadRequest`` if the caller cannot use it."""
        url = f"{endpoint(ctx, 'image')}/v2/images/{image_id}"
        headers = {"X-Auth-Token": ctx.auth_token or ""}
        if ctx.service_token:
            headers["X-Service-Token"] = ctx.service_token
        try:
            response = await self.client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable("The image service is unreachable.") from exc
        if response.status_code in (400, 404):
            raise BadRequest(f"Image {image_id} could not be found.")
        if response.status_code != 200:
            raise ServiceUnavailable(f"The image service answered {response.status_code}.")
        image: dict[str, Any] = response.json()
        if image.get("status") != "active":
            raise BadRequest(f"Image {image_id} is not active.")
        return image
