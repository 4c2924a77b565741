"""Uploads over a real connection to Stratus's HTTP server: the file store takes the body
past the event loop (``stratus.image.receive``), records the hashes Glance does, and leaves
nothing behind when the client goes away mid-body."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

import httpx
import pytest

import stratus.image.data
from stratus.image.streams import BATCH
from tests.integration.http_server import serving
from tests.integration.image.conftest import IMAGE, OCTET, ImageCloud, digests

MiB = 1024 * 1024


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the bodies ``stratus.image.receive`` took (the path past the event loop)."""
    sizes: list[int] = []
    real = stratus.image.data.receive

    async def spy(*args: Any, **kwargs: Any) -> Any:
        digest = await real(*args, **kwargs)
        sizes.append(digest.size)
        return digest

    monkeypatch.setattr(stratus.image.data, "receive", spy)
    return sizes


async def test_an_upload_over_a_connection_is_taken_whole_and_hashed(
        cloud: ImageCloud, received: list[int]) -> None:
    data = os.urandom(3 * BATCH + 12345)
    image = await cloud.create()
    async with serving(cloud.app) as port, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        response = await client.put(f"{IMAGE}/images/{image['id']}/file", content=data,
                                    headers={**cloud.admin.headers, **OCTET})
        assert response.status_code == 204, response.text
        shown = await client.get(f"{IMAGE}/images/{image['id']}", headers=cloud.admin.headers)
        download = await client.get(f"{IMAGE}/images/{image['id']}/file",
                                    headers=cloud.admin.headers)
    assert received == [len(data)]
    assert {k: shown.json()[k] for k in digests(data)} == digests(data)
    assert shown.json()["status"] == "active"
    assert download.content == data
    assert download.headers["content-md5"] == hashlib.md5(data).hexdigest()
    assert [p.name for p in cloud.stored_files()] == [image["id"]]


async def test_a_client_gone_mid_body_leaves_nothing(cloud: ImageCloud) -> None:
    image = await cloud.create()
    token = cloud.admin.token.encode()
    async with serving(cloud.app) as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"PUT %s/images/%s/file HTTP/1.1\r\nHost: t\r\nX-Auth-Token: %s\r\n"
                     b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
                     % (IMAGE.encode(), image["id"].encode(), token, 64 * MiB))
        writer.write(os.urandom(3 * BATCH))
        await writer.drain()
        for _ in range(200):  # until it is being written
            if cloud.stored_files() and (await cloud.show(image["id"]))["status"] == "saving":
                break
            await asyncio.sleep(0.05)
        assert all(".staging" in str(p) for p in cloud.stored_files())
        writer.transport.abort()
        for _ in range(200):
            if (await cloud.show(image["id"]))["status"] == "queued":
                break
            await asyncio.sleep(0.05)
    assert (await cloud.show(image["id"]))["status"] == "queued"
    assert cloud.stored_files() == []
    assert (await cloud.upload(image["id"], b"again")).status_code == 204


async def test_a_download_over_a_connection_is_sent_from_the_file(
        cloud: ImageCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole image and a range of it, sent with ``os.sendfile``: never read in chunks."""
    from stratus.image.stores.file import FileReader

    data = os.urandom(2 * BATCH + 777)
    image = await cloud.active_image(data)

    def no_chunks(self: FileReader) -> Any:
        raise AssertionError("read in chunks")

    monkeypatch.setattr(FileReader, "chunks", no_chunks)
    url = f"{IMAGE}/images/{image['id']}/file"
    async with serving(cloud.app) as port, httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        whole = await client.get(url, headers=cloud.admin.headers)
        part = await client.get(url, headers={**cloud.admin.headers,
                                              "Range": f"bytes={BATCH - 5}-{BATCH + 99}"})
        again = await client.get(url, headers=cloud.admin.headers)  # the same connection
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-md5"] == hashlib.md5(data).hexdigest()
    assert part.status_code == 206 and part.content == data[BATCH - 5:BATCH + 100]
    assert part.headers["content-range"] == f"bytes {BATCH - 5}-{BATCH + 99}/{len(data)}"
    assert again.content == data
