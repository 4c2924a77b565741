"""The ``file`` store: one file per image under a directory (default ``<data_dir>/images``).

Uploads are written to ``<dir>/.staging/<image id>.<random>`` (same file system), then
``fsync``-ed and renamed to ``<dir>/<image id>``, and the directory is ``fsync``-ed: a reader
sees either no file or the whole one. Locations are ``file:<image id>``, relative to the
directory, so the data directory can be moved.

Where the file system allows it, image data is written and read with ``O_DIRECT`` through
aligned buffers: it is large, written once and read by compute hosts that keep their own
copies, so it is kept out of the page cache, and the kernel's copy into freshly allocated cache
pages (the largest CPU cost of buffered I/O, worst on virtual machines) is saved. The unaligned
tail of an upload is written buffered at commit; file systems without ``O_DIRECT`` (tmpfs), or
``direct_io=False``, get plain buffered I/O. A download the HTTP server sends with
``os.sendfile`` (``FileReader.sendfile_range``) is the exception: it reads through the page
cache, for the kernel's readahead, and drops the pages it read when the reader closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import logging
import mmap
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from stratus.image.stores.base import (
    READ_CHUNK,
    ObjectMissing,
    ObjectReader,
    RangeReader,
    Store,
    StoreFull,
    StoreWriter,
)

LOG = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$")
STAGING = ".staging"
#: O_DIRECT needs buffers, offsets and lengths aligned to the logical block size.
ALIGN = 4096
DIRECT_BUFFER = 4 * 1024 * 1024
O_DIRECT = getattr(os, "O_DIRECT", 0)


def _address(view: memoryview) -> int:
    """Where a writable view's bytes start in memory."""
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileWriter(StoreWriter):
    def __init__(self, store: FileStore, image_id: str) -> None:
        self.store = store
        self.image_id = image_id
        self.staged = store.staging / f"{image_id}.{secrets.token_hex(8)}"
        self.final: Path | None = None
        self._file: int | None = None
        #: Aligned buffer for O_DIRECT writes (None: buffered writes), and its fill.
        self._buffer: mmap.mmap | None = None
        self._filled = 0
        #: Writes run in worker threads: an abort waits for one under way.
        self._lock = threading.Lock()

    @property
    def local_path(self) -> Path | None:
        return self.staged if self._file is not None else None

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        if self.store.direct_io and O_DIRECT:
            try:
                self._file = os.open(self.staged, flags | O_DIRECT, 0o600)
                self._buffer = mmap.mmap(-1, DIRECT_BUFFER)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                with contextlib.suppress(FileNotFoundError):
                    self.staged.unlink()
        self._file = os.open(self.staged, flags, 0o600)

    def _raw_write(self, data: memoryview) -> None:
        assert self._file is not None, "writer is closed"
        try:
            while data:
                written = os.write(self._file, data)
                data = data[written:]
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreFull("Image storage media is full.") from exc
            raise

    def _buffered(self) -> None:
        """Leave O_DIRECT: write what the aligned buffer holds, then write plainly."""
        assert self._file is not None and self._buffer is not None
        fcntl.fcntl(self._file, fcntl.F_SETFL,
                    fcntl.fcntl(self._file, fcntl.F_GETFL) & ~O_DIRECT)
        with memoryview(self._buffer) as view:
            self._raw_write(view[:self._filled])
        self._buffer.close()
        self._buffer, self._filled = None, 0

    def _flush_aligned(self) -> None:
        assert self._buffer is not None
        aligned = self._filled - self._filled % ALIGN
        if not aligned:
            return
        try:
            with memoryview(self._buffer) as view:
                self._raw_write(view[:aligned])
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._buffered()  # the file system refused O_DIRECT after all
            return
        rest = self._filled - aligned
        if rest:
            self._buffer.move(0, aligned, rest)
        self._filled = rest

    def _write(self, chunks: Sequence[bytes]) -> None:
        with self._lock:
            if self._file is None:  # aborted already: drop the data
                return
            for chunk in chunks:
                self._write_locked(chunk)
            if self._buffer is not None:
                self._flush_aligned()

    def _write_locked(self, data: bytes | memoryview) -> None:
        """Append ``data``: straight to the file when buffered, else through the aligned
        buffer, written out each time it fills (the caller flushes what is left)."""
        if self._buffer is None:
            with memoryview(data) as view:
                self._raw_write(view)
            return
        with memoryview(data) as view:
            while view:
                if self._buffer is None:
                    self._raw_write(view)
                    return
                take = min(len(view), DIRECT_BUFFER - self._filled)
                self._buffer[self._filled:self._filled + take] = view[:take]
                self._filled += take
                view = view[take:]
                if self._filled == DIRECT_BUFFER:
                    self._flush_aligned()

    def _write_view(self, view: memoryview) -> None:
        """Append ``view`` from a worker thread: a page-aligned whole number of blocks
        (``receive``'s full buffers) is written with ``O_DIRECT`` as it is, without the copy
        into the aligned buffer, when nothing is buffered before it."""
        with self._lock:
            if self._file is None:  # aborted already: drop the data
                return
            if (self._buffer is not None and not self._filled and len(view)
                    and len(view) % ALIGN == 0 and _address(view) % ALIGN == 0):
                try:
                    self._raw_write(view)
                    return
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self._buffered()  # the file system refused O_DIRECT after all
            self._write_locked(view)
            if self._buffer is not None:
                self._flush_aligned()

    def thread_writer(self) -> Callable[[memoryview], None]:
        return self._write_view

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._write, (data,))

    async def write_chunks(self, chunks: Sequence[bytes]) -> None:
        # Each chunk goes into the aligned buffer as it is: no joined copy first.
        await asyncio.to_thread(self._write, chunks)

    def _written(self) -> None:
        with self._lock:
            if self._buffer is not None:
                self._buffered()  # the unaligned tail

    async def written(self) -> None:
        await asyncio.to_thread(self._written)

    def _commit(self) -> str:
        with self._lock:
            return self._commit_locked()

    def _commit_locked(self) -> str:
        assert self._file is not None, "writer is closed"
        if self._buffer is not None:
            self._buffered()  # the unaligned tail
        os.fsync(self._file)
        os.close(self._file)
        self._file = None
        final = self.store.path_of(self.image_id)
        os.replace(self.staged, final)
        self.final = final
        _fsync_dir(self.store.directory)
        return f"file:{self.image_id}"

    async def commit(self) -> str:
        return await asyncio.to_thread(self._commit)

    def _abort(self) -> None:
        with self._lock:
            self._abort_locked()

    def _abort_locked(self) -> None:
        if self._buffer is not None:
            self._buffer.close()
            self._buffer, self._filled = None, 0
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.close(self._file)
            self._file = None
        for path in (self.staged, self.final):
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    async def abort(self) -> None:
        await asyncio.to_thread(self._abort)


class FileReader(RangeReader):
    """Reads a range of a file in chunks, each in a worker thread.

    With ``O_DIRECT`` (``direct`` True) reads go from the disk into an aligned buffer, around
    the page cache, like the writes: whole aligned blocks are read and the range cut out.
    """

    def __init__(self, fd: int, size: int, offset: int, length: int, chunk_size: int,
                 *, direct: bool = False) -> None:
        self._fd: int | None = fd
        self.size = size
        self.offset = offset
        self.length = length
        self.chunk_size = chunk_size
        self._buffer: mmap.mmap | None = None
        if direct:
            self._buffer = mmap.mmap(-1, chunk_size - chunk_size % ALIGN + 2 * ALIGN)
        #: A read under way in a thread; closing waits for it.
        self._lock = threading.Lock()
        #: Whether the range went out with sendfile (through the page cache).
        self._sent = False

    def _read(self, position: int, count: int) -> bytes:
        with self._lock:
            if self._fd is None:
                return b""
            if self._buffer is None:
                return os.pread(self._fd, count, position)
            start = position - position % ALIGN
            span = position - start + count
            span += -span % ALIGN
            try:
                with memoryview(self._buffer) as view:
                    got = os.preadv(self._fd, [view[:span]], start)
                    return bytes(view[position - start:min(got, position - start + count)])
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._buffered()
                return os.pread(self._fd, count, position)

    def _buffered(self) -> None:
        assert self._fd is not None and self._buffer is not None
        fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~O_DIRECT)
        self._buffer.close()
        self._buffer = None

    async def read_at(self, position: int, count: int) -> bytes:
        return await asyncio.to_thread(self._read, position, count)

    def _sendfile_range(self) -> tuple[int, int, int] | None:
        with self._lock:
            if self._fd is None:
                return None
            if self._buffer is not None:
                # sendfile reads through the page cache, with its readahead (O_DIRECT would
                # read each of its pieces from the disk in turn); the pages are dropped again
                # at close, as the store keeps image data out of the cache.
                self._buffered()
            self._sent = True
            with contextlib.suppress(OSError):
                os.posix_fadvise(self._fd, self.offset, self.length,
                                 os.POSIX_FADV_SEQUENTIAL)
            return self._fd, self.offset, self.length

    async def sendfile_range(self) -> tuple[int, int, int] | None:
        return await asyncio.to_thread(self._sendfile_range)

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def _close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
            if self._buffer is not None:
                self._buffer.close()
                self._buffer = None
            if fd is not None:
                if self._sent:
                    with contextlib.suppress(OSError):
                        os.posix_fadvise(fd, self.offset, self.length,
                                         os.POSIX_FADV_DONTNEED)
                os.close(fd)

    async def aclose(self) -> None:
        if self._fd is not None:
            await asyncio.to_thread(self._close)


class FileStore(Store):
    scheme = "file"

    def __init__(self, directory: Path, *, stale_upload_seconds: float = 3600,
                 direct_io: bool = True) -> None:
        self.directory = directory
        self.staging = directory / STAGING
        self.stale_upload_seconds = stale_upload_seconds
        self.direct_io = direct_io

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        self.staging.mkdir(parents=True, exist_ok=True, mode=0o700)
        removed = self.sweep_staging(self.stale_upload_seconds)
        if removed:
            LOG.info("removed %d staged upload(s) left over from an earlier run", removed)

    def sweep_staging(self, older_than: float) -> int:
        """Remove staged uploads not written to for ``older_than`` seconds (crash leftovers)."""
        cutoff = time.time() - older_than
        removed = 0
        for entry in self.staging.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime <= cutoff:
                    entry.unlink()
                    removed += 1
        return removed

    def path_of(self, name: str) -> Path:
        if not _NAME_RE.match(name):
            raise ObjectMissing(f"Not a file store object name: {name!r}")
        return self.directory / name

    def _path(self, location: str) -> Path:
        if not self.owns(location):
            raise ObjectMissing(f"Location {location!r} is not in the file store.")
        return self.path_of(location.partition(":")[2])

    async def writer(self, image_id: str) -> StoreWriter:
        writer = FileWriter(self, image_id)
        await asyncio.to_thread(writer._open)
        return writer

    async def open(self, location: str, offset: int = 0, length: int | None = None,
                   chunk_size: int = READ_CHUNK) -> ObjectReader:
        path = self._path(location)

        def opened() -> tuple[int, int, bool]:
            flags = os.O_RDONLY | os.O_CLOEXEC
            try:
                if self.direct_io and O_DIRECT:
                    try:
                        fd = os.open(path, flags | O_DIRECT)
                        return fd, os.fstat(fd).st_size, True
                    except OSError as exc:
                        if exc.errno != errno.EINVAL:
                            raise
                fd = os.open(path, flags)
            except FileNotFoundError as exc:
                raise ObjectMissing(f"Image data at {location} is missing.") from exc
            return fd, os.fstat(fd).st_size, False

        fd, size, direct = await asyncio.to_thread(opened)
        if length is None:
            length = max(0, size - offset)
        return FileReader(fd, size, offset, min(length, max(0, size - offset)), chunk_size,
                          direct=direct)

    async def delete(self, location: str) -> None:
        path = self._path(location)

        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

        await asyncio.to_thread(remove)

    async def exists(self, location: str) -> bool:
        return await asyncio.to_thread(self._path(location).exists)
