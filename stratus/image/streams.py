"""Image data on its way into a store: counted, hashed and written while it streams.

``DataSink`` gathers incoming chunks into batches of ``BATCH`` bytes and hands each batch to
worker threads: MD5, SHA-512 and the store write run at the same time (hashlib releases the
GIL on large buffers), while the event loop already receives the next batch. At most two
batches are held at once, so memory stays bounded whatever the image size.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from stratus.core.exceptions import PayloadTooLarge
from stratus.image.formats import HEAD_SIZE
from stratus.image.stores.base import StoreWriter

BATCH = 4 * 1024 * 1024
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


class DataSink:
    def __init__(self, writer: StoreWriter, *, limit: int | None = None,
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
        self._inflight: asyncio.Task[None] | None = None

    async def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if self.limit is not None and self.size > self.limit:
            raise TooLarge(self.limit_message or f"Image data exceeds {self.limit} bytes.")
        if len(self.head) < HEAD_SIZE:
            self.head += chunk[:HEAD_SIZE - len(self.head)]
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        if self._pending_size >= BATCH:
            await self._dispatch()

    async def _dispatch(self) -> None:
        batch = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            await inflight
        self._inflight = asyncio.create_task(self._process(batch))

    async def _process(self, batch: bytes) -> None:
        await asyncio.gather(asyncio.to_thread(self._md5.update, batch),
                             asyncio.to_thread(self._hash.update, batch),
                             self.writer.write(batch))

    async def finish(self) -> Digest:
        """Write what is left and return the size and digests of everything fed."""
        if self._pending:
            await self._dispatch()
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            await inflight
        return Digest(size=self.size, checksum=self._md5.hexdigest(),
                      os_hash_algo=HASH_ALGO, os_hash_value=self._hash.hexdigest(),
                      head=bytes(self.head))

    async def discard(self) -> None:
        """Wait for any batch still being written (so an abort then removes everything)."""
        inflight, self._inflight = self._inflight, None
        self._pending.clear()
        if inflight is not None:
            try:
                await inflight
            except Exception:
                pass  # the upload is failing anyway; the abort follows
