"""Volume → image (``os-volume_upload_image``): what is asked, and the image it makes.

volume-api checks the request, moves the volume ``available`` → ``uploading``, makes the
queued image with the caller's token (so it is the caller's, counted against the caller's
image quota) and casts the upload to the volume's host (``VolumeRuntime.upload_to_image``);
the host reads the volume out in the image's disk format and streams it in
(``VolumeManager.upload_to_image``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stratus.volume.models import Volume

#: Keys of a volume's image metadata that describe the image it came from, not a property
#: to carry into a new image (the image service sets or refuses them).
NOT_CARRIED = frozenset({
    "image_id", "image_name", "name", "id", "checksum", "size", "virtual_size", "status",
    "container_format", "disk_format", "min_disk", "min_ram", "owner", "visibility",
    "protected", "os_hidden", "os_hash_algo", "os_hash_value", "direct_url", "locations",
    "created_at", "updated_at", "tags", "file", "schema", "self", "stores",
})


@dataclass(frozen=True)
class ImageUpload:
    """An upload request, validated for shape by the API."""

    image_name: str
    disk_format: str = "raw"
    container_format: str = "bare"
    visibility: str = "private"
    protected: bool = False
    force: bool = False


def image_body(volume: Volume, upload: ImageUpload) -> dict[str, Any]:
    """The ``POST /v2/images`` body of the new image: the requested name, formats,
    visibility and protection, and the properties the volume's own image had (so an image
    of a bootable volume boots as its source did)."""
    body: dict[str, Any] = {k: str(v) for k, v in (volume.image_metadata or {}).items()
                            if k not in NOT_CARRIED}
    body.update({"name": upload.image_name, "disk_format": upload.disk_format,
                 "container_format": upload.container_format,
                 "visibility": upload.visibility, "protected": upload.protected})
    return body
