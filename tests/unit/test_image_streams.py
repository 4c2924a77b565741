"""DataSink: what is fed arrives whole and in order at the store, hashed as Glance records it,
in bounded memory however slow the store is; a failing store stops the feed, and a discarded
upload's hash threads end."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from stratus.image.formats import HEAD_SIZE
from stratus.image.stores.base import StoreFull, StoreWriter
from stratus.image.stores.file import FileStore
from stratus.image.streams import BATCH, QUEUE_DEPTH, DataSink, TooLarge

CHUNK = 256 * 1024 + 7  # not a divisor of BATCH: batches end mid-chunk


class Recording(StoreWriter):
    """Keeps what it is given; ``gate`` (when set) holds every write until it opens."""

    def __init__(self, *, gate: asyncio.Event | None = None, fail_at: int | None = None) -> None:
        self.data = bytearray()
        self.writes = 0
        self.gate = gate
        self.fail_at = fail_at
        self.entered = asyncio.Event()

    async def write(self, data: bytes) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        self.writes += 1
        if self.fail_at is not None and self.writes >= self.fail_at:
            raise StoreFull("Image storage media is full.")
        self.data += data

    async def commit(self) -> str:
        return "recording:"

    async def abort(self) -> None:
        self.data.clear()


def _pieces(data: bytes) -> list[bytes]:
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]


def _hash_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("image-")]


@pytest.mark.parametrize("size", [0, 1, BATCH - 1, BATCH, BATCH + 1, 3 * BATCH + 12345])
async def test_what_is_fed_is_stored_and_hashed(size: int) -> None:
    data = os.urandom(size)
    writer = Recording()
    sink = DataSink(writer)
    for piece in _pieces(data):
        await sink.feed(piece)
    digest = await sink.finish()
    assert bytes(writer.data) == data
    assert digest.size == size
    assert digest.checksum == hashlib.md5(data).hexdigest()
    assert (digest.os_hash_algo, digest.os_hash_value) == ("sha512",
                                                           hashlib.sha512(data).hexdigest())
    assert digest.head == data[:HEAD_SIZE]


@pytest.mark.parametrize("direct_io", [True, False])
async def test_the_file_store_receives_the_chunks_whole(tmp_path: Path, direct_io: bool) -> None:
    store = FileStore(tmp_path, direct_io=direct_io)
    await store.start()
    data = os.urandom(2 * BATCH + 4097)
    writer = await store.writer("img")
    sink = DataSink(writer)
    for piece in _pieces(data):
        await sink.feed(piece)
    await sink.finish()
    location = await writer.commit()
    assert (tmp_path / location.partition(":")[2]).read_bytes() == data


async def test_a_slow_store_stops_the_feed_within_the_bound() -> None:
    gate = asyncio.Event()
    writer = Recording(gate=gate)
    sink = DataSink(writer)
    data = os.urandom(BATCH)
    queue_filled = asyncio.Event()

    async def feed() -> None:
        for fed in range(1, QUEUE_DEPTH + 11):
            await sink.feed(data)
            if fed > QUEUE_DEPTH:  # one at the store, QUEUE_DEPTH queued
                queue_filled.set()

    feeding = asyncio.create_task(feed())
    filled = asyncio.create_task(queue_filled.wait())
    await asyncio.wait({feeding, filled}, return_when=asyncio.FIRST_COMPLETED)
    filled.cancel()
    # Taken in at most: the batch at the store, QUEUE_DEPTH queued, the one waiting to be
    # queued. Watched for a while, so that the hash threads (not held) can catch up and
    # would let the feed run on if the store's queue did not hold it.
    for _ in range(40):
        assert sink.size <= (QUEUE_DEPTH + 2) * BATCH
        await asyncio.sleep(0.05)
    assert not feeding.done()
    gate.set()
    await feeding
    digest = await sink.finish()
    assert digest.size == len(writer.data) == (QUEUE_DEPTH + 10) * BATCH
    assert digest.checksum == hashlib.md5(data * (QUEUE_DEPTH + 10)).hexdigest()


async def test_a_store_error_stops_the_feed_and_discard_ends_the_threads() -> None:
    writer = Recording(fail_at=2)
    sink = DataSink(writer)
    data = os.urandom(BATCH)
    with pytest.raises(StoreFull):
        for _ in range(QUEUE_DEPTH + 10):
            await sink.feed(data)
        await sink.finish()
    threads = _hash_threads()
    assert threads
    await sink.discard()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)


async def test_more_than_the_limit_is_too_large() -> None:
    sink = DataSink(Recording(), limit=BATCH + 10, limit_message="Over quota.")
    await sink.feed(os.urandom(BATCH))
    with pytest.raises(TooLarge, match=r"Over quota\."):
        await sink.feed(os.urandom(11))
    await sink.discard()


class _Chunked(Recording):
    """Records the batches as they come (the list of chunks, not joined)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def write_chunks(self, chunks: Sequence[bytes]) -> None:
        self.batches.append(sum(map(len, chunks)))
        for chunk in chunks:
            await self.write(chunk)


async def test_batches_are_at_least_batch_bytes_but_the_last() -> None:
    writer = _Chunked()
    sink = DataSink(writer)
    data = os.urandom(3 * BATCH + 5)
    for piece in _pieces(data):
        await sink.feed(piece)
    await sink.finish()
    assert bytes(writer.data) == data
    assert all(BATCH <= size < BATCH + CHUNK for size in writer.batches[:-1])
    assert sum(writer.batches) == len(data)
