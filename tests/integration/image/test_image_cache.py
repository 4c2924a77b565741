"""The compute host's image cache against a real image service (over its REST API only)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from stratus.core.context import RequestContext
from stratus.core.http import service_http_client
from stratus.core.images_cache import (
    HostImages,
    ImageCache,
    ImageCorrupt,
    ImageNotAvailable,
)
from tests.integration.image.conftest import PUBLIC_URL, ImageCloud

MiB = 1024 * 1024


class Counting:
    """Wraps the cloud's app and counts requests by (method, path); can slow the file GET."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls: Counter[tuple[str, str]] = Counter()
        self.file_delay = 0.0

    def files(self) -> int:
        return sum(n for (m, p), n in self.calls.items() if m == "GET" and p.endswith("/file"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.calls[(scope["method"], scope["path"])] += 1
            if scope["path"].endswith("/file") and self.file_delay:
                await asyncio.sleep(self.file_delay)
        await self.app(scope, receive, send)


@pytest.fixture
async def counted(cloud: ImageCloud) -> Counting:
    return Counting(cloud.app)


@pytest.fixture
async def cache(counted: Counting, tmp_path: Path) -> AsyncIterator[ImageCache]:
    client = service_http_client(transport=httpx.ASGITransport(app=counted))
    cache = ImageCache(tmp_path / "cache", f"{PUBLIC_URL}/image", client=client,
                       max_bytes=3 * MiB, max_age=3600)
    yield cache
    await client.aclose()


async def test_twenty_concurrent_requests_one_download(cloud: ImageCloud, cache: ImageCache,
                                                       counted: Counting) -> None:
    data = os.urandom(MiB + 17)
    image = await cloud.active_image(data)
    counted.file_delay = 0.2  # every request arrives while the one download is under way
    paths = await asyncio.gather(*(cache.fetch(image["id"], cloud.admin.token)
                                   for _ in range(20)))
    assert len(set(paths)) == 1
    assert counted.files() == 1 and cache.downloads == 1
    assert paths[0].read_bytes() == data
    assert hashlib.sha512(paths[0].read_bytes()).hexdigest() == image["os_hash_value"]
    assert [p.name for p in cache.directory.iterdir()] == [image["id"]]  # no partials left
    # Later requests are served from the cache too.
    assert await cache.fetch(image["id"], cloud.admin.token) == paths[0]
    assert counted.files() == 1


async def test_corrupted_entry_is_fetched_again(cloud: ImageCloud, cache: ImageCache,
                                                counted: Counting) -> None:
    data = os.urandom(256 * 1024)
    image = await cloud.active_image(data)
    path = await cache.fetch(image["id"], cloud.admin.token)
    with path.open("r+b") as handle:  # flip one byte in place: same size
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert await cache.fetch(image["id"], cloud.admin.token) == path
    assert counted.files() == 2
    assert path.read_bytes() == data
    path.write_bytes(data[:100])  # truncated
    await cache.fetch(image["id"], cloud.admin.token)
    assert counted.files() == 3 and path.read_bytes() == data


async def test_access_follows_the_image_service(cloud: ImageCloud, cache: ImageCache,
                                                counted: Counting) -> None:
    owner, stranger = await cloud.project(), await cloud.project()
    image = await cloud.active_image(b"private bits", owner, visibility="private")
    await cache.fetch(image["id"], owner.token)
    with pytest.raises(ImageNotAvailable):
        await cache.fetch(image["id"], stranger.token)  # cached, yet not served to others
    queued = await cloud.create(owner)
    with pytest.raises(ImageNotAvailable):
        await cache.fetch(queued["id"], owner.token)
    assert counted.files() == 1


async def test_data_not_matching_its_hash_is_not_cached(cloud: ImageCloud, cache: ImageCache,
                                                        counted: Counting) -> None:
    image = await cloud.active_image(b"A" * 4096)
    stored = cloud.store_dir / image["id"]
    stored.write_bytes(b"B" * 4096)  # the store's copy rots behind the service's back
    with pytest.raises(ImageCorrupt):
        await cache.fetch(image["id"], cloud.admin.token)
    assert list(cache.directory.iterdir()) == []


async def test_eviction_by_age_and_size(cloud: ImageCloud, cache: ImageCache) -> None:
    images = [await cloud.active_image(bytes([i]) * MiB) for i in range(4)]
    ids = [i["id"] for i in images]
    token = cloud.admin.token
    for image_id in (ids[0], ids[1], ids[2], ids[0]):  # the cache is full (3 MiB)
        await cache.fetch(image_id, token)
    # A fourth image makes room by evicting the least recently used one (ids[1]).
    await cache.fetch(ids[3], token)
    assert sorted(e.image_id for e in cache.entries()) == sorted([ids[0], ids[2], ids[3]])
    assert sum(e.size for e in cache.entries()) <= 3 * MiB
    # Unused for longer than max_age: evicted, unless an instance still uses it.
    old = time.time() - 7200
    path = cache.path_of(ids[2])
    os.utime(path, (old, path.stat().st_mtime))
    assert await cache.evict(keep=[ids[2]]) == []
    assert await cache.evict() == [ids[2]]
    assert sorted(e.image_id for e in cache.entries()) == sorted([ids[0], ids[3]])


class StaleServiceToken:
    """A host's service credentials whose cached token was revoked: the image service
    refuses it until it is fetched again."""

    def __init__(self, fresh: str) -> None:
        self.fresh = fresh
        self.current = "revoked-service-token"
        self.refreshes = 0

    async def token(self, refresh: bool = False) -> str:
        if refresh:
            self.refreshes += 1
            self.current = self.fresh
        return self.current

    async def find_endpoint(self, service_type: str,
                            interface: str = "public") -> str | None:
        return f"{PUBLIC_URL}/{service_type}"


async def test_a_host_refreshes_its_service_token_once_on_a_401(
        cloud: ImageCloud, counted: Counting, tmp_path: Path) -> None:
    owner = await cloud.project()
    image = await cloud.active_image(b"host bits", owner, visibility="private")
    tokens = StaleServiceToken(cloud.admin.token)
    client = service_http_client(transport=httpx.ASGITransport(app=counted))
    try:
        host = HostImages(tmp_path / "host-cache", tokens, client)
        local = await host.local_image(RequestContext(auth_token=owner.token), image["id"])
        assert local.path.read_bytes() == b"host bits"
        assert tokens.refreshes == 1
        assert counted.calls[("GET", f"/image/v2/images/{image['id']}")] == 2  # 401, then 200
        assert counted.files() == 1
        # The refreshed token is kept: the next fetch needs no second refresh.
        await host.local_image(RequestContext(auth_token=owner.token), image["id"])
        assert tokens.refreshes == 1
    finally:
        await client.aclose()
