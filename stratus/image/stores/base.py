"""The store interface: where image data lives.

A store keeps each image's bytes as one object named by an opaque *location* string the store
hands out. Writing is staged: ``Store.writer()`` starts a temporary object that nobody can read,
``StoreWriter.commit()`` makes it visible in one atomic step and returns its location, and
``StoreWriter.abort()`` removes every trace of it. This maps onto each backend's own atomic
publish:

* ``file``: a temporary file under the store's staging directory, ``fsync`` then ``rename``;
* S3-compatible object storage: a multipart upload, ``CompleteMultipartUpload`` /
  ``AbortMultipartUpload`` (an object is invisible until completed);
* Ceph RBD: an RBD image under a temporary name, then rename and snapshot (as Glance does).

Reading is ranged (``open(location, offset, length)``) so the API can answer ``Range``
requests without reading what it does not send.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

from stratus.core.exceptions import BadRequest, NotFound, PayloadTooLarge

#: Bytes per read when streaming an object out.
READ_CHUNK = 1024 * 1024


class StoreFull(PayloadTooLarge):
    """The store has no room left for the data."""


class ObjectMissing(NotFound):
    """The location names no object (deleted behind our back, or never committed)."""


class LocationRefused(BadRequest):
    """A location offered for an image is not one this store would have given it."""


class UnitBuffer:
    """Groups the pieces of an upload, as they are written, into units of ``size`` bytes (an
    RBD chunk, an S3 part), each a list of pieces: never joined, since each copy of the data
    costs CPU (about a third of its MD5's). Only a piece across a unit's end is cut in two
    (that piece is copied); pieces that fill units exactly (the image service's 4 MiB
    batches into 8 MiB units) are kept as they are."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a unit holds at least one byte")
        self.size = size
        self._pieces: list[bytes] = []
        #: Bytes in ``_pieces``: always less than ``size`` between calls.
        self.buffered = 0

    def add(self, data: bytes) -> Iterator[list[bytes]]:
        """Take ``data``; yields each unit it fills, in order. A unit is cut only when the
        one before it has been taken (a write of many units holds one cut at a time), and
        what is left of ``data`` once the caller stops iterating is dropped (it stops on a
        failure, and the upload is aborted)."""
        offset = 0
        while offset < len(data):
            room = self.size - self.buffered
            piece = data if not offset and len(data) <= room else data[offset:offset + room]
            offset += len(piece)
            self._pieces.append(piece)
            self.buffered += len(piece)
            if self.buffered == self.size:
                yield self.take()

    def take(self) -> list[bytes]:
        """The pieces of the unit being filled (short: the upload's last), emptied."""
        pieces, self._pieces = self._pieces, []
        self.buffered = 0
        return pieces


class StoreWriter(abc.ABC):
    """One staged object being written. Not visible to readers until ``commit``."""

    @property
    def local_path(self) -> Path | None:
        """A local file holding the data written so far, if the store has one (``file``).

        Inspection (``qemu-img info``) runs on it before commit; remote stores answer None.
        """
        return None

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Append ``data``; raises ``StoreFull`` when the store has no room."""

    async def write_chunks(self, chunks: Sequence[bytes]) -> None:
        """Append ``chunks`` in order, as ``write`` of them joined would (which this does
        unless the store can take them apart without the copy)."""
        await self.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def thread_writer(self) -> Callable[[memoryview], None] | None:
        """A function appending data from a worker thread (one thread at a time, in order;
        the view is the caller's again once it returns), for a writer that can (the file
        store); None: data only through ``write``/``write_chunks`` on the event loop."""
        return None

    async def written(self) -> None:  # noqa: B027 - optional hook
        """All data has been written: make it readable at ``local_path`` for inspection."""

    @abc.abstractmethod
    async def commit(self) -> str:
        """Make the object durable and visible, atomically; returns its location."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Remove the staged object and anything committed by this writer; idempotent."""


class ObjectReader(abc.ABC):
    """An opened object (or a range of it), read in chunks."""

    #: Size of the whole object in bytes.
    size: int

    @abc.abstractmethod
    def chunks(self) -> AsyncIterator[bytes]:
        """The requested range, in order."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release what the reader holds; idempotent."""

    async def sendfile_range(self) -> tuple[int, int, int] | None:
        """(descriptor, offset, length) of the requested range in a local file, for
        ``os.sendfile`` instead of ``chunks`` (the file store); None: only ``chunks``. The
        descriptor stays the reader's (``aclose`` closes it)."""
        return None


class RangeReader(ObjectReader):
    """An object read from ``offset`` for ``length`` bytes, ``chunk_size`` at a time: a
    store's reader says how to read one piece (off the event loop) and whether it is still
    open. A piece that comes back empty while open means the object ended early
    (``OSError``); closed (``aclose`` meanwhile) the chunks simply end."""

    offset: int
    length: int
    chunk_size: int

    @abc.abstractmethod
    async def read_at(self, position: int, count: int) -> bytes:
        """Up to ``count`` bytes at ``position``; empty once closed."""

    @property
    @abc.abstractmethod
    def is_open(self) -> bool:
        """Whether the reader still holds its object."""

    async def chunks(self) -> AsyncIterator[bytes]:
        position, remaining = self.offset, self.length
        try:
            while remaining > 0:
                data = await self.read_at(position, min(self.chunk_size, remaining))
                if not data:
                    if not self.is_open:
                        return
                    raise OSError(f"object ended {remaining} bytes early")
                position += len(data)
                remaining -= len(data)
                yield data
        finally:
            await self.aclose()


class Store(abc.ABC):
    #: Scheme of the locations this store hands out (``file``, ``s3``, ``rbd``).
    scheme: str

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect or create what the store needs; remove staged data left by a crash."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abc.abstractmethod
    async def writer(self, image_id: str) -> StoreWriter:
        """Begin a staged object for ``image_id``."""

    @abc.abstractmethod
    async def open(self, location: str, offset: int = 0, length: int | None = None,
                   chunk_size: int = READ_CHUNK) -> ObjectReader:
        """Open ``length`` bytes (all to the end when None) from ``offset``.

        Raises ``ObjectMissing`` when there is no such object.
        """

    async def prepare_delete(self, location: str) -> None:  # noqa: B027 - optional hook
        """Called inside the image's deletion transaction, before its commit: raise a
        ``Conflict`` when the object cannot go (``rbd``: clones of it exist) so the image
        stays; ``undo_prepare_delete`` follows when the transaction fails."""

    async def undo_prepare_delete(self, location: str) -> None:  # noqa: B027 - optional hook
        """The deletion ``prepare_delete`` was called for did not commit."""

    async def adopt(self, image_id: str, location: str) -> str:
        """Take data already written at ``location`` (by a service sharing the store's
        backend, e.g. compute's RBD clone of a guest's disk) as image ``image_id``'s: its
        location as this store writes it. Only where this store would itself have put that
        image's data, committed (no other image's data, nothing outside the store):
        ``LocationRefused`` otherwise."""
        raise LocationRefused(f"The {self.scheme} image store takes no locations.")

    @abc.abstractmethod
    async def delete(self, location: str) -> None:
        """Remove the object; no error when it is already gone."""

    @abc.abstractmethod
    async def exists(self, location: str) -> bool:
        """Whether the object is there."""

    def owns(self, location: str) -> bool:
        return location.startswith(f"{self.scheme}:")
