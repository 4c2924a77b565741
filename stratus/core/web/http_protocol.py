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
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: The most read from the socket at once while a request body streams (asyncio: 256 KiB).
BODY_READ_SIZE = 1024 * 1024


class HttpProtocol(HttpToolsProtocol):
    """What ``stratus`` serves HTTP with (``uvicorn.Config(http=...)``)."""

    #: Whether the transport reads with ``recv(max_size)`` (asyncio's socket transport, not
    #: TLS's), and whether it now reads ``BODY_READ_SIZE``.
    _resizable = False
    _large_reads = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._resizable = hasattr(transport, "max_size")

    def on_body(self, body: bytes) -> None:
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

