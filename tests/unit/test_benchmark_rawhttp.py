"""The boot benchmark's bare poster: keep-alive POSTs on one connection, answers read by
Content-Length, a server's ``Connection: close`` honoured."""

from __future__ import annotations

import asyncio
import json

import pytest

from benchmarks._rawhttp import RawPoster


async def _serve(close_after: int | None = None) -> tuple[asyncio.Server, list[int], list[dict]]:
    """A server answering each POST with 202 and its JSON body echoed under ``got``;
    ``connections``: how many connections it accepted."""
    connections: list[int] = []
    seen: list[dict] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        answered = 0
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            lines = head.decode().split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in lines[1:] if line)}
            body = json.loads(await reader.readexactly(int(headers["content-length"])))
            seen.append({"line": lines[0], "token": headers.get("x-auth-token"), **body})
            out = json.dumps({"got": body}).encode()
            answered += 1
            closing = close_after is not None and answered >= close_after
            writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n"
                         + f"content-length: {len(out)}\r\n".encode()
                         + (b"connection: close\r\n" if closing else b"") + b"\r\n" + out)
            await writer.drain()
            if closing:
                break
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, connections, seen


async def test_posts_share_one_keep_alive_connection() -> None:
    server, connections, seen = await _serve()
    port = server.sockets[0].getsockname()[1]
    async with server, RawPoster(f"http://127.0.0.1:{port}/base") as poster:
        answers = await asyncio.gather(*(poster.post("/servers", {"X-Auth-Token": "t"},
                                                     {"n": n}) for n in range(5)))
    assert [status for status, _ in answers] == [202] * 5
    assert sorted(json.loads(body)["got"]["n"] for _, body in answers) == list(range(5))
    assert len(connections) == 1
    assert {s["line"] for s in seen} == {"POST /base/servers HTTP/1.1"}
    assert {s["token"] for s in seen} == {"t"}


async def test_a_connection_the_server_closes_is_opened_again() -> None:
    server, connections, _ = await _serve(close_after=1)
    port = server.sockets[0].getsockname()[1]
    async with server, RawPoster(f"http://127.0.0.1:{port}") as poster:
        for n in range(3):
            status, body = await poster.post("/x", {}, {"n": n})
            assert (status, json.loads(body)["got"]) == (202, {"n": n})
    assert len(connections) == 3


def test_only_plain_http() -> None:
    with pytest.raises(ValueError):
        RawPoster("https://127.0.0.1:1")
