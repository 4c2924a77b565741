"""uvicorn's httptools protocol, taking request bodies in larger pieces and with fewer copies.

A streamed image upload (a GiB and more) reaches the application piece by piece: asyncio
reads the socket at most 256 KiB at a time, uvicorn appends each piece to a bytearray and
hands the application a ``bytes`` copy of that, and every piece costs a trip through the
event loop (reading paused and resumed, the application's task woken): an image upload's
event loop spent ~1.3 CPU-seconds per GiB (the hashes ~2.7, in their threads).

Here a piece that arrives while none is waiting for the application is handed over as it
is (``bytes(b)`` of a ``bytes`` object is that object: no copy), and while a body streams the
socket is read up to ``BODY_READ_SIZE`` at a time: ~0.6 CPU-seconds per GiB (larger reads
gained nothing more). Bodies that come in one read (all JSON requests) are not affected;
the larger reads end with the request's body.

Once a body of known length (``Content-Length``, not chunked) has begun, what the socket
gives is body until that length is reached, so it goes to the application as it was read,
without the parser: httptools hands each body piece over as a fresh copy (receiving a
body alone took 1.02 CPU-seconds per GiB with it, 0.53 without; ``benchmarks/README.md``).
Where the body ends, the parser, which still waits for those bytes, is replaced by a fresh
one that reads what follows (the next request on the connection).

Such a body may also be taken past the event loop altogether: the request's scope offers it
as the ASGI extension ``stratus.core.web.socket_body.EXTENSION`` (plain TCP connections
only: a TLS connection's socket holds ciphertext), which an image upload reads from a worker
thread straight into its own buffers.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from typing import Any, BinaryIO

import httptools
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from stratus.core.web.socket_body import EXTENSION, SENDFILE, SocketBody

#: The most read from the socket at once while a request body streams (asyncio: 256 KiB).
BODY_READ_SIZE = 1024 * 1024


class HttpProtocol(HttpToolsProtocol):
    """What ``stratus`` serves HTTP with (``uvicorn.Config(http=...)``)."""

    #: Whether the transport reads with ``recv(max_size)`` (asyncio's socket transport, not
    #: TLS's), and whether it now reads ``BODY_READ_SIZE``.
    _resizable = False
    _large_reads = False
    #: Bytes of the current request's body not received yet, when its length is known,
    #: and that length.
    _body_left = 0
    _body_size = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._resizable = hasattr(transport, "max_size")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._body_left = 0
        if self.parser.should_upgrade():
            return
        lengths = [value for name, value in self.headers if name == b"content-length"]
        chunked = any(name == b"transfer-encoding" for name, _ in self.headers)
        # The parser refuses a bad, repeated or chunked-and-sized length before this point;
        # anything but one plain length here keeps the parser reading the body.
        if len(lengths) == 1 and not chunked and lengths[0].isdigit():
            self._body_left = int(lengths[0])
        self._body_size = self._body_left
        cycle = self.cycle
        if not self._resizable or cycle is None:
            return
        extensions = self.scope.setdefault("extensions", {})
        if self._body_left:
            extensions[EXTENSION] = {"take": functools.partial(self._take_body, cycle)}
        elif self.scope["method"] == "GET":
            extensions[SENDFILE] = {"send": functools.partial(self._sendfile, cycle)}

    async def _sendfile(self, cycle: RequestResponseCycle, file: BinaryIO, offset: int,
                        count: int) -> bool:
        """Send ``count`` bytes of ``file`` from ``offset`` as the next part of ``cycle``'s
        response body, the kernel copying them from the page cache to the socket
        (``os.sendfile``): whether that was done; False (nothing sent) when the response's
        head has not been written yet (a middleware holding it), or its length is not
        known (chunked). A connection that breaks meanwhile is closed (sent: True)."""
        if (cycle is not self.cycle or not cycle.response_started or cycle.response_complete
                or cycle.chunked_encoding or count > cycle.expected_content_length):
            return False
        if cycle.disconnected or self.transport.is_closing():
            return True
        try:
            await self.loop.sendfile(self.transport, file, offset, count)
        except OSError:  # the client went away: as a write to a closed transport, quietly
            self.transport.close()
            return True
        cycle.expected_content_length -= count
        return True

    def _take_body(self, cycle: RequestResponseCycle) -> SocketBody | None:
        """The rest of ``cycle``'s body as a ``SocketBody`` (the event loop stops reading
        the connection until it is closed); None when it is not the body being received."""
        if (cycle is not self.cycle or cycle.disconnected or cycle.response_complete
                or self._body_left <= 0 or self.transport.is_closing()):
            return None
        if self._body_size - self._body_left != len(cycle.body):
            return None  # the application has received a part already: not the whole rest
        raw = self.transport.get_extra_info("socket")
        try:
            sock = socket.socket(fileno=os.dup(raw.fileno()))
        except (AttributeError, OSError):
            return None
        if cycle.waiting_for_100_continue:  # what receive() would have said first
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        self.transport.pause_reading()
        cycle.flow = _ReadingHeld(self.flow)  # type: ignore[assignment]
        pending, cycle.body = bytes(cycle.body), bytearray()
        return SocketBody(sock, pending, len(pending) + self._body_left,
                          functools.partial(self._body_returned, cycle))

    def _body_returned(self, cycle: RequestResponseCycle, unread: int) -> None:
        """The connection is the protocol's again after a ``SocketBody``, ``unread`` bytes
        of the body still on it: read whole, the message is complete and what follows is
        the next request; else the rest is read as the body (dropped once the response is
        complete, as uvicorn drops a body the application did not read)."""
        cycle.flow = self.flow
        if cycle is not self.cycle or self.transport.is_closing():
            return
        self._body_left = unread
        if not unread:
            self.parser = self._fresh_parser()
            self.on_message_complete()
        if not self.flow.read_paused:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self._body_left <= 0 or self.cycle is None:
            super().data_received(data)
            return
        self._unset_keepalive_if_required()
        size = min(len(data), self._body_left)
        self.on_body(data if size == len(data) else data[:size])  # counts _body_left down
        if self._body_left:
            return
        # The body is complete: the message too, and the parser (still waiting for the
        # bytes it never saw) gives way to a fresh one for what follows.
        self.parser = self._fresh_parser()
        self.on_message_complete()
        if size < len(data):
            super().data_received(data[size:])

    def _fresh_parser(self) -> httptools.HttpRequestParser:
        parser = httptools.HttpRequestParser(self)
        # As uvicorn makes its own (where this httptools has the setting).
        leniencies = getattr(parser, "set_dangerous_leniencies", None)
        if leniencies is not None:
            leniencies(lenient_data_after_close=True)
        return parser

    def on_body(self, body: bytes) -> None:
        self._body_left -= len(body)
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        if not cycle.body:
            # Nothing waiting: the piece itself is the next message's body.
            cycle.body = body  # type: ignore[assignment]  # bytes() of it is itself
        else:
            if isinstance(cycle.body, bytes):  # a second piece before the app asked
                cycle.body = bytearray(cycle.body)
            cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()
        if self._resizable and not self._large_reads:
            self.transport.max_size = BODY_READ_SIZE  # type: ignore[attr-defined]
            self._large_reads = True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._large_reads:  # asyncio's own size again, for the next request
            vars(self.transport).pop("max_size", None)
            self._large_reads = False


class _ReadingHeld:
    """A cycle's flow control while its body is read from the socket by a ``SocketBody``:
    nothing may resume the event loop's reading (``receive`` would), writing as before."""

    def __init__(self, flow: Any) -> None:
        self._flow = flow

    @property
    def write_paused(self) -> bool:
        return bool(self._flow.write_paused)

    async def drain(self) -> None:
        await self._flow.drain()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class IdleDroppingProtocol(HttpProtocol):
    """``HttpProtocol``, except that an idle connection is dropped at shutdown rather than
    closed: a TLS close waits for the peer's close_notify, and a client keeping the
    connection idle in its pool (this process's own calls between services) reads nothing
    until its next request, so each stop waited asyncio's 30 s TLS shutdown timeout."""

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.transport.abort()
        else:
            super().shutdown()

