"""The client of the image service (Image API v2), for compute-api, compute hosts and the
volume service alike.

``get(ctx, image_id)`` is the API side's check that the caller may boot (or make a volume
from) an image: it must be visible to the caller and ``active``. ``show`` and ``open_data``
are the raw reads the host image cache (``stratus.core.images_cache``) is built on.

Snapshots (compute's ``createImage``, ``shelve``): ``create`` makes a ``queued`` image with
the caller's token (so it counts against the caller's project), ``upload_file`` streams a
local file into it (a compute host, with the user's token and its own service token), or
``add_location`` gives it data the host wrote into the image store's RBD pool itself, and
``delete`` removes it again; a quota refusal of either keeps its type (``PayloadTooLarge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from stratus.core.clients.base import ServiceClient, ServiceTokens
from stratus.core.context import RequestContext
from stratus.core.exceptions import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    StratusError,
)
from stratus.core.web.errors import ErrorStyle

if TYPE_CHECKING:
    from stratus.core.image_caches import ImageRecords

LOG = logging.getLogger(__name__)


class ImageClient(ServiceClient):
    service_type = "image"
    style = ErrorStyle.PLAIN
    service_name = "image service"

    def __init__(self, client: httpx.AsyncClient | None = None,
                 service_auth: ServiceTokens | None = None, *,
                 records: ImageRecords | None = None) -> None:
        super().__init__(client, service_auth)
        #: The records ``get`` answers from while the image service has told of no change
        #: (compute-api's: ``stratus.core.image_caches``); None: always asked.
        self.records = records

    async def get(self, ctx: RequestContext, image_id: str) -> dict[str, Any]:
        """The image as its owner sees it; ``BadRequest`` if the caller cannot use it.

        With ``records``, a record kept for this image and caller answers until the image
        service tells of a change of the image; only a usable image's record is kept."""
        records = self.records
        try:
            endpoint = await self.endpoint(ctx)
            if records is None:
                image = await self.show(endpoint, image_id, self.auth(ctx))
            else:  # a kept record, or one fetch shared by the concurrent misses
                image = await records.fetched(
                    image_id, endpoint, ctx,
                    lambda: self.show(endpoint, image_id, self.auth(ctx)), _usable)
        except (BadRequest, NotFound) as exc:
            raise BadRequest(f"Image {image_id} could not be found.") from exc
        except ServiceUnavailable:
            raise
        except StratusError as exc:  # the caller's request was fine: the callee failed it
            raise ServiceUnavailable(f"The image service answered {exc.status}.") from exc
        if not _usable(image):
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

    # Snapshots ----------------------------------------------------------------------------

    async def create(self, ctx: RequestContext, image: dict[str, Any]) -> dict[str, Any]:
        """``POST /v2/images`` with the caller's token: the new ``queued`` image."""
        endpoint = await self.endpoint(ctx)
        try:
            response = await self.request("POST", f"{endpoint}/v2/images", json=image,
                                          auth=self.auth(ctx))
        except (BadRequest, PayloadTooLarge, ServiceUnavailable):
            raise
        except StratusError as exc:
            if exc.status < 500:
                raise BadRequest(f"The image service refused the image: {exc.message}") \
                    from exc
            raise ServiceUnavailable(f"The image service answered {exc.status}.") from exc
        created: dict[str, Any] = response.json()
        return created

    async def upload_bytes(self, ctx: RequestContext, image_id: str, data: bytes) -> None:
        """``PUT /v2/images/{id}/file`` of a small body (an empty one makes a data-less
        image ``active``, as the record of a volume snapshot is)."""
        endpoint = await self.endpoint(ctx)

        async def body() -> AsyncIterator[bytes]:
            yield data

        await self.request("PUT", f"{endpoint}/v2/images/{image_id}/file", auth=self.auth(ctx),
                           content=body(),
                           headers={"Content-Type": "application/octet-stream",
                                    "Content-Length": str(len(data))})

    async def upload_file(self, ctx: RequestContext, image_id: str, path: Path,
                          chunk_size: int = 4 * 1024 * 1024) -> None:
        """``PUT /v2/images/{id}/file`` from a local file, streamed (never in memory)."""
        endpoint = await self.endpoint(ctx)
        handle = await asyncio.to_thread(path.open, "rb")
        size = os.fstat(handle.fileno()).st_size

        async def chunks() -> AsyncIterator[bytes]:
            while block := await asyncio.to_thread(handle.read, chunk_size):
                yield block

        try:
            await self.request("PUT", f"{endpoint}/v2/images/{image_id}/file",
                               auth=self.auth(ctx), content=chunks(),
                               headers={"Content-Type": "application/octet-stream",
                                        "Content-Length": str(size)})
        finally:
            handle.close()

    async def set_disk_format(self, ctx: RequestContext, image_id: str,
                              disk_format: str) -> None:
        """``PATCH /v2/images/{id}``: the queued image's ``disk_format`` (a snapshot's is
        known once the host has made it: RBD disks are raw)."""
        endpoint = await self.endpoint(ctx)
        await self.request("PATCH", f"{endpoint}/v2/images/{image_id}", auth=self.auth(ctx),
                           json=[{"op": "replace", "path": "/disk_format",
                                  "value": disk_format}],
                           headers={"Content-Type":
                                    "application/openstack-images-v2.1-json-patch"})

    async def add_location(self, ctx: RequestContext, image_id: str, url: str) -> None:
        """``POST /v2/images/{id}/locations`` (Image API 2.17): the queued image takes the
        data its store already holds at ``url`` (a compute host's RBD snapshot)."""
        endpoint = await self.endpoint(ctx)
        await self.request("POST", f"{endpoint}/v2/images/{image_id}/locations",
                           auth=self.auth(ctx), json={"url": url})

    async def delete(self, ctx: RequestContext, image_id: str) -> None:
        """``DELETE /v2/images/{id}``; an image already gone is no error."""
        endpoint = await self.endpoint(ctx)
        try:
            await self.request("DELETE", f"{endpoint}/v2/images/{image_id}",
                               auth=self.auth(ctx))
        except NotFound:
            pass

    async def discard(self, ctx: RequestContext, image_id: str) -> None:
        """Delete an image a failed flow made, logging (not raising) a failure: the flow's
        own error is the one to report."""
        try:
            await self.delete(ctx, image_id)
        except Exception:
            LOG.exception("could not delete image %s", image_id)

    async def list(self, ctx: RequestContext,
                   params: dict[str, str]) -> tuple[list[dict[str, Any]], str | None]:
        """``GET /v2/images`` with ``params`` as the caller; the page and its ``next``."""
        endpoint = await self.endpoint(ctx)
        response = await self.request("GET", f"{endpoint}/v2/images", params=params,
                                      auth=self.auth(ctx))
        body = response.json()
        return list(body.get("images", [])), body.get("next")

    async def find(self, ctx: RequestContext, image_id: str) -> dict[str, Any] | None:
        """The image as the caller sees it, whatever its status; None when it is gone."""
        try:
            return await self.show(await self.endpoint(ctx), image_id, self.auth(ctx))
        except NotFound:
            return None


def _usable(image: dict[str, Any]) -> bool:
    """Whether a boot may use the image as the image service answered it (and so whether
    its record is kept)."""
    return image.get("status") == "active"
