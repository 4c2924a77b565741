"""The client of the image service (Image API v2), for compute-api, compute hosts and the
volume service alike.

``get(ctx, image_id)`` is the API side's check that the caller may boot (or make a volume
from) an image: it must be visible to the caller and ``active``. ``show`` and ``open_data``
are the raw reads the host image cache (``stratus.core.images_cache``) is built on.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from stratus.core.clients.base import ServiceClient
from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, NotFound, ServiceUnavailable, StratusError
from stratus.core.web.errors import ErrorStyle


class ImageClient(ServiceClient):
    service_type = "image"
    style = ErrorStyle.PLAIN
    service_name = "image service"

    async def get(self, ctx: RequestContext, image_id: str) -> dict[str, Any]:
        """The image as its owner sees it; ``BadRequest`` if the caller cannot use it."""
        try:
            image = await self.show(await self.endpoint(ctx), image_id, self.auth(ctx))
        except (BadRequest, NotFound) as exc:
            raise BadRequest(f"Image {image_id} could not be found.") from exc
        except ServiceUnavailable:
            raise
        except StratusError as exc:  # the caller's request was fine: the callee failed it
            raise ServiceUnavailable(f"The image service answered {exc.status}.") from exc
        if image.get("status") != "active":
            raise BadRequest(f"Image {image_id} is not active.")
        return image

    async def show(self, endpoint: str, image_id: str, auth: httpx.Auth) -> dict[str, Any]:
        """``GET /v2/images/{id}`` at ``endpoint`` (the image service's catalog URL)."""
        response = await self.request("GET", f"{endpoint}/v2/images/{image_id}", auth=auth)
        image: dict[str, Any] = response.json()
        return image

    @contextlib.asynccontextmanager
    async def open_data(self, endpoint: str, image_id: str,
                        auth: httpx.Auth) -> AsyncIterator[httpx.Response]:
        """``GET /v2/images/{id}/file``, the body left to stream."""
        async with self.stream("GET", f"{endpoint}/v2/images/{image_id}/file",
                               auth=auth) as response:
            yield response
