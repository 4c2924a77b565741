"""A bare HTTP/1.1 keep-alive poster for the boot benchmark's concurrent POSTs.

The benchmark's client shares the 2 cores with the cloud it measures, so its CPU per boot
slows the cloud's wall clock: 100 one-connection ``httpx`` clients still spent ~3.8 ms of the
benchmark process's CPU per POST (a quiet run of ``boot --mode split``; the httpx request
and response models, httpcore's connection state machine, h11's parser, anyio's stream
wrappers). ``RawPoster`` writes one prebuilt request per POST on one keep-alive connection
and reads the answer by ``Content-Length`` (what uvicorn sends for a JSON answer), for a
fraction of that. It is a benchmark's load generator, not a general client: no redirects,
no chunked bodies, no retries (a POST that fails counts as refused, as before).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


class RawPoster:
    """One keep-alive connection to ``base_url``'s host; ``post`` sends one request at a
    time on it (concurrent callers queue on a lock, as on a one-connection pool)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"RawPoster speaks plain http only, not {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._authority = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, headers: dict[str, str],
                   body: dict[str, Any]) -> tuple[int, bytes]:
        """POST ``body`` as JSON to ``path``: the answer's status and body."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (f"POST {self._prefix}{path} HTTP/1.1\r\nHost: {self._authority}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                   f"{head}\r\n").encode() + payload
        async with self._lock:
            if self._writer is None or self._writer.is_closing():
                self._reader, self._writer = await asyncio.open_connection(self._host,
                                                                           self._port)
            assert self._reader is not None
            self._writer.write(request)
            try:
                return await self._answer(self._reader)
            except BaseException:
                await self.aclose()  # the connection's state is unknown now
                raise

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length: int | None = None
        close = False
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding":
                raise RuntimeError("RawPoster cannot read a chunked answer")
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        content = await reader.readexactly(length) if length else b""
        if close:
            await self.aclose()
        return status, content

    async def aclose(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def __aenter__(self) -> RawPoster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
