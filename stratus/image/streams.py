"""Image data on its way into a store: counted, hashed and written while it streams.

(An upload whose body the HTTP server hands over as its socket, into a store that writes
from worker threads, takes ``stratus.image.receive`` instead: no event loop per piece. This
is the path of every other upload: the rbd and s3 stores, TLS, chunked bodies, and data
read from a store for ``add_location``.)

``DataSink`` gathers incoming chunks into batches of about ``BATCH`` bytes, kept as the list
of chunks they arrived in (no copy). Each batch goes to three independent consumers, MD5,
SHA-512 and the store write, and every consumer works through its own queue: the two hashes
each in a thread of their own for the whole upload (hashlib releases the GIL on large
buffers), the store write as a task that awaits the store. None waits for the others, and
the event loop meanwhile receives the next batch. A consumer may fall ``QUEUE_DEPTH``
batches behind the event loop before ``feed`` waits for it, so the slower hash never idles
while the store or the other hash catches up; that wait in turn stops reading from the
client. So memory stays bounded whatever the image size: a batch is held until its slowest
consumer is done with it, i.e. at most ``QUEUE_DEPTH + 1`` batches per consumer plus the
one being gathered, ``(QUEUE_DEPTH + 2) * (BATCH + one chunk)`` (30 MiB with the HTTP
server's pieces of at most 1 MiB), besides what the store's writer buffers (the file store:
one 4 MiB aligned buffer).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from stratus.core.exceptions import PayloadTooLarge
from stratus.image.formats import HEAD_SIZE
from stratus.image.stores.base import StoreWriter

BATCH = 4 * 1024 * 1024
#: Batches a consumer may have waiting, besides the one it works on.
QUEUE_DEPTH = 4
HASH_ALGO = "sha512"

Batch = list[bytes]


class TooLarge(PayloadTooLarge):
    """The data is larger than the image may be (size cap or quota)."""


@dataclass(frozen=True)
class Digest:
    size: int
    checksum: str
    os_hash_algo: str
    os_hash_value: str
    head: bytes


class _HashThread:
    """One thread feeding every batch, in order, to ``update`` (one hash) until closed.

    The event loop hands batches over with ``put``, which waits while ``QUEUE_DEPTH + 1``
    are not done yet; the thread reports each one done back on the loop.
    """

    def __init__(self, update: Callable[[bytes], object], name: str) -> None:
        self._update = update
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(QUEUE_DEPTH + 1)
        self._queue: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._error: BaseException | None = None
        self._dropped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while (batch := self._queue.get()) is not None:
                if self._error is None and not self._dropped:
                    try:
                        for chunk in batch:
                            self._update(chunk)
                    except BaseException as exc:  # reported to the loop by put/close
                        self._error = exc
                del batch
                self._call(self._slots.release)
        finally:
            self._call(self._finished)

    def _call(self, callback: Callable[[], object]) -> None:
        # The loop may be gone already when an abandoned upload's thread ends (shutdown).
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback)

    def _finished(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    async def put(self, batch: Batch) -> None:
        self._raise()
        await self._slots.acquire()
        self._queue.put(batch)

    async def close(self) -> None:
        """Wait until every batch put has been hashed; raises what hashing raised."""
        self._queue.put(None)
        await asyncio.shield(self._done)
        self._raise()

    def drop(self) -> None:
        """Skip what is still queued and end the thread (the digest is no longer wanted)."""
        self._dropped = True
        self._queue.put(None)


class _StoreConsumer:
    """Writes every batch, in order, to the store in a task of its own."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer
        self.queue: asyncio.Queue[Batch | None] = asyncio.Queue(QUEUE_DEPTH)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while (batch := await self.queue.get()) is not None:
            await self.writer.write_chunks(batch)
            del batch

    async def put(self, batch: Batch | None) -> None:
        if self.task.done():
            self.task.result()  # raises the write's error
            raise RuntimeError("store writer stopped")  # pragma: no cover
        put = asyncio.ensure_future(self.queue.put(batch))
        done, _ = await asyncio.wait({put, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            self.task.result()

    async def close(self) -> None:
        await self.put(None)
        await self.task


class DataSink:
    def __init__(self, writer: StoreWriter | None, *, limit: int | None = None,
                 limit_message: str = "") -> None:
        self.writer = writer
        self.limit = limit
        self.limit_message = limit_message
        self.size = 0
        self.head = bytearray()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._hash = hashlib.new(HASH_ALGO)
        self._pending: Batch = []
        self._pending_size = 0
        self._hashers: list[_HashThread] | None = None
        self._store: _StoreConsumer | None = None

    async def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.limit is not None and self.size > self.limit:
            raise TooLarge(self.limit_message or f"Image data exceeds {self.limit} bytes.")
        if len(self.head) < HEAD_SIZE:
            self.head += chunk[:HEAD_SIZE - len(self.head)]
        # Batches are exactly ``BATCH`` (the chunk across a batch's end is cut in two, a
        # copy of that chunk only), so a store whose unit is a multiple of it (the s3
        # store's 8 MiB parts) takes them as they are instead of cutting (copying) each.
        offset = 0
        while self._pending_size + len(chunk) - offset >= BATCH:
            room = BATCH - self._pending_size
            self._pending.append(chunk if not offset and len(chunk) == room
                                 else chunk[offset:offset + room])
            offset += room
            await self._dispatch()
        if offset < len(chunk):
            self._pending.append(chunk[offset:] if offset else chunk)
            self._pending_size += len(chunk) - offset

    async def _dispatch(self) -> None:
        batch, self._pending, self._pending_size = self._pending, [], 0
        if self._hashers is None:
            self._hashers = [_HashThread(self._md5.update, "image-md5"),
                             _HashThread(self._hash.update, f"image-{HASH_ALGO}")]
            if self.writer is not None:  # None: only counted and hashed
                self._store = _StoreConsumer(self.writer)
        for hasher in self._hashers:
            await hasher.put(batch)
        if self._store is not None:
            await self._store.put(batch)

    async def finish(self) -> Digest:
        """Write what is left and return the size and digests of everything fed."""
        if self._pending:
            await self._dispatch()
        hashers, self._hashers = self._hashers or [], None
        store, self._store = self._store, None
        try:
            if store is not None:
                await store.close()
            for hasher in hashers:
                await hasher.close()
        except BaseException:
            for hasher in hashers:
                hasher.drop()
            if store is not None:
                await _stopped(store)
            raise
        return Digest(size=self.size, checksum=self._md5.hexdigest(),
                      os_hash_algo=HASH_ALGO, os_hash_value=self._hash.hexdigest(),
                      head=bytes(self.head))

    async def discard(self) -> None:
        """Stop the consumers, waiting for any batch being written (an abort follows)."""
        hashers, self._hashers = self._hashers or [], None
        store, self._store = self._store, None
        self._pending.clear()
        for hasher in hashers:
            hasher.drop()
        if store is not None:
            await _stopped(store)


async def _stopped(store: _StoreConsumer) -> None:
    store.task.cancel()
    with contextlib.suppress(BaseException):
        await store.task
