"""Request bodies through Stratus's HTTP protocol (``stratus.core.web.http_protocol``): whole
and in order whatever the pieces they arrive in, handed over as ``bytes``, with a request on
the same connection after a large body read as before."""

from __future__ import annotations

import asyncio
import hashlib
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from stratus.core.web.socket_body import take_from
from tests.integration.http_server import read_answer, serving

MiB = 1024 * 1024


async def _digest(request: Request) -> PlainTextResponse:
    digest = hashlib.sha256()
    async for chunk in request.stream():
        assert type(chunk) is bytes  # as ASGI says, whichever way it was gathered
        digest.update(chunk)
    return PlainTextResponse(digest.hexdigest())


async def test_bodies_arrive_whole_in_any_pieces_and_the_connection_goes_on() -> None:
    large = os.urandom(24 * MiB + 123)
    # Chunked encoding in small chunks: many pieces in one read, joined for the app.
    pieces = [large[i:i + 1000] for i in range(0, 2 * MiB, 1000)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    small = b'{"a": 1}'
    async with serving(Starlette(routes=[Route("/", _digest, methods=["PUT"])])) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(large))
            # Written in uneven pieces, some while the server reads.
            for i in range(0, len(large), 3 * MiB + 17):
                writer.write(large[i:i + 3 * MiB + 17])
                await writer.drain()
            expected = hashlib.sha256(large).hexdigest().encode()
            assert await read_answer(reader, 60) == b"HTTP/1.1 200 OK " + expected

            writer.write(b"PUT / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + chunked + b"0\r\n\r\n")
            expected = hashlib.sha256(b"".join(pieces)).hexdigest().encode()
            assert await read_answer(reader, 60) == b"HTTP/1.1 200 OK " + expected

            writer.write(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(small), small))
            expected = hashlib.sha256(small).hexdigest().encode()
            assert await read_answer(reader, 60) == b"HTTP/1.1 200 OK " + expected
        finally:
            writer.close()


async def test_a_body_ending_in_the_read_that_starts_the_next_request() -> None:
    """A sized body read past the parser ends where its length says, mid-read: the rest of
    that read is the next request (pipelined), parsed as usual."""
    first, second = os.urandom(3 * MiB + 5), os.urandom(1000)
    async with serving(Starlette(routes=[Route("/", _digest, methods=["PUT"])])) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(first))
            writer.write(first[:MiB])
            await writer.drain()
            await asyncio.sleep(0.2)  # the server has the head and a part of the body
            writer.write(first[MiB:] + b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: %d"
                         b"\r\n\r\n%s" % (len(second), second))
            await writer.drain()
            assert await read_answer(reader, 60) == (
                b"HTTP/1.1 200 OK " + hashlib.sha256(first).hexdigest().encode())
            assert await read_answer(reader, 60) == (
                b"HTTP/1.1 200 OK " + hashlib.sha256(second).hexdigest().encode())
        finally:
            writer.close()


async def test_a_body_read_past_the_parser_still_ends_with_a_bad_request_after_it() -> None:
    """What follows a sized body goes to a fresh parser, which still refuses garbage."""
    body = os.urandom(2 * MiB)
    async with serving(Starlette(routes=[Route("/", _digest, methods=["PUT"])])) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(body)
            await writer.drain()
            assert await read_answer(reader, 60) == (
                b"HTTP/1.1 200 OK " + hashlib.sha256(body).hexdigest().encode())
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
            assert (await read_answer(reader, 60)).startswith(b"HTTP/1.1 400 ")
        finally:
            writer.close()


async def _taken(request: Request) -> PlainTextResponse:
    """Reads the body as a ``SocketBody`` (from a worker thread), up to ``?stop=N`` bytes
    when given: the digest of what it read, and ``taken`` or ``not taken``."""
    body = take_from(request.scope)
    if body is None:
        digest = hashlib.sha256()
        async for chunk in request.stream():
            digest.update(chunk)
        return PlainTextResponse(f"not taken {digest.hexdigest()}")
    stop = int(request.query_params.get("stop", body.length))

    def read() -> str:
        digest, buffer = hashlib.sha256(), bytearray(MiB)
        read = 0
        with memoryview(buffer) as view:
            while read < stop and (count := body.readinto(view[:min(MiB, stop - read)])):
                digest.update(view[:count])
                read += count
        return digest.hexdigest()

    try:
        digest = await asyncio.to_thread(read)
    finally:
        body.close()
    return PlainTextResponse(f"taken {digest}")


async def test_a_body_taken_past_the_event_loop_and_the_connection_goes_on() -> None:
    """A sized body handed over as a ``SocketBody`` (the part received with the head first),
    read whole; the next request on the connection is read as usual. A body that came whole
    with its head, and a chunked one, are not offered (``receive`` has them)."""
    first, second = os.urandom(9 * MiB + 7), os.urandom(1000)
    pieces = [second[i:i + 100] for i in range(0, len(second), 100)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    async with serving(Starlette(routes=[Route("/", _taken, methods=["PUT"])])) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(first), first[:1000]))
            await writer.drain()
            await asyncio.sleep(0.2)  # the head and a part of the body are in
            writer.write(first[1000:] + b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: %d"
                         b"\r\n\r\n%s" % (len(second), second))
            await writer.drain()
            assert await read_answer(reader, 60) == (
                b"HTTP/1.1 200 OK taken " + hashlib.sha256(first).hexdigest().encode())
            assert await read_answer(reader, 60) == (
                b"HTTP/1.1 200 OK not taken " + hashlib.sha256(second).hexdigest().encode())
            writer.write(b"PUT / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + chunked + b"0\r\n\r\n")
            assert await read_answer(reader, 60) == (
                b"HTTP/1.1 200 OK not taken " + hashlib.sha256(second).hexdigest().encode())
        finally:
            writer.close()


async def test_a_body_taken_and_left_unread_is_dropped_before_the_next_request() -> None:
    """A ``SocketBody`` closed before its end: the rest of the body is read and dropped
    (as uvicorn drops a body the application did not read), never parsed as a request, and
    the next request on the connection is answered."""
    body = os.urandom(4 * MiB)
    async with serving(Starlette(routes=[Route("/", _taken, methods=["PUT"])])) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"PUT /?stop=%d HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                         % (MiB, len(body)))
            writer.write(body[:2 * MiB])
            await writer.drain()
            assert await read_answer(reader, 60) == (
                b"HTTP/1.1 200 OK taken " + hashlib.sha256(body[:MiB]).hexdigest().encode())
            writer.write(body[2 * MiB:] + b"PUT / HTTP/1.1\r\nHost: t\r\n"
                         b"Content-Length: 3\r\n\r\nabc")
            await writer.drain()
            assert await read_answer(reader, 60) == (
                b"HTTP/1.1 200 OK not taken " + hashlib.sha256(b"abc").hexdigest().encode())
        finally:
            writer.close()


async def _partly(request: Request) -> PlainTextResponse:
    """Receives the first piece of the body, then asks for the rest as a ``SocketBody``."""
    first = await request.receive()
    taken = take_from(request.scope)
    digest = hashlib.sha256(first["body"])
    more = first.get("more_body", False)
    while more:
        message = await request.receive()
        digest.update(message.get("body", b""))
        more = message.get("more_body", False)
    return PlainTextResponse(f"{'taken' if taken else 'not taken'} {digest.hexdigest()}")


async def test_a_body_partly_received_is_not_offered_as_a_socket() -> None:
    """The rest of a body the application has begun to ``receive`` is not a whole body:
    it is not handed over (the application would miss the piece it has)."""
    body = os.urandom(3 * MiB)
    async with serving(Starlette(routes=[Route("/", _partly, methods=["PUT"])])) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body[:1000]))
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(body[1000:])
            await writer.drain()
            assert await read_answer(reader, 60) == (
                b"HTTP/1.1 200 OK not taken " + hashlib.sha256(body).hexdigest().encode())
        finally:
            writer.close()
