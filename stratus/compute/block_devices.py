"""The block device mappings of a boot request: each one honoured or refused with Nova's 400.

Three steps, each where its facts are:

1. ``plan`` (the API's edge, no I/O): the shape of every mapping (source and destination,
   uuids, sizes, device names), the boot sequence (exactly one boot index 0, or an
   ``imageRef``; the indexes given count 0, 1, 2, ... with no duplicates), and what the root
   disk is: the image, an existing volume, or a volume made from an image or a snapshot.
2. ``devices`` (within the boot transaction, which has the flavor): ephemeral and swap sizes
   against the flavor's ``ephemeral`` (GiB) and ``swap`` (MiB), the flavor's own ephemeral
   and swap disks when the request names none, and a guest device for each disk
   (``/dev/vdb`` and on: explicit names first, then ephemeral, swap and volumes in order).
3. ``check_sources`` (before the transaction, over REST with the caller's token): the
   existing volumes exist and are ``available``, the snapshots exist and are ``available``,
   the images exist; a volume cannot be given to several servers of one request.

Nothing is created until all three have passed. The compute host then makes and attaches
the volumes and the driver the local disks (``stratus.compute.agent.volumes``).
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stratus.compute.objects import BlockDevice, FlavorInfo
from stratus.compute.volume_attach import RootVolume
from stratus.core.clients.image import ImageClient
from stratus.core.clients.volume import VolumeClient
from stratus.core.context import RequestContext
from stratus.core.exceptions import BadRequest, NotFound, StratusError

SOURCE_TYPES = ("image", "volume", "snapshot", "blank")
DESTINATION_TYPES = ("local", "volume")
ROOT_DEVICE = "/dev/vda"

_BOOT_SEQUENCE = ("Block Device Mapping is Invalid: Boot sequence for the instance and "
                  "image/block device mapping combination is not valid.")
_EPHEMERAL_SIZE = ("Ephemeral disks requested are larger than the instance type allows. If "
                   "no size is given in one block device mapping, flavor ephemeral size "
                   "will be used.")
_SWAP_SIZE = "Swap drive requested is larger than instance type allows."
#: ``vdb``, ``/dev/vdb``, ``sdc``, ``xvdd``, ``hde``: the letters after the prefix name the
#: disk; the libvirt driver puts every disk on virtio (``vd``), as Nova's does.
_DEVICE = re.compile(r"^(?:/dev/)?(?:vd|sd|xvd|hd)([a-z]+)$")


def _invalid(details: str) -> BadRequest:
    return BadRequest(f"Block Device Mapping is Invalid: {details}")


@dataclass(frozen=True)
class Mapping:
    """One ``block_device_mapping_v2`` entry, its types already read (``api/schemas``)."""

    source_type: str
    destination_type: str | None = None
    uuid: str | None = None
    #: None for a disk that is not booted from (Nova's null or negative index).
    boot_index: int | None = None
    volume_size: int | None = None
    delete_on_termination: bool | None = None
    device_name: str | None = None
    guest_format: str | None = None
    tag: str | None = None
    volume_type: str | None = None
    no_device: bool = False
    #: Only ``disk`` can be given here (every disk is a virtio disk); None means disk.
    device_type: str | None = None

    @property
    def destination(self) -> str:
        """Nova's default: a volume for volumes and snapshots, local for the others."""
        if self.destination_type:
            return self.destination_type
        return "volume" if self.source_type in ("volume", "snapshot") else "local"


@dataclass(frozen=True)
class BootDisks:
    """What a boot request asks for its disks, its shape checked."""

    #: The image to check and boot from ("" when the root disk is a volume made from no
    #: image); an image→volume root also names its image here, checked like a boot image.
    image_id: str
    root_volume: RootVolume | None
    #: The mappings besides the root disk, in the order given.
    extra: tuple[Mapping, ...] = ()


# 1. Shape ------------------------------------------------------------------------------------

def _check_one(m: Mapping) -> None:
    if m.source_type not in SOURCE_TYPES:
        raise _invalid(f"source_type {m.source_type!r} is not one of "
                       f"{', '.join(SOURCE_TYPES)}.")
    dest = m.destination
    if dest not in DESTINATION_TYPES:
        raise _invalid(f"destination_type {dest!r} is not one of local, volume.")
    if m.source_type in ("volume", "snapshot") and dest == "local":
        raise _invalid(f"Mapping {m.source_type} to local is not supported.")
    if m.source_type in ("image", "volume", "snapshot") and not m.uuid:
        raise _invalid("Missing device UUID.")
    if m.volume_size is not None and m.volume_size < 0:
        raise _invalid("volume_size must not be negative.")
    if m.source_type == "image" and dest == "volume" and not m.volume_size:
        raise BadRequest("Images with destination_type 'volume' need to have a non-zero "
                         "size specified.")
    if m.source_type == "blank" and dest == "volume" and not m.volume_size:
        raise _invalid("Blank volumes (source: 'blank', dest: 'volume') need to have "
                       "non-zero size.")
    if m.source_type == "image" and dest == "local" and m.boot_index != 0:
        raise _invalid("Mapping image to local is not supported.")
    if m.volume_type is not None and dest != "volume":
        raise _invalid("Specifying a volume_type with destination_type=local is not "
                       "supported.")
    if m.guest_format is not None and dest == "volume":
        raise _invalid("guest_format is for local disks only.")
    if m.device_name is not None:
        _device(m.device_name)
    if m.device_type not in (None, "disk"):
        raise _invalid(f"device_type {m.device_type} cannot be given by this cloud; every "
                       "disk is a virtio disk.")


def plan(image_ref: str, mappings: Sequence[Mapping]) -> BootDisks:
    """The boot request's disks, or a 400 saying what is wrong with its mappings."""
    given = [m for m in mappings if not m.no_device]
    for m in given:
        _check_one(m)
    roots = [m for m in given if m.boot_index == 0]
    indexes = sorted(m.boot_index for m in given if m.boot_index is not None)
    if image_ref and not roots:
        indexes = [0, *indexes]  # the image is boot index 0
    if not indexes:
        raise BadRequest("Missing imageRef attribute." if not given else _BOOT_SEQUENCE)
    if indexes != list(range(len(indexes))):
        raise BadRequest(_BOOT_SEQUENCE)
    extra = tuple(m for m in given if m.boot_index != 0)
    if not roots:
        return BootDisks(image_ref, None, extra)
    (root,) = roots
    assert root.uuid is not None or root.source_type == "blank"
    dest = root.destination
    keep = bool(root.delete_on_termination)
    if root.source_type == "image" and dest == "local":
        if image_ref and root.uuid != image_ref:
            raise BadRequest("The boot mapping names another image than imageRef.")
        return BootDisks(image_ref or str(root.uuid), None, extra)
    if root.source_type == "image":
        return BootDisks(str(root.uuid), RootVolume(
            str(root.uuid), from_image=True, size=int(root.volume_size or 1),
            delete_on_termination=keep), extra)
    if root.source_type == "volume":
        return BootDisks("", RootVolume(str(root.uuid), from_image=False,
                                        delete_on_termination=keep), extra)
    if root.source_type == "snapshot":
        return BootDisks("", RootVolume(str(root.uuid), from_image=False, from_snapshot=True,
                                        size=root.volume_size or 0,
                                        delete_on_termination=keep), extra)
    raise BadRequest(_BOOT_SEQUENCE)  # a blank disk cannot be booted from


# 2. Against the flavor ------------------------------------------------------------------------

def _device(name: str) -> str:
    if not name or len(name) > 255:
        raise _invalid("Device name empty or too long.")
    if any(c.isspace() for c in name):
        raise _invalid("Device name contains spaces.")
    found = _DEVICE.match(name)
    if found is None:
        raise _invalid(f"Device name {name} is not a disk device name (vdb, /dev/vdc, ...).")
    return f"/dev/vd{found.group(1)}"


@functools.cache
def _device_names() -> tuple[str, ...]:
    """/dev/vdb .. /dev/vdz, then /dev/vdaa ...: the names the guest sees, in order (made
    once: every boot asks)."""
    letters = string.ascii_lowercase
    singles = [f"/dev/vd{c}" for c in letters[1:]]
    return tuple(singles + [f"/dev/vd{a}{b}" for a in letters for b in letters])


def devices(extra: Sequence[Mapping], flavor: FlavorInfo) -> list[BlockDevice]:
    """The disks besides the root disk, checked against the flavor and named."""
    ephemerals = [m for m in extra if m.source_type == "blank" and m.destination == "local"
                  and m.guest_format != "swap"]
    swaps = [m for m in extra if m.source_type == "blank" and m.destination == "local"
             and m.guest_format == "swap"]
    volumes = [m for m in extra if m.destination == "volume"]
    out: list[tuple[Mapping | None, BlockDevice]] = []
    sizes = [m.volume_size if m.volume_size is not None else flavor.ephemeral
             for m in ephemerals]
    if sum(sizes) > flavor.ephemeral or any(size < 1 for size in sizes):
        raise BadRequest(_EPHEMERAL_SIZE)
    for m, size in zip(ephemerals, sizes, strict=True):
        out.append((m, BlockDevice(kind="ephemeral", size=size, device_name="",
                                   delete_on_termination=True,
                                   guest_format=m.guest_format, tag=m.tag)))
    if not ephemerals and flavor.ephemeral:
        out.append((None, BlockDevice(kind="ephemeral", size=flavor.ephemeral,
                                      device_name="", delete_on_termination=True)))
    if len(swaps) > 1:
        raise _invalid("More than one swap drive requested.")
    for m in swaps:
        size = m.volume_size if m.volume_size is not None else flavor.swap
        if size > flavor.swap or size < 1:
            raise BadRequest(_SWAP_SIZE)
        out.append((m, BlockDevice(kind="swap", size=size, device_name="",
                                   delete_on_termination=True, guest_format="swap",
                                   tag=m.tag)))
    if not swaps and flavor.swap:
        out.append((None, BlockDevice(kind="swap", size=flavor.swap, device_name="",
                                      delete_on_termination=True, guest_format="swap")))
    for m in volumes:
        out.append((m, BlockDevice(
            kind="volume", source_type=m.source_type, source_id=m.uuid, size=m.volume_size,
            device_name="", boot_index=m.boot_index,
            delete_on_termination=bool(m.delete_on_termination), tag=m.tag,
            volume_type=m.volume_type)))
    return _name(out)


def _name(disks: list[tuple[Mapping | None, BlockDevice]]) -> list[BlockDevice]:
    taken = {ROOT_DEVICE}
    for m, _ in disks:
        if m is not None and m.device_name is not None:
            name = _device(m.device_name)
            if name in taken:
                raise _invalid(f"The device name {name} is used twice or is the root disk's.")
            taken.add(name)
    free = (n for n in _device_names() if n not in taken)
    named = []
    for m, disk in disks:
        if m is not None and m.device_name is not None:
            named.append(replace_device(disk, _device(m.device_name)))
        else:
            named.append(replace_device(disk, next(free)))
    return named


def replace_device(disk: BlockDevice, name: str) -> BlockDevice:
    return disk.model_copy(update={"device_name": name})


# 3. The sources, over REST ------------------------------------------------------------------

async def check_sources(volumes: VolumeClient, images: ImageClient, context: RequestContext,
                        base: str | None, disks: BootDisks, count: int) -> None:
    """The volumes, snapshots and images the mappings name exist and can be used (400
    otherwise); ``base`` is the project's block storage URL (None: the cloud has none)."""
    wanted: list[tuple[str, str]] = [(m.source_type, str(m.uuid)) for m in disks.extra
                                     if m.source_type in ("volume", "snapshot", "image")
                                     and m.destination == "volume"]
    root = disks.root_volume
    if root is not None and not root.from_image:
        wanted.append(("snapshot" if root.from_snapshot else "volume", root.source_id))
    if any(kind == "volume" for kind, _ in wanted) and count > 1:
        raise BadRequest("Cannot attach one or more volumes to multiple instances.")
    if (wanted or any(m.destination == "volume" for m in disks.extra)) and base is None:
        raise BadRequest("Block Device Mapping is Invalid: this cloud has no block storage "
                         "service.")
    seen: set[str] = set()
    for kind, ident in wanted:
        if ident in seen and kind == "volume":
            raise _invalid(f"Volume {ident} is mapped twice.")
        seen.add(ident)
        if kind == "image":
            try:
                await images.get(context, ident)
            except NotFound as exc:
                raise _invalid(f"failed to get image {ident}.") from exc
            continue
        assert base is not None
        try:
            found: dict[str, Any] = (await volumes.get_volume(context, base, ident)
                                     if kind == "volume"
                                     else await volumes.get_snapshot(context, base, ident))
        except NotFound as exc:
            raise _invalid(f"failed to get {kind} {ident}.") from exc
        except StratusError as exc:
            raise _invalid(f"failed to get {kind} {ident}: {exc.message}") from exc
        if found.get("status") != "available":
            raise BadRequest(f"Invalid {kind}: {kind} {ident} is {found.get('status')}, "
                             "not available.")

