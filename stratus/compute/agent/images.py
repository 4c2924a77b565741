"""The compute host's way to a local copy of an instance's image.

``HostImages.local_image(ctx, image_id)`` finds the image service in the catalog (through the
host's service credentials), then fetches into the host's ``ImageCache`` with the user's
token (so nobody boots an image they cannot see) plus the service token (so a build that
waited long still gets it). The cache is made on first use, once the endpoint is known.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from stratus.compute.agent.image_cache import CachedImage, ImageCache
from stratus.core.context import RequestContext
from stratus.core.service_auth import ServiceAuth


class HostImages:
    def __init__(self, directory: Path, service_auth: ServiceAuth,
                 client: httpx.AsyncClient) -> None:
        self.directory = directory
        self.service_auth = service_auth
        self.client = client
        self._cache: ImageCache | None = None
        self._lock = asyncio.Lock()

    async def cache(self) -> ImageCache:
        async with self._lock:
            if self._cache is None:
                endpoint = await self.service_auth.endpoint("image")
                self._cache = ImageCache(self.directory, endpoint, client=self.client)
            return self._cache

    async def local_image(self, ctx: RequestContext, image_id: str) -> CachedImage:
        cache = await self.cache()
        service_token = await self.service_auth.token()
        return await cache.fetch_image(image_id, ctx.auth_token or service_token,
                                       service_token=service_token)
