"""An upload's body received, hashed and written off the event loop, through reused buffers.

When the HTTP server hands over the body's socket (``stratus.core.web.socket_body``) and the
store can write from a worker thread (``StoreWriter.thread_writer``: the file store), the
upload does not pass through the event loop at all: one thread reads the socket straight into
``SLOTS`` page-aligned buffers of ``BATCH`` bytes (the kernel's copy out of the socket is the
only copy), and hands each filled buffer to three threads at once, MD5, SHA-512 (hashlib
releases the GIL on such buffers, so both run in parallel) and the store's write (the file
store writes a whole buffer with ``O_DIRECT`` as it is, no copy into its aligned buffer). A
buffer is read into again once all three are done with it, so memory is ``SLOTS * BATCH``
whatever the image's size, and a slow consumer stops the reading, hence the client (TCP's
flow control). Beside the ``DataSink`` path this saves the event loop's trip per received
piece (~0.4 MiB: protocol, middlewares, the application's task, the batching), a ``bytes``
object per piece and the store's copy of every byte: ``benchmarks/profiles/image-2026-12-07.md``.

A failure anywhere (the store's, too large, the client gone, ``stop`` from the event loop)
stops every thread; the first error of a consumer is raised rather than the reader's (which
then only says the reading was stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import mmap
import queue
import threading
from collections.abc import Callable
from typing import Protocol

from stratus.image.formats import HEAD_SIZE
from stratus.image.streams import BATCH, HASH_ALGO, QUEUE_DEPTH, Digest, TooLarge

#: Buffers of ``BATCH`` bytes: a consumer may be this many less one behind the reader.
SLOTS = QUEUE_DEPTH + 2
#: Seconds between looks at whether the receive was stopped, while waiting for a buffer.
POLL_SECONDS = 0.5


class Body(Protocol):
    """Where the bytes come from (``SocketBody``): ``readinto`` in one thread, 0 at the
    end; ``cancel`` from any thread makes it raise soon."""

    def readinto(self, view: memoryview) -> int: ...

    def cancel(self) -> None: ...


class _Stopped(Exception):
    """The receive was stopped (a consumer failed, or the event loop gave up on it)."""


class _Consumer:
    """A thread doing ``work`` on each buffer handed to it, in order, then ``done(slot)``."""

    def __init__(self, work: Callable[[memoryview], object], name: str,
                 done: Callable[[int], None], failed: Callable[[], None],
                 stopped: threading.Event) -> None:
        self._work = work
        self._stopped = stopped
        self._done = done
        self._failed = failed
        self._queue: queue.SimpleQueue[tuple[int, memoryview] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            slot, view = item
            try:
                if not self._stopped.is_set():  # else only given back
                    self._work(view)
            except BaseException as exc:  # raised by the reader once every thread ended
                self.error = exc
                self._failed()
            finally:
                view.release()
                self._done(slot)

    def put(self, slot: int, view: memoryview) -> None:
        self._queue.put((slot, view))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


class Receive:
    """One upload's body: ``run`` it in a worker thread; ``stop`` from anywhere."""

    def __init__(self, body: Body, write: Callable[[memoryview], None] | None, *,
                 limit: int | None = None, limit_message: str = "") -> None:
        self.body = body
        self.write = write
        self.limit = limit
        self.limit_message = limit_message
        self._stopped = threading.Event()
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._users = [0] * SLOTS
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stopped.set()
        self.body.cancel()

    def _done(self, slot: int) -> None:
        with self._lock:
            self._users[slot] -= 1
            if self._users[slot]:
                return
        self._free.put(slot)

    def _free_slot(self) -> int:
        while True:
            if self._stopped.is_set():
                raise _Stopped()
            with contextlib.suppress(queue.Empty):
                return self._free.get(timeout=POLL_SECONDS)

    def run(self) -> Digest:
        md5 = hashlib.md5(usedforsecurity=False)
        other = hashlib.new(HASH_ALGO)
        buffers = mmap.mmap(-1, SLOTS * BATCH)
        for slot in range(SLOTS):
            self._free.put(slot)
        work: list[tuple[Callable[[memoryview], object], str]] = [
            (md5.update, "image-md5"), (other.update, f"image-{HASH_ALGO}")]
        if self.write is not None:
            work.append((self.write, "image-write"))
        consumers = [_Consumer(fn, name, self._done, self.stop, self._stopped)
                     for fn, name in work]
        size = 0
        head = b""
        error: BaseException | None = None
        try:
            with memoryview(buffers) as whole:
                while True:
                    slot = self._free_slot()
                    start = slot * BATCH
                    filled = 0
                    while filled < BATCH:
                        count = self.body.readinto(whole[start + filled:start + BATCH])
                        if not count:
                            break
                        filled += count
                    size += filled
                    if self.limit is not None and size > self.limit:
                        raise TooLarge(self.limit_message
                                       or f"Image data exceeds {self.limit} bytes.")
                    if len(head) < HEAD_SIZE:
                        head += bytes(whole[start:start + min(filled, HEAD_SIZE - len(head))])
                    if filled:
                        with self._lock:
                            self._users[slot] = len(consumers)
                        for consumer in consumers:
                            consumer.put(slot, whole[start:start + filled])
                    if filled < BATCH:
                        break
        except BaseException as exc:
            error = exc
            self.stop()
        finally:
            for consumer in consumers:
                consumer.close()
            with contextlib.suppress(BufferError):  # a view still held: freed with it
                buffers.close()
        for consumer in consumers:
            if consumer.error is not None:
                raise consumer.error
        if error is not None:
            raise error
        return Digest(size=size, checksum=md5.hexdigest(), os_hash_algo=HASH_ALGO,
                      os_hash_value=other.hexdigest(), head=head)


async def receive(body: Body, write: Callable[[memoryview], None] | None, *,
                  limit: int | None = None, limit_message: str = "") -> Digest:
    """Receive ``body`` as ``Receive`` says, reading in a thread of its own (not the event
    loop's executor, which many long uploads would fill); when this is cancelled or fails,
    every thread has ended (no read or write under way) before it raises."""
    job = Receive(body, write, limit=limit, limit_message=limit_message)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Digest] = loop.create_future()

    def settle(result: Digest | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = job.run(), None
        except BaseException as exc:  # handed to the event loop
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone (shutdown)
            loop.call_soon_threadsafe(settle, result, error)

    reader = threading.Thread(target=run, name="image-receive", daemon=True)
    reader.start()
    try:
        return await asyncio.shield(future)
    except BaseException:
        job.stop()
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({future})
        with contextlib.suppress(BaseException):
            future.exception()  # retrieved: the error raised is the one that got here
        raise
    finally:
        # Its result is settled as the thread's last act: what is left is its return.
        reader.join(1)
