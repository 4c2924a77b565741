"""``stratus.image.receive``: a body read from a real socket off the event loop arrives whole
at the store and hashed as Glance records it, in ``SLOTS`` buffers however slow the store;
a failing store, a client gone or a cancelled upload stops every thread."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.requests import ClientDisconnect

from stratus.core.web.socket_body import SocketBody
from stratus.image.formats import HEAD_SIZE
from stratus.image.receive import SLOTS, receive
from stratus.image.stores.base import StoreFull
from stratus.image.stores.file import FileStore
from stratus.image.streams import BATCH, TooLarge


def _threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("image-")]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)  # as asyncio keeps a connection's socket
    yield ours, theirs
    theirs.close()
    ours.close()


def _body(ours: socket.socket, pending: bytes, length: int,
          returned: list[int] | None = None) -> SocketBody:
    sink = returned if returned is not None else []
    return SocketBody(socket.socket(fileno=os.dup(ours.fileno())), pending, length,
                      sink.append)


def _send(theirs: socket.socket, data: bytes) -> threading.Thread:
    def run() -> None:
        try:
            theirs.sendall(data)
        except OSError:  # the reader stopped and the test closed its end
            pass

    sender = threading.Thread(target=run, daemon=True)
    sender.start()
    return sender


@pytest.mark.parametrize("direct_io", [True, False])
@pytest.mark.parametrize("size", [0, 1, BATCH - 1, BATCH, BATCH + 1, 3 * BATCH + 12345])
async def test_the_body_is_stored_whole_and_hashed(pair: tuple[socket.socket, socket.socket],
                                                   tmp_path: Path, size: int,
                                                   direct_io: bool) -> None:
    ours, theirs = pair
    data = os.urandom(size)
    pending = data[:1000]  # received with the headers, before the body was taken
    store = FileStore(tmp_path, direct_io=direct_io)
    await store.start()
    writer = await store.writer("img")
    sender = _send(theirs, data[len(pending):])
    returned: list[int] = []
    body = _body(ours, pending, size, returned)
    digest = await receive(body, writer.thread_writer())
    body.close()
    await writer.written()
    await writer.commit()
    sender.join(5)
    assert returned == [0]  # nothing left unread on the connection
    assert (digest.size, digest.checksum, digest.os_hash_algo, digest.os_hash_value) == (
        size, hashlib.md5(data).hexdigest(), "sha512", hashlib.sha512(data).hexdigest())
    assert digest.head == data[:HEAD_SIZE]
    assert (tmp_path / "img").read_bytes() == data
    assert _threads() == []


async def test_a_slow_store_stops_the_reading_within_the_slots(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    size = (SLOTS + 6) * BATCH
    data = os.urandom(size)
    gate = threading.Event()
    written = bytearray()

    def write(view: memoryview) -> None:
        gate.wait(30)
        written.extend(view)

    body = _body(ours, b"", size)
    read = 0
    readinto = body.readinto

    def counted(view: memoryview) -> int:
        nonlocal read
        count = readinto(view)
        read += count
        return count

    body.readinto = counted  # type: ignore[method-assign]
    sender = _send(theirs, data)
    task = asyncio.create_task(receive(body, write))
    await asyncio.sleep(1.5)  # the hashes are done long since; the store holds everything
    assert SLOTS * BATCH - BATCH < read <= SLOTS * BATCH
    assert not task.done()
    gate.set()
    digest = await task
    body.close()
    sender.join(5)
    assert bytes(written) == data and digest.size == size
    assert digest.checksum == hashlib.md5(data).hexdigest()


async def test_a_store_error_stops_everything(pair: tuple[socket.socket, socket.socket]
                                             ) -> None:
    ours, theirs = pair
    size = 10 * BATCH
    writes = 0

    def write(view: memoryview) -> None:
        nonlocal writes
        writes += 1
        if writes == 2:
            raise StoreFull("Image storage media is full.")

    returned: list[int] = []
    body = _body(ours, b"", size, returned)
    sender = _send(theirs, os.urandom(size))
    with pytest.raises(StoreFull):
        await receive(body, write)
    body.close()
    assert returned and returned[0] > 0  # the rest of the body is left on the connection
    assert writes == 2 and _threads() == []
    ours.shutdown(socket.SHUT_RDWR)  # the client's send ends (EPIPE)
    sender.join(5)


async def test_a_client_gone_mid_body_is_a_disconnect(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    body = _body(ours, b"", 3 * BATCH)
    sender = _send(theirs, os.urandom(BATCH + 5))
    task = asyncio.create_task(receive(body, None))
    await asyncio.to_thread(sender.join, 5)
    theirs.shutdown(socket.SHUT_WR)
    with pytest.raises(ClientDisconnect):
        await task
    body.close()
    assert _threads() == []


async def test_a_cancelled_receive_ends_its_threads(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    body = _body(ours, b"", 3 * BATCH)
    sender = _send(theirs, os.urandom(BATCH + 5))  # then the client stalls
    task = asyncio.create_task(receive(body, None))
    await asyncio.to_thread(sender.join, 5)
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    body.close()
    assert _threads() == []  # ended before the cancellation was raised


@pytest.mark.parametrize("limit", [0, BATCH - 1, 2 * BATCH])
async def test_more_than_the_limit_is_too_large(pair: tuple[socket.socket, socket.socket],
                                                limit: int) -> None:
    ours, theirs = pair
    size = 2 * BATCH + 1
    body = _body(ours, b"", size)
    sender = _send(theirs, os.urandom(size))
    with pytest.raises(TooLarge, match="too big"):
        await receive(body, None, limit=limit, limit_message="too big")
    body.close()
    ours.shutdown(socket.SHUT_RDWR)  # the client's send ends (EPIPE)
    sender.join(5)
    assert _threads() == []
