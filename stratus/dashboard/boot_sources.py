"""The launch form's boot source, as Horizon's "Select Boot Source": an image, a bootable
volume, a volume snapshot, or an image copied into a new volume.

Contracts:

* The lists are part of the launch form's one round: available bootable volumes and
  available snapshots (``volumes/detail`` and ``snapshots/detail`` with ``status``), asked
  only when the catalog has block storage (without it the form offers the image alone).
* ``server_source`` turns the form's choice into the create body's part: ``imageRef`` for
  an image; otherwise one ``block_device_mapping_v2`` root (boot index 0, destination
  volume) naming the volume, the snapshot, or the image with the size of the new volume,
  and whether the volume goes with the server. The dashboard checks only what it must to
  build that body (a choice made, a whole size); everything else is the API's to refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stratus.dashboard.forms import items
from stratus.dashboard.web import Page

#: The choices: form value → label.
SOURCES = {"image": "Image", "volume": "Volume", "snapshot": "Volume snapshot",
           "image-volume": "Image, on a new volume"}


class SourceInvalid(ValueError):
    """The form's source cannot make a create body: the message and the field it is about."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass
class BootLists:
    volumes: list[dict[str, Any]]
    snapshots: list[dict[str, Any]]


async def bootable_volumes(page: Page) -> Any:
    if not page.api.offers("block-storage"):
        return None
    return await page.api.get("block-storage", "/volumes/detail",
                              params={"status": "available"})


async def available_snapshots(page: Page) -> Any:
    if not page.api.offers("block-storage"):
        return None
    return await page.api.get("block-storage", "/snapshots/detail",
                              params={"status": "available"})


def boot_lists(volumes: Any, snapshots: Any) -> BootLists:
    def named(row: dict[str, Any]) -> str:
        return str(row.get("name") or row.get("id", ""))

    return BootLists(
        volumes=sorted((v for v in items(volumes, "volumes")
                        if str(v.get("bootable")).lower() == "true"), key=named),
        snapshots=sorted(items(snapshots, "snapshots"), key=named))


def server_source(values: dict[str, Any]) -> dict[str, Any]:
    """The create body's source part for the form's ``values``; ``SourceInvalid`` when the
    choice is missing its pick."""
    source = values.get("source") or "image"
    if source not in SOURCES:
        raise SourceInvalid(f"Choose a boot source: {', '.join(SOURCES.values())}.",
                            "source")
    if source == "image":
        return {"imageRef": values.get("image", "")}
    pick_field = {"volume": "volume", "snapshot": "snapshot", "image-volume": "image"}[source]
    uuid = values.get(pick_field) or ""
    if not uuid:
        raise SourceInvalid(f"Choose the {SOURCES[source].lower()} to boot from.",
                            pick_field)
    root: dict[str, Any] = {
        "boot_index": 0, "uuid": uuid, "destination_type": "volume",
        "source_type": "image" if source == "image-volume" else source,
        "delete_on_termination": values.get("delete_on_termination") == "on"}
    size_text = values.get("volume_size") or ""
    if source == "image-volume" or (source == "snapshot" and size_text):
        try:
            size = int(size_text)
        except ValueError:
            raise SourceInvalid("Volume size: a whole number of GiB.", "volume_size") from None
        if size < 1:
            raise SourceInvalid("Volume size: a whole number of GiB.", "volume_size")
        root["volume_size"] = size
    return {"imageRef": "", "block_device_mapping_v2": [root]}
