"""Image data on its way into a store: counted, hashed and written while it streams.

``DataSink`` gathers incoming chunks into batches of ``BATCH`` bytes. Each batch goes to
three independent consumers, each working through its own short queue in a worker thread:
MD5, SHA-512 and the store write. They run at the same time (hashlib releases the GIL on
large buffers) and none waits for the others, while the event loop already receives the next
batch; a full queue makes ``feed`` wait, which in turn stops reading from the client. So
memory stays bounded (about ``(QUEUE_DEPTH + 2) * BATCH``) whatever the image size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from stratus.core.exceptions import PayloadTooLarge
from stratus.image.formats import HEAD_SIZE
from stratus.image.stores.base import StoreWriter

BATCH = 4 * 1024 * 1024
QUEUE_DEPTH = 1
HASH_ALGO = "sha512"


class TooLarge(PayloadTooLarge):
    """The data is larger than the image may be (size cap or quota)."""


@dataclass(frozen=True)
class Digest:
    size: int
    checksum: str
    os_hash_algo: str
    os_hash_value: str
    head: bytes


class _Consumer:
    """Feeds batches, in order, to one step (a hash update or the store write)."""

    def __init__(self, step: Callable[[bytes], Awaitable[None]]) -> None:
        self.step = step
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_DEPTH)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while (batch := await self.queue.get()) is not None:
            await self.step(batch)

    async def put(self, batch: bytes | None) -> None:
        if self.task.done():
            self.task.result()  # raises the step's error
            raise RuntimeError("consumer stopped")  # pragma: no cover
        put = asyncio.ensure_future(self.queue.put(batch))
        done, _ = await asyncio.wait({put, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            self.task.result()


def _threaded(update: Callable[[bytes], object]) -> Callable[[bytes], Awaitable[None]]:
    async def step(batch: bytes) -> None:
        await asyncio.to_thread(update, batch)

    return step


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
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._consumers: list[_Consumer] | None = None

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
        batch = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        if self._consumers is None:
            self._consumers = [_Consumer(_threaded(self._md5.update)),
                               _Consumer(_threaded(self._hash.update))]
            if self.writer is not None:  # None: only counted and hashed
                self._consumers.append(_Consumer(self.writer.write))
        for consumer in self._consumers:
            await consumer.put(batch)

    async def finish(self) -> Digest:
        """Write what is left and return the size and digests of everything fed."""
        if self._pending:
            await self._dispatch()
        for consumer in self._consumers or ():
            await consumer.put(None)
        for consumer in self._consumers or ():
            await consumer.task
        self._consumers = None
        return Digest(size=self.size, checksum=self._md5.hexdigest(),
                      os_hash_algo=HASH_ALGO, os_hash_value=self._hash.hexdigest(),
                      head=bytes(self.head))

    async def discard(self) -> None:
        """Stop the consumers, waiting for any batch being written (an abort follows)."""
        consumers, self._consumers = self._consumers or [], None
        self._pending.clear()
        for consumer in consumers:
            consumer.task.cancel()
        for consumer in consumers:
            with contextlib.suppress(BaseException):
                await consumer.task
