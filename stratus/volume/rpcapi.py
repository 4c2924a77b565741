"""Typed bus client of the volume-managers (topic ``volume``, one server per host).

volume-api casts the backend work to the manager of the volume's host and calls it for
connection info; the manager (``stratus.volume.manager``) serves the same method names.
"""

from __future__ import annotations

from typing import Any

from stratus.core.bus import RPCAPI
from stratus.core.context import RequestContext

VOLUME_TOPIC = "volume"


class VolumeManagerAPI(RPCAPI):
    TOPIC = VOLUME_TOPIC

    async def create_volume(self, ctx: RequestContext, host: str, volume_id: str) -> None:
        """Make the volume's data (empty, from an image, a snapshot or another volume)."""
        await self.client.prepare(server=host).cast(ctx, "create_volume", volume_id=volume_id)

    async def delete_volume(self, ctx: RequestContext, host: str, volume_id: str) -> None:
        await self.client.prepare(server=host).cast(ctx, "delete_volume", volume_id=volume_id)

    async def extend_volume(self, ctx: RequestContext, host: str, volume_id: str,
                            new_size: int, old_size: int) -> None:
        await self.client.prepare(server=host).cast(
            ctx, "extend_volume", volume_id=volume_id, new_size=new_size, old_size=old_size)

    async def create_snapshot(self, ctx: RequestContext, host: str, snapshot_id: str) -> None:
        await self.client.prepare(server=host).cast(ctx, "create_snapshot",
                                                    snapshot_id=snapshot_id)

    async def delete_snapshot(self, ctx: RequestContext, host: str, snapshot_id: str) -> None:
        await self.client.prepare(server=host).cast(ctx, "delete_snapshot",
                                                    snapshot_id=snapshot_id)

    async def upload_to_image(self, ctx: RequestContext, host: str, volume_id: str,
                              image_id: str, disk_format: str) -> None:
        """Read the ``uploading`` volume out as ``disk_format`` into the queued image
        ``image_id`` (the caller's), then make the volume ``available`` again."""
        await self.client.prepare(server=host).cast(
            ctx, "upload_to_image", volume_id=volume_id, image_id=image_id,
            disk_format=disk_format)

    async def initialize_connection(self, ctx: RequestContext, host: str, volume_id: str,
                                    connector: dict[str, Any]) -> dict[str, Any]:
        """Connection info for a compute host to attach the volume (``{driver_volume_type,
        data}``); fails when the backend no longer holds the volume."""
        return self.result(dict[str, Any], await self.client.prepare(server=host).call(
            ctx, "initialize_connection", volume_id=volume_id, connector=connector))
