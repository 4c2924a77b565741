"""A request body read straight from the connection's socket, in a worker thread.

An image upload is a GiB and more of body that the application only hashes and writes. Read
through the ASGI ``receive`` path, every piece the event loop reads (~0.4 MiB on loopback)
costs a trip through the loop, the protocol, the middlewares and the application's task, and
a fresh ``bytes`` object the store then copies again into its aligned buffer: about half of
the upload's CPU beside the hashes (``benchmarks/profiles/image-2026-12-07.md``).

``stratus.core.web.http_protocol`` offers the rest of a body of known length as the ASGI
extension ``EXTENSION``: its ``take`` (on the event loop, before the application has read
any of the body with ``receive``) stops the event loop reading the connection and hands back
a ``SocketBody``, or None when that cannot be done (TLS, the body already whole, the client
gone); the application then reads with ``receive`` as usual. A ``SocketBody`` is read with
``readinto`` from one worker thread (straight into the caller's buffer, the kernel's copy
the only one) and must be ``close``-d on the event loop when done, read whole or not: the
connection is then given back to the protocol, which reads the next request on it, or, when
the body was not read to its end, closes it after the response.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import ClientDisconnect

#: The scope's ``extensions`` key; its value is ``{"take": () -> SocketBody | None}``.
EXTENSION = "stratus.socket_body"
#: The scope's ``extensions`` key of a GET on a plain TCP connection: ``{"send": async
#: (file, offset, count) -> bool}`` sends a file's bytes as the next part of the response
#: body with ``os.sendfile`` once the response's head is out (False: not done, send them
#: as usual).
SENDFILE = "stratus.sendfile"
#: Seconds a read waits before it looks whether the body was cancelled (then waits again).
POLL_SECONDS = 0.5


class SocketBody:
    """The ``length`` bytes left of a request body: ``pending`` (received already), then the
    socket's. ``readinto`` runs in one worker thread at a time; ``cancel`` from anywhere
    makes it stop within ``POLL_SECONDS``; ``close`` runs on the event loop, once."""

    def __init__(self, sock: socket.socket, pending: bytes, length: int,
                 release: Callable[[int], None]) -> None:
        self._sock = sock
        self._pending = memoryview(pending)
        self._from_socket = length - len(pending)
        #: Bytes of the body not handed to the reader yet (pending ones included).
        self.left = length
        self.length = length
        self._release: Callable[[int], None] | None = release
        self._cancelled = threading.Event()
        self._sock.settimeout(POLL_SECONDS)

    def readinto(self, view: memoryview) -> int:
        """Fill the start of ``view`` with the next bytes of the body: how many (at least
        one while any are left, 0 at its end). Raises ``ClientDisconnect`` when the
        connection ends (or the body is cancelled) before the body does."""
        if self.left <= 0:
            return 0
        want = min(len(view), self.left)
        if self._pending:
            count = min(want, len(self._pending))
            view[:count] = self._pending[:count]
            self._pending = self._pending[count:]
            self.left -= count
            return count
        while True:
            if self._cancelled.is_set():
                raise ClientDisconnect()
            try:
                count = self._sock.recv_into(view, want)
            except TimeoutError:
                continue
            except OSError as exc:
                raise ClientDisconnect() from exc
            if count == 0:
                raise ClientDisconnect()
            self.left -= count
            self._from_socket -= count
            return count

    def cancel(self) -> None:
        """Make a ``readinto`` under way (or the next) raise ``ClientDisconnect``."""
        self._cancelled.set()

    def close(self) -> None:
        """Give the connection back (on the event loop, once no ``readinto`` runs), with
        how many bytes of the body are still on it."""
        release, self._release = self._release, None
        if release is None:
            return
        with contextlib.suppress(OSError):
            self._sock.close()  # our duplicate of the descriptor, not the connection
        release(self._from_socket)


def take_from(scope: Mapping[str, Any]) -> SocketBody | None:
    """The request's body as a ``SocketBody``, when the server offers it (else None)."""
    extensions = scope.get("extensions")
    if not isinstance(extensions, dict):
        return None
    offer = extensions.get(EXTENSION)
    if not isinstance(offer, dict) or not callable(offer.get("take")):
        return None
    body = offer["take"]()
    return body if isinstance(body, SocketBody) else None
