"""Server-side sessions: an opaque cookie names a session holding the token, its scope and
catalog; the browser never sees the token.

Contracts:

* The cookie value is 32 random bytes (URL-safe). The store is keyed by its SHA-256, so a
  store's contents (a memory dump, a shared memcached) name no live cookie.
* A session lives ``idle_timeout`` seconds from its last use and never past its token's
  expiry; an expired one is gone (``Sessions.get`` answers None).
* Each session carries its own CSRF token, which every non-GET request must bring back.
* ``SessionStore`` is the one interface the stores implement: ``memory`` (one process) and
  ``memcached`` (several dashboard processes share their sessions through one memcached).
  Sessions go in and out as JSON bytes, so any store that keeps bytes with a time to live
  fits; the same store also keeps the short-lived per-project lists of ``cache``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from stratus.core.config import DashboardSettings

LOG = logging.getLogger(__name__)


@dataclass
class Session:
    """One logged-in browser: the token and what the pages need of its body."""

    token: str
    #: The token's expiry, seconds since the epoch.
    expires_at: float
    user: dict[str, Any]
    project: dict[str, Any]
    roles: list[str]
    catalog: list[dict[str, Any]]
    #: The projects the user can switch to: ``[{"id", "name"}]``.
    projects: list[dict[str, Any]] = field(default_factory=list)
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Session:
        return cls(**json.loads(data))


class SessionStore(Protocol):
    """Where sessions live, by key, each with a time to live in seconds."""

    async def load(self, key: str) -> bytes | None: ...

    async def save(self, key: str, value: bytes, ttl: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """Sessions in this process's memory (one dashboard process). Expired entries are
    dropped when read, and swept now and then as sessions are saved."""

    #: Saves between two sweeps of expired entries.
    SWEEP_EVERY = 256

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[str, tuple[bytes, float]] = {}
        self._saves = 0
        self._clock = clock

    async def load(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._entries[key]
            return None
        return entry[0]

    async def save(self, key: str, value: bytes, ttl: float) -> None:
        now = self._clock()
        self._saves += 1
        if self._saves % self.SWEEP_EVERY == 0:
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
        self._entries[key] = (value, now + ttl)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def aclose(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class StoreUnavailable(Exception):
    """The session store could not be reached (its message names it, never a key)."""


class MemcachedStore:
    """Entries in one memcached (``host:port``), shared by every dashboard process that
    names it. Keys are ASCII and short (a prefix and a hex digest), as memcached requires;
    a time to live is whole seconds, at least 1, at most 30 days (beyond that memcached
    would read it as a date)."""

    MAX_TTL = 30 * 24 * 3600

    def __init__(self, address: str, pool_size: int = 4) -> None:
        import aiomcache  # only when configured

        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"memcached address {address!r} is not host:port.")
        self.address = address
        self._client = aiomcache.Client(host.strip("[]"), int(port), pool_size=pool_size)

    def _failed(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(f"memcached at {self.address} is unreachable "
                                f"({type(exc).__name__}).")

    async def load(self, key: str) -> bytes | None:
        try:
            value: bytes | None = await self._client.get(key.encode())
        except (TimeoutError, OSError, ConnectionError) as exc:
            raise self._failed(exc) from exc
        return value

    async def save(self, key: str, value: bytes, ttl: float) -> None:
        seconds = min(self.MAX_TTL, max(1, math.ceil(ttl)))
        try:
            await self._client.set(key.encode(), value, exptime=seconds)
        except (TimeoutError, OSError, ConnectionError) as exc:
            raise self._failed(exc) from exc

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete(key.encode())
        except (TimeoutError, OSError, ConnectionError) as exc:
            raise self._failed(exc) from exc

    async def aclose(self) -> None:
        await self._client.close()


def store_for(options: DashboardSettings) -> SessionStore:
    """The store ``dashboard.session_store`` names."""
    if options.session_store == "memory":
        return MemoryStore()
    if options.session_store == "memcached":
        return MemcachedStore(options.memcached)
    raise ValueError(f"Unknown session store {options.session_store!r}.")


def _key(cookie: str) -> str:
    return "sess:" + hashlib.sha256(cookie.encode()).hexdigest()


class Sessions:
    """Sessions by cookie, on a ``SessionStore``, each bounded by idle time and its token."""

    def __init__(self, store: SessionStore, idle_timeout: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.idle_timeout = idle_timeout
        self._clock = clock

    def ttl(self, session: Session) -> float:
        """How long ``session`` may live from now (≤ 0: not at all)."""
        return min(self.idle_timeout, session.expires_at - self._clock())

    async def create(self, session: Session) -> str | None:
        """Keep ``session``; the new cookie value naming it, or None when its token has
        already expired."""
        ttl = self.ttl(session)
        if ttl <= 0:
            return None
        cookie = secrets.token_urlsafe(32)
        await self.store.save(_key(cookie), session.to_bytes(), ttl)
        return cookie

    async def get(self, cookie: str | None) -> Session | None:
        """The live session ``cookie`` names, its idle time restarted; None when there is
        none (never was, logged out, idle too long, or its token expired)."""
        if not cookie:
            return None
        key = _key(cookie)
        data = await self.store.load(key)
        if data is None:
            return None
        try:
            session = Session.from_bytes(data)
        except (ValueError, TypeError):  # written by another version: log in again
            await self.store.delete(key)
            return None
        ttl = self.ttl(session)
        if ttl <= 0:
            await self.store.delete(key)
            return None
        await self.store.save(key, data, ttl)
        return session

    async def end(self, cookie: str | None) -> None:
        if cookie:
            await self.store.delete(_key(cookie))
