"""Server-side sessions: an opaque cookie names a session holding the token, its scope and
catalog; the browser never sees the token.

Contracts:

* The cookie value is 32 random bytes (URL-safe). The store is keyed by its SHA-256, so a
  store's contents (a memory dump, a shared memcached) name no live cookie.
* A session lives ``idle_timeout`` seconds from its last use and never past its token's
  expiry; an expired one is gone (``Sessions.get`` answers None).
* Each session carries its own CSRF token, which every non-GET request must bring back.
* ``SessionStore`` is the one interface the stores implement (``memory`` now; memcached
  for several dashboard processes later): sessions go in and out as JSON bytes, so any
  store that keeps bytes with a time to live fits.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


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

    def __len__(self) -> int:
        return len(self._entries)


def store_for(kind: str) -> SessionStore:
    """The store ``dashboard.session_store`` names."""
    if kind == "memory":
        return MemoryStore()
    raise ValueError(f"Unknown session store {kind!r}.")


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
