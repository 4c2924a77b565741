"""Boot from volume: ``block_device_mapping_v2`` with ``source_type=image,
destination_type=volume`` at boot index 0 (what ``server create --boot-from-volume N
--image I`` sends).

compute-api asks the block storage service for the root volume (from the image, of
``volume_size`` GiB) as soon as the instance exists, tagging it with the instance's id
(volume metadata ``stratus:boot_for``, and ``stratus:delete_on_termination``); the compute
host finds it there, waits for it to be ``available`` and attaches it as ``/dev/vda``
(``stratus.compute.agent.volumes``); deleting the server releases it and, if asked, deletes
it. Compute keeps no table of its own for this: the volume service holds it. A server
deleted where no host can do it (never placed, or its host is down) has its volumes
released by compute-api itself (``release_volumes``).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request

from stratus.compute.api.schemas import BlockDeviceMapping, ServerCreate
from stratus.core.clients.base import endpoint
from stratus.core.clients.volume import BOOT_FOR, DELETE_ON_TERMINATION, VolumeClient
from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, StratusError

__all__ = ["BOOT_FOR", "DELETE_ON_TERMINATION", "create_root_volume", "release_volumes",
           "root_mapping"]

LOG = logging.getLogger(__name__)


def is_image_to_volume(bdm: BlockDeviceMapping) -> bool:
    return bdm.source_type == "image" and bdm.destination_type == "volume"


def is_volume(bdm: BlockDeviceMapping) -> bool:
    return bdm.source_type == "volume" and bdm.destination_type in ("volume", None)


def root_mapping(s: ServerCreate) -> BlockDeviceMapping | None:
    """The boot mapping that asks for a root volume (an existing one, or one made from an
    image), validated."""
    for bdm in s.block_device_mapping_v2 or []:
        if str(bdm.boot_index) == "0" and is_volume(bdm):
            if not bdm.uuid:
                raise BadRequest("The boot mapping names no volume (uuid).")
            return bdm
        if str(bdm.boot_index) == "0" and is_image_to_volume(bdm):
            if not bdm.uuid:
                raise BadRequest("The boot mapping names no image (uuid).")
            if bdm.volume_size is None or int(bdm.volume_size) < 1:
                raise BadRequest("Images with destination_type 'volume' need to have a "
                                 "non-zero size specified.")
            return bdm
    return None


async def create_root_volume(request: Request, context: RequestContext,
                             instance_uuid: str, bdm: BlockDeviceMapping) -> dict[str, Any]:
    """Ask the volume service for the instance's root volume (it is made asynchronously;
    the compute host waits for it), or tag the existing one it boots from."""
    client = VolumeClient(request.app.state.image_client.client)
    base = endpoint(context, "block-storage")
    tags = {BOOT_FOR: instance_uuid,
            DELETE_ON_TERMINATION: "true" if bdm.delete_on_termination else "false"}
    if is_volume(bdm):
        assert bdm.uuid is not None
        existing = await client.get_volume(context, base, bdm.uuid)
        if existing["status"] != "available":
            raise BadRequest(f"Volume {bdm.uuid} is {existing['status']}, not available.")
        await client._call(context, base, "POST", f"/volumes/{bdm.uuid}/metadata",
                           {"metadata": tags})
        return existing
    body = await client._call(context, base, "POST", "/volumes", {"volume": {
        "size": int(bdm.volume_size or 1), "imageRef": bdm.uuid, "name": None,
        "metadata": tags}})
    volume: dict[str, Any] = body["volume"]
    return volume


def _block_storage(context: RequestContext) -> str | None:
    try:
        return endpoint(context, "block-storage")
    except StratusError:
        return None  # a cloud without block storage: nothing to release


async def release_volumes(request: Request, context: RequestContext,
                          instance_uuid: str) -> None:
    """Release the volumes of a server deleted without a host: its attachments go, its
    root volume goes if it was to be deleted with it. Logs, never raises (the server is
    already deleted; the volumes stay visible to their owner)."""
    base = _block_storage(context)
    if base is None:
        return
    client = VolumeClient(request.app.state.image_client.client)
    try:
        await client.release_instance(context, base, instance_uuid)
    except Exception:
        LOG.exception("could not release the volumes of deleted server %s", instance_uuid)
