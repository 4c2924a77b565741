"""A host's image cache: base images fetched from the image service, verified.

Compute hosts boot from it and volume hosts make volumes from it; neither owns it. It reads
the Image API over REST only (``stratus.core.clients.image.ImageClient``), like any other
client: ``fetch(image_id, token)`` asks ``GET /v2/images/{id}`` with the caller's token (so
nobody gets an image they cannot see),
then returns a local file whose hash matches the image's ``os_hash_value``. Concurrent
requests for one image share one download (a lock per image); a cached file whose content
no longer matches is detected (re-hashed whenever its size or mtime changed, and once per
process) and fetched again. ``evict()`` removes base images unused for ``max_age`` seconds,
then the least recently used ones until the cache fits ``max_bytes``; images named in
``keep`` (the host's instances use them) and ones being fetched are never removed.

Layout: ``<directory>/<image id>`` per image; downloads go to ``<directory>/.partial-*`` and
are renamed into place only once verified. Last use is the file's access time, set on every
``fetch``.

``HostImages.local_image(ctx, image_id)`` is a host's way in: it finds the image service in
the catalog through the host's service credentials, then fetches with the user's token plus
the service token (so a build that waited long still gets it; a 401 refreshes it once).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from stratus.core.clients.base import KeystoneAuth, ServiceTokens
from stratus.core.clients.image import ImageClient
from stratus.core.context import RequestContext
from stratus.core.exceptions import NotFound, StratusError
from stratus.core.http import service_http_client
from stratus.core.metrics import IMAGE_CACHE_BYTES

LOG = logging.getLogger(__name__)

PARTIAL_PREFIX = ".partial-"
WRITE_BATCH = 4 * 1024 * 1024
HASH_BLOCK = 4 * 1024 * 1024
_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z-]{0,63}$")


class ImageCacheError(Exception):
    """The image could not be made available on this host."""


class ImageNotAvailable(ImageCacheError):
    """The image service does not show this image to the caller, or it has no data."""


class ImageCorrupt(ImageCacheError):
    """The bytes received do not match the image's recorded hash."""


@dataclass(frozen=True)
class _Expected:
    algo: str
    value: str
    size: int | None
    disk_format: str | None = None


@dataclass(frozen=True)
class CachedImage:
    """A verified local copy and the format the image service records for it."""

    path: Path
    disk_format: str | None


@dataclass(frozen=True)
class CacheEntry:
    image_id: str
    path: Path
    size: int
    last_used: float


def _hash_file(path: Path, algo: str) -> str:
    digest = hashlib.new(algo)
    with path.open("rb", buffering=0) as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class ImageCache:
    def __init__(self, directory: Path, endpoint: str, *, max_bytes: int | None = None,
                 max_age: float = 24 * 3600, client: httpx.AsyncClient | None = None,
                 timeout: float = 300.0) -> None:
        """``endpoint`` is the image service's catalog URL (``http://h:8080/image``)."""
        self.directory = directory
        self.endpoint = endpoint.rstrip("/")
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.client = client or service_http_client(timeout=timeout)
        self._own_client = client is None
        self.images = ImageClient(self.client)
        self._locks: dict[str, asyncio.Lock] = {}
        self._busy: dict[str, int] = {}
        #: (inode, size, mtime_ns) → (algo, hash) of files verified by this process.
        self._verified: dict[tuple[int, int, int], tuple[str, str]] = {}
        #: Downloads made (each one a ``GET .../file``); for tests and metrics.
        self.downloads = 0
        self.directory.mkdir(parents=True, exist_ok=True)

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()

    def path_of(self, image_id: str) -> Path:
        if not _ID_RE.match(image_id):
            raise ImageNotAvailable(f"Not an image id: {image_id!r}")
        return self.directory / image_id

    # Fetch --------------------------------------------------------------------------------

    async def fetch(self, image_id: str, token: str, *,
                    service_token: str | None = None) -> Path:
        """A local, verified copy of the image's data (downloaded at most once at a time)."""
        return (await self.fetch_image(image_id, token, service_token=service_token)).path

    async def fetch_image(self, image_id: str, token: str, *,
                          service_token: str | None = None) -> CachedImage:
        """As ``fetch``, with the image's ``disk_format`` (what a hypervisor reads it as)."""
        return await self.fetch_as(image_id, KeystoneAuth(user_token=token,
                                                          service_token=service_token))

    async def fetch_as(self, image_id: str, auth: httpx.Auth) -> CachedImage:
        """As ``fetch_image``, asking the image service with ``auth``."""
        path = self.path_of(image_id)
        self._busy[image_id] = self._busy.get(image_id, 0) + 1
        try:
            expected = await self._expected(image_id, auth)
            lock = self._locks.setdefault(image_id, asyncio.Lock())
            async with lock:
                if not await self._is_valid(path, expected):
                    await self._download(image_id, auth, path, expected)
                try:
                    await asyncio.to_thread(self._touch, path)
                except FileNotFoundError:  # evicted just now, by a sweep already under way
                    await self._download(image_id, auth, path, expected)
                    await asyncio.to_thread(self._touch, path)
            return CachedImage(path, expected.disk_format)
        finally:
            self._busy[image_id] -= 1
            if not self._busy[image_id]:
                del self._busy[image_id]
                idle = self._locks.get(image_id)
                if idle is not None and not idle.locked():
                    del self._locks[image_id]

    async def _expected(self, image_id: str, auth: httpx.Auth) -> _Expected:
        try:
            image = await self.images.show(self.endpoint, image_id, auth)
        except NotFound as exc:
            raise ImageNotAvailable(f"Image {image_id} not found.") from exc
        except StratusError as exc:
            raise ImageCacheError(f"Image service answered {exc.status} for image "
                                  f"{image_id}: {exc.message[:200]}") from exc
        if image.get("status") != "active":
            raise ImageNotAvailable(f"Image {image_id} is {image.get('status')}, not active.")
        if image.get("os_hash_value") and image.get("os_hash_algo"):
            algo, value = str(image["os_hash_algo"]), str(image["os_hash_value"])
        elif image.get("checksum"):
            algo, value = "md5", str(image["checksum"])
        else:
            raise ImageCacheError(f"Image {image_id} has no hash to verify its data with.")
        if algo not in hashlib.algorithms_available:
            raise ImageCacheError(f"Image {image_id} is hashed with {algo}, unknown here.")
        size = image.get("size")
        disk_format = image.get("disk_format")
        return _Expected(algo, value.lower(), size if isinstance(size, int) else None,
                         str(disk_format) if disk_format else None)

    async def _is_valid(self, path: Path, expected: _Expected) -> bool:
        st = await asyncio.to_thread(_stat, path)
        if st is None:
            return False
        if expected.size is not None and st.st_size != expected.size:
            LOG.warning("cached image %s has %d bytes, expected %d: fetching again",
                        path.name, st.st_size, expected.size)
            await asyncio.to_thread(self._remove, path)
            return False
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._verified.get(key) == (expected.algo, expected.value):
            return True
        actual = await asyncio.to_thread(_hash_file, path, expected.algo)
        if actual != expected.value:
            LOG.warning("cached image %s is corrupt (%s mismatch): fetching again",
                        path.name, expected.algo)
            await asyncio.to_thread(self._remove, path)
            return False
        self._verified[key] = (expected.algo, expected.value)
        return True

    async def _download(self, image_id: str, auth: httpx.Auth, path: Path,
                        expected: _Expected) -> None:
        if expected.size is not None:
            await self.evict(need=expected.size)
        partial = self.directory / f"{PARTIAL_PREFIX}{image_id}-{secrets.token_hex(4)}"
        digest = hashlib.new(expected.algo)
        md5 = hashlib.md5(usedforsecurity=False)
        self.downloads += 1
        handle = await asyncio.to_thread(partial.open, "wb", buffering=0)
        try:
            with handle:
                async with self._open(image_id, auth) as response:
                    content_md5 = response.headers.get("content-md5")
                    batch: list[bytes] = []
                    batched = 0
                    async for chunk in response.aiter_bytes():
                        batch.append(chunk)
                        batched += len(chunk)
                        IMAGE_CACHE_BYTES.inc(len(chunk))
                        if batched >= WRITE_BATCH:
                            await asyncio.to_thread(_consume, b"".join(batch), handle,
                                                    digest, md5)
                            batch, batched = [], 0
                    if batch:
                        await asyncio.to_thread(_consume, b"".join(batch), handle, digest, md5)
            actual = digest.hexdigest()
            if actual != expected.value:
                raise ImageCorrupt(f"Image {image_id} arrived with {expected.algo} {actual}, "
                                   f"expected {expected.value}.")
            if content_md5 and md5.hexdigest() != content_md5.lower():
                raise ImageCorrupt(f"Image {image_id} does not match its Content-MD5.")
            await asyncio.to_thread(os.replace, partial, path)
        except BaseException:
            await asyncio.to_thread(self._remove, partial)
            raise
        st = await asyncio.to_thread(path.stat)
        self._verified[(st.st_ino, st.st_size, st.st_mtime_ns)] = (expected.algo,
                                                                   expected.value)
        LOG.info("cached image %s (%d bytes)", image_id, st.st_size)

    @contextlib.asynccontextmanager
    async def _open(self, image_id: str, auth: httpx.Auth) -> AsyncIterator[httpx.Response]:
        try:
            async with self.images.open_data(self.endpoint, image_id, auth) as response:
                yield response
        except StratusError as exc:
            raise ImageCacheError(f"Downloading image {image_id} answered {exc.status}."
                                  ) from exc

    @staticmethod
    def _touch(path: Path) -> None:
        st = path.stat()
        os.utime(path, ns=(time.time_ns(), st.st_mtime_ns))

    def _remove(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    # Eviction -----------------------------------------------------------------------------

    def entries(self) -> list[CacheEntry]:
        """Cached images, least recently used first."""
        found = []
        for path in self.directory.iterdir():
            if path.name.startswith(".") or not _ID_RE.match(path.name):
                continue
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                found.append(CacheEntry(path.name, path, st.st_size, st.st_atime))
        return sorted(found, key=lambda e: e.last_used)

    async def evict(self, keep: Iterable[str] = (), *, need: int = 0) -> list[str]:
        """Remove unused base images: too old, then least recently used beyond ``max_bytes``.

        ``need`` bytes are made room for (a download about to start). Returns the ids removed.
        """
        # Read here, in the event loop: fetches change ``_busy`` while the thread runs.
        return await asyncio.to_thread(self._evict, set(keep) | set(self._busy), need)

    def _evict(self, protected: set[str], need: int) -> list[str]:
        now = time.time()
        removed: list[str] = []
        entries = self.entries()
        for entry in list(entries):
            if entry.image_id in protected:
                continue
            if now - entry.last_used > self.max_age:
                self._remove(entry.path)
                removed.append(entry.image_id)
                entries.remove(entry)
        if self.max_bytes is not None:
            total = sum(e.size for e in entries) + need
            for entry in entries:
                if total <= self.max_bytes:
                    break
                if entry.image_id in protected:
                    continue
                self._remove(entry.path)
                removed.append(entry.image_id)
                total -= entry.size
        for partial in self.directory.glob(f"{PARTIAL_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                if now - partial.stat().st_mtime > 3600:
                    partial.unlink()
        if removed:
            LOG.info("evicted %d cached image(s): %s", len(removed), ", ".join(removed))
        return removed


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _consume(data: bytes, handle: Any, digest: Any, md5: Any) -> None:
    handle.write(data)
    digest.update(data)
    md5.update(data)


class HostImages:
    """A host's cache (made on first use, once the image endpoint is known), fetched into
    with the user's token and this host's refreshable service token."""

    def __init__(self, directory: Path, service_auth: ServiceTokens,
                 client: httpx.AsyncClient) -> None:
        self.directory = directory
        self.images = ImageClient(client, service_auth)
        self._cache: ImageCache | None = None
        self._lock = asyncio.Lock()

    async def cache(self) -> ImageCache:
        async with self._lock:
            if self._cache is None:
                endpoint = await self.images.endpoint()
                self._cache = ImageCache(self.directory, endpoint, client=self.images.client)
            return self._cache

    async def image_info(self, ctx: RequestContext, image_id: str) -> dict[str, Any]:
        """The image's record as a service sees it (with ``direct_url`` where the store
        gives one): the user's token and this host's service token."""
        cache = await self.cache()
        auth = KeystoneAuth(user_token=ctx.auth_token, service=self.images.service_auth)
        image: dict[str, Any] = await self.images.show(cache.endpoint, image_id, auth)
        return image

    async def local_image(self, ctx: RequestContext, image_id: str) -> CachedImage:
        cache = await self.cache()
        # The user's token only (not one they brought along): the host's own service
        # token goes with it, refreshed on a 401.
        auth = KeystoneAuth(user_token=ctx.auth_token, service=self.images.service_auth)
        return await cache.fetch_as(image_id, auth)
