"""The ``rbd`` store: one RBD image per image in a Ceph pool (default ``images``), as Glance's.

An upload is written to the RBD image ``<image id>.partial``, grown as the data comes and cut
to its size at the end, a chunk (``rbd_store_chunk_size``, 8 MiB: one object) at a time, each
chunk as the pieces it came in (the image service's 4 MiB batches: never joined, which would
copy the data once more), each at its offset; pieces that are all zeros are not written
(thin, as Glance's ``rbd_thin_provisioning``).
``commit`` renames it ``<image id>``, creates the snapshot ``snap`` and protects it: compute
hosts and the volume service clone that snapshot (copy-on-write, no bytes copied). The
location is ``rbd://<fsid>/<pool>/<image id>/snap``, Glance's form, which the image API shows
as ``direct_url`` to services only.

Nobody reads a ``.partial`` image; ``abort`` removes it (and what ``commit`` made), and
``start`` removes those older than ``stale_upload_seconds``, left by a crash. A delete
unprotects the snapshot first: librbd refuses while clones of it exist, which is Glance's 409.

Every librbd call runs on the process's Ceph thread pool (``stratus.core.ceph``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from stratus.core import ceph as core_ceph
from stratus.core.ceph import Ceph, CephUnavailable, RbdLocation
from stratus.core.config import CephSettings
from stratus.core.exceptions import Conflict
from stratus.image.stores.base import (
    READ_CHUNK,
    LocationRefused,
    ObjectMissing,
    ObjectReader,
    RangeReader,
    Store,
    StoreFull,
    StoreWriter,
    UnitBuffer,
)

LOG = logging.getLogger(__name__)

SNAPSHOT = "snap"
PARTIAL = ".partial"
#: Chunk writes of one upload under way at once (each holds one chunk in memory).
WRITE_DEPTH = 3
#: Reads from RBD are at least this large: one request per object is what the OSDs like.
MIN_READ = 4 << 20


_ZEROS = b""


def _zeros(data: bytes) -> bool:
    """Whether ``data`` is all zero bytes: one ``memcmp`` against a block of zeros, which
    stops at the first byte that is not (at once, for most data); ``bytes.count(0)`` read
    every byte (about an eighth of an upload's CPU beside its MD5 and SHA-512)."""
    global _ZEROS
    zeros = _ZEROS
    if len(data) > len(zeros):
        zeros = _ZEROS = bytes(len(data))
    return data == zeros if len(data) == len(zeros) else data == zeros[:len(data)]


class InUse(Conflict):
    """The image's data is cloned by volumes or servers (Glance's ``InUseByStore``)."""


class RbdWriter(StoreWriter):
    def __init__(self, store: RbdStore, image_id: str) -> None:
        self.store = store
        self.image_id = image_id
        self.name = image_id + PARTIAL
        self._image: Any = None
        #: Data received but not written yet, less than a chunk: the pieces as written
        #: (each is written at its offset, so no copy of the data is made).
        self._chunks = UnitBuffer(store.chunk_size)
        self._size = 0  # bytes handed to writes (or skipped as zeros) so far
        self._allocated = 0  # the RBD image's size
        self._committed = False
        self._done = False
        #: Chunk writes under way (at most ``WRITE_DEPTH``): the next chunk is received while
        #: earlier ones are written, and the OSD gets several objects at once.
        self._pending: set[asyncio.Future[None]] = set()
        #: librbd calls run in pool threads, and a cancelled await does not stop one: the
        #: image is closed only once no write uses it (``_inflight``).
        self._cond = threading.Condition()
        self._inflight = 0

    @property
    def ceph(self) -> Ceph:
        return self.store.ceph

    def _create(self) -> None:
        rbd = self.ceph.rbd
        ioctx = self.ceph.ioctx(self.store.pool)
        with contextlib.suppress(rbd.ImageNotFound):
            rbd.RBD().remove(ioctx, self.name)  # an earlier upload's, abandoned
        rbd.RBD().create(ioctx, self.name, 0, order=self.store.order, old_format=False)
        self._image = rbd.Image(ioctx, self.name)

    def _use(self) -> Any:
        with self._cond:
            if self._image is not None:
                self._inflight += 1
            return self._image

    def _release(self) -> None:
        with self._cond:
            self._inflight -= 1
            self._cond.notify_all()

    def _write_at(self, pieces: list[bytes], offset: int, grow_to: int) -> None:
        image = self._use()
        if image is None:  # aborted already: drop the data
            return
        try:
            if grow_to:
                image.resize(grow_to)
            for piece in pieces:
                if not _zeros(piece):  # all zeros: a hole, nothing written
                    image.write(piece, offset)
                offset += len(piece)
        except self.ceph.rbd.NoSpace as exc:
            raise StoreFull("Image storage media is full.") from exc
        finally:
            self._release()

    async def _dispatch(self, pieces: list[bytes]) -> None:
        offset = self._size
        self._size += sum(len(piece) for piece in pieces)
        grow_to = 0
        if self._size > self._allocated:
            # Grow ahead in doubling steps (at least 64 objects): few resizes for any size.
            # The resize goes with the write, before any later one is started.
            grow_to = max(self._size, self._allocated * 2, 64 * self.store.chunk_size)
            self._allocated = grow_to
            await self._drain()
        while len(self._pending) >= WRITE_DEPTH:
            done, _ = await asyncio.wait(self._pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                self._pending.discard(future)
                future.result()
        future = asyncio.ensure_future(self.ceph.run(self._write_at, pieces, offset,
                                                     grow_to))
        self._pending.add(future)
        if grow_to:
            await self._drain()

    async def _drain(self) -> None:
        """Wait for every write under way; the first failure is raised."""
        pending, self._pending = self._pending, set()
        results = await asyncio.gather(*pending, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def write(self, data: bytes) -> None:
        if self._done:
            return
        for chunk in self._chunks.add(data):
            await self._dispatch(chunk)

    def _close_image(self) -> None:
        """Close the image once no write uses it; idempotent."""
        with self._cond:
            image, self._image = self._image, None
            while self._inflight:
                self._cond.wait()
        if image is not None:
            with contextlib.suppress(Exception):
                image.close()

    def _finish(self) -> str:
        rbd = self.ceph.rbd
        image = self._use()
        if image is None:
            raise ObjectMissing(f"The upload of {self.image_id} was aborted.")
        try:
            image.resize(self._size)
            image.flush()
        finally:
            self._release()
        self._close_image()
        ioctx = self.ceph.ioctx(self.store.pool)
        rbd.RBD().rename(ioctx, self.name, self.image_id)
        self._committed = True
        with rbd.Image(ioctx, self.image_id) as renamed:
            renamed.create_snap(SNAPSHOT)
            renamed.protect_snap(SNAPSHOT)
        return str(RbdLocation(self.ceph.fsid, self.store.pool, self.image_id, SNAPSHOT))

    async def commit(self) -> str:
        if self._chunks.buffered:
            await self._dispatch(self._chunks.take())
        await self._drain()
        location = await self.ceph.run(self._finish)
        self._done = True
        return location

    def _abort(self) -> None:
        self._close_image()
        self.store._remove(self.name)
        if self._committed:
            self.store._remove(self.image_id)

    async def abort(self) -> None:
        self._done = True
        self._chunks.take()
        with contextlib.suppress(Exception):
            await self._drain()
        await self.ceph.run(self._abort)


class RbdReader(RangeReader):
    def __init__(self, store: RbdStore, image: Any, size: int, offset: int, length: int,
                 chunk_size: int) -> None:
        self.store = store
        self._image: Any = image
        self.size = size
        self.offset = offset
        self.length = length
        self.chunk_size = max(chunk_size, MIN_READ)
        #: A read under way in a pool thread; closing waits for it.
        self._lock = threading.Lock()

    def _read(self, position: int, count: int) -> bytes:
        with self._lock:
            if self._image is None:
                return b""
            return bytes(self._image.read(position, count))

    async def read_at(self, position: int, count: int) -> bytes:
        data: bytes = await self.store.ceph.run(self._read, position, count)
        return data

    @property
    def is_open(self) -> bool:
        return self._image is not None

    def _close(self) -> None:
        with self._lock:
            image, self._image = self._image, None
            if image is not None:
                image.close()

    async def aclose(self) -> None:
        if self._image is not None:
            await self.store.ceph.run(self._close)


class RbdStore(Store):
    scheme = "rbd"

    def __init__(self, ceph: CephSettings, *, pool: str = "images",
                 chunk_size: int = 8 << 20, stale_upload_seconds: float = 3600) -> None:
        self.settings = ceph
        self.pool = pool
        # RBD objects are 2**order bytes: the chunk size rounded down to a power of two.
        self.order = max(12, chunk_size.bit_length() - 1)
        self.chunk_size = 1 << self.order
        self.stale_upload_seconds = stale_upload_seconds
        self._ceph: Ceph | None = None

    @property
    def ceph(self) -> Ceph:
        if self._ceph is None:
            raise CephUnavailable("Ceph: the rbd image store is not started")
        return self._ceph

    async def start(self) -> None:
        self._ceph = await core_ceph.acquire(self.settings)
        try:
            removed = await self.ceph.run(self.sweep_partial, self.stale_upload_seconds)
        except BaseException:
            await self.stop()
            raise
        if removed:
            LOG.info("removed %d staged upload(s) left over from an earlier run", removed)

    async def stop(self) -> None:
        ceph, self._ceph = self._ceph, None
        if ceph is not None:
            await core_ceph.release(ceph)

    def sweep_partial(self, older_than: float) -> int:
        """Remove ``*.partial`` images created ``older_than`` seconds ago or more (blocking)."""
        rbd = self.ceph.rbd
        ioctx = self.ceph.ioctx(self.pool)
        cutoff = time.time() - older_than
        removed = 0
        for name in rbd.RBD().list(ioctx):
            if not name.endswith(PARTIAL):
                continue
            try:
                with rbd.Image(ioctx, name, read_only=True) as image:
                    created = image.create_timestamp().timestamp()
            except rbd.ImageNotFound:
                continue
            if created <= cutoff:
                try:
                    self._remove(name)
                except rbd.ImageBusy:  # still open: another process's upload under way
                    continue
                removed += 1
        return removed

    def _remove(self, name: str) -> None:
        """Remove the RBD image ``name`` and its snapshots; absent is fine (blocking).
        ``InUse`` when clones of a snapshot exist."""
        rbd = self.ceph.rbd
        ioctx = self.ceph.ioctx(self.pool)
        try:
            with rbd.Image(ioctx, name) as image:
                for snap in list(image.list_snaps()):
                    if image.is_protected_snap(snap["name"]):
                        try:
                            image.unprotect_snap(snap["name"])
                        except rbd.ImageBusy as exc:
                            raise InUse("The image cannot be deleted because it is in use "
                                        "through the backend store outside of Stratus.") from exc
                    image.remove_snap(snap["name"])
        except rbd.ImageNotFound:
            return
        with contextlib.suppress(rbd.ImageNotFound):
            rbd.RBD().remove(ioctx, name)

    def _location(self, location: str) -> RbdLocation:
        parsed = core_ceph.rbd_location(location)
        if parsed is None:
            raise ObjectMissing(f"Location {location!r} is not an rbd://fsid/pool/image/snap.")
        if parsed.pool != self.pool or parsed.fsid != self.ceph.fsid:
            raise ObjectMissing(f"Location {location!r} is not in this cluster's pool "
                                f"{self.pool!r}.")
        return parsed

    async def writer(self, image_id: str) -> StoreWriter:
        writer = RbdWriter(self, image_id)
        await self.ceph.run(writer._create)
        return writer

    async def open(self, location: str, offset: int = 0, length: int | None = None,
                   chunk_size: int = READ_CHUNK) -> ObjectReader:
        parsed = self._location(location)

        def opened() -> tuple[Any, int]:
            rbd = self.ceph.rbd
            try:
                image = rbd.Image(self.ceph.ioctx(self.pool), parsed.image,
                                  snapshot=parsed.snapshot, read_only=True)
            except rbd.ImageNotFound as exc:
                raise ObjectMissing(f"Image data at {location} is missing.") from exc
            return image, int(image.size())

        image, size = await self.ceph.run(opened)
        if length is None:
            length = max(0, size - offset)
        return RbdReader(self, image, size, offset, min(length, max(0, size - offset)),
                         chunk_size)

    async def prepare_delete(self, location: str) -> None:
        parsed = self._location(location)

        def unprotect() -> None:
            rbd = self.ceph.rbd
            try:
                with rbd.Image(self.ceph.ioctx(self.pool), parsed.image) as image:
                    if image.is_protected_snap(parsed.snapshot):
                        image.unprotect_snap(parsed.snapshot)
            except (rbd.ImageNotFound, rbd.ObjectNotFound):
                return
            except rbd.ImageBusy as exc:
                raise InUse("The image cannot be deleted because it is in use through the "
                            "backend store outside of Stratus.") from exc

        await self.ceph.run(unprotect)

    async def undo_prepare_delete(self, location: str) -> None:
        parsed = self._location(location)

        def protect() -> None:
            rbd = self.ceph.rbd
            with (contextlib.suppress(rbd.ImageNotFound, rbd.ObjectNotFound),
                  rbd.Image(self.ceph.ioctx(self.pool), parsed.image) as image):
                if not image.is_protected_snap(parsed.snapshot):
                    image.protect_snap(parsed.snapshot)

        await self.ceph.run(protect)

    async def delete(self, location: str) -> None:
        parsed = self._location(location)
        await self.ceph.run(self._remove, parsed.image)

    async def exists(self, location: str) -> bool:
        parsed = self._location(location)

        def present() -> bool:
            rbd = self.ceph.rbd
            try:
                with rbd.Image(self.ceph.ioctx(self.pool), parsed.image,
                               snapshot=parsed.snapshot, read_only=True):
                    return True
            except rbd.ImageNotFound:
                return False

        return await self.ceph.run(present)

    async def adopt(self, image_id: str, location: str) -> str:
        parsed = core_ceph.rbd_location(location)
        expected = RbdLocation(self.ceph.fsid, self.pool, image_id, SNAPSHOT)
        if parsed != expected:
            raise LocationRefused(f"Location {location!r} is not where this store keeps the "
                                  f"data of image {image_id} ({expected}).")

        def committed() -> bool:
            rbd = self.ceph.rbd
            try:
                with rbd.Image(self.ceph.ioctx(self.pool), image_id, read_only=True) as image:
                    return bool(image.is_protected_snap(SNAPSHOT))
            except (rbd.ImageNotFound, rbd.ObjectNotFound):
                return False

        if not await self.ceph.run(committed):
            raise LocationRefused(f"There is no protected snapshot at {location!r}.")
        return str(expected)

    async def clones(self, location: str) -> list[str]:
        """``pool/image`` of every clone of the location's snapshot."""
        parsed = self._location(location)

        def children() -> list[str]:
            rbd = self.ceph.rbd
            with rbd.Image(self.ceph.ioctx(self.pool), parsed.image,
                           snapshot=parsed.snapshot, read_only=True) as image:
                return [f"{pool}/{name}" for pool, name in image.list_children()]

        return await self.ceph.run(children)
