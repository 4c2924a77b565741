"""The file backend with the real qemu-img: what every backend promises (see
``stratus.volume.backends.base``)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from stratus.volume.backends.base import BackendError, MissingTool
from stratus.volume.backends.file import PARTIAL_PREFIX, FileBackend

GIB = 1 << 30


def _id() -> str:
    return str(uuid.uuid4())


def _head(path: Path, size: int = 5) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


async def test_create_extend_snapshot_clone_delete(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "volumes")
    vid = _id()
    await backend.create_volume(vid, 1)
    path = backend.volume_path(vid)
    assert path.stat().st_size == GIB
    assert path.stat().st_blocks * 512 < 1 << 20  # sparse: an empty volume costs nothing
    with path.open("r+b") as handle:
        handle.write(b"hello")
    await backend.extend_volume(vid, 2)
    assert path.stat().st_size == 2 * GIB and _head(path) == b"hello"
    sid = _id()
    await backend.create_snapshot(sid, vid)
    with path.open("r+b") as handle:
        handle.write(b"HELLO")
    clone, restored = _id(), _id()
    await backend.clone_volume(clone, 3, vid)
    await backend.create_volume_from_snapshot(restored, 2, sid)
    assert _head(backend.volume_path(clone)) == b"HELLO"
    assert backend.volume_path(clone).stat().st_size == 3 * GIB
    assert _head(backend.volume_path(restored)) == b"hello"
    info = backend.connection_info(vid, {"host": "h"})
    assert info == {"driver_volume_type": "file",
                    "data": {"path": str(path), "format": "raw", "volume_id": vid}}
    for item in (vid, clone, restored):
        await backend.delete_volume(item)
        await backend.delete_volume(item)  # again: nothing to remove is fine
    await backend.delete_snapshot(sid)
    await backend.delete_snapshot(sid)
    assert os.listdir(tmp_path / "volumes") == []


async def test_failures_leave_nothing(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "volumes")
    broken = tmp_path / "broken.qcow2"
    broken.write_bytes(b"not a qcow2 image" + bytes(4096))
    with pytest.raises(BackendError, match="qemu-img convert failed"):
        await backend.create_volume_from_image(_id(), 1, broken, "qcow2")
    with pytest.raises(BackendError, match="does not exist"):
        await backend.create_volume_from_snapshot(_id(), 1, _id())
    with pytest.raises(BackendError, match="does not exist"):
        await backend.clone_volume(_id(), 1, _id())
    with pytest.raises(BackendError, match="does not exist"):
        await backend.extend_volume(_id(), 2)
    with pytest.raises(BackendError, match="Not a valid volume id"):
        await backend.create_volume("../escape", 1)
    failing = FileBackend(tmp_path / "volumes", qemu_img="/bin/false")
    with pytest.raises(BackendError, match="qemu-img convert failed"):
        await failing.create_volume_from_image(_id(), 1, broken, "qcow2")
    assert os.listdir(tmp_path / "volumes") == []
    vid = _id()
    await backend.create_volume(vid, 1)
    with pytest.raises(BackendError, match="already exists"):
        await backend.create_volume(vid, 1)
    # Partial files a crash left are removed at start-up.
    (tmp_path / "volumes" / f"{PARTIAL_PREFIX}volume-{_id()}").write_bytes(b"x")
    assert len(backend.remove_partials()) == 1
    assert os.listdir(tmp_path / "volumes") == [f"volume-{vid}"]


async def test_from_image_keeps_the_volume_size(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "volumes")
    image = tmp_path / "image.raw"
    data = os.urandom(65536)
    image.write_bytes(data)
    vid = _id()
    await backend.create_volume_from_image(vid, 1, image, "raw")
    path = backend.volume_path(vid)
    assert path.stat().st_size == GIB and _head(path, len(data)) == data


async def test_without_qemu_img(tmp_path: Path) -> None:
    """Everything but converting a non-raw image works without qemu-img; that one says
    what is missing and how to add it, before anything is written."""
    backend = FileBackend(tmp_path / "volumes", qemu_img="/nonexistent/qemu-img")
    assert backend.image_formats() == ("raw",)
    assert backend.missing_tools() == ("/nonexistent/qemu-img",)
    vid, clone, sid = _id(), _id(), _id()
    await backend.create_volume(vid, 1)
    path = backend.volume_path(vid)
    assert path.stat().st_size == GIB and path.stat().st_blocks * 512 < 1 << 20
    await backend.extend_volume(vid, 2)
    assert path.stat().st_size == 2 * GIB
    await backend.create_snapshot(sid, vid)
    await backend.clone_volume(clone, 3, vid)
    assert backend.volume_path(clone).stat().st_size == 3 * GIB
    image = tmp_path / "image.raw"
    image.write_bytes(b"raw disk" + bytes(4096))
    from_raw = _id()
    await backend.create_volume_from_image(from_raw, 1, image, "raw")
    assert _head(backend.volume_path(from_raw), 8) == b"raw disk"
    assert backend.volume_path(from_raw).stat().st_size == GIB
    before = sorted(os.listdir(tmp_path / "volumes"))
    with pytest.raises(MissingTool, match=r"qemu-img is not installed; "
                                          r"apt-get install qemu-utils"):
        await backend.create_volume_from_image(_id(), 1, image, "qcow2")
    with pytest.raises(BackendError, match="cannot be written"):
        await backend.create_volume_from_image(_id(), 1, image, "iso")
    assert sorted(os.listdir(tmp_path / "volumes")) == before


def test_with_qemu_img_every_format_is_writable(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path / "volumes")
    assert set(backend.image_formats()) == {"raw", "qcow2", "vmdk", "vdi", "vhd", "vhdx"}
    assert backend.missing_tools() == ()
