"""The dashboard's server-side sessions: bounded by idle time and by their token's life;
the store never holds the cookie itself. Time is a clock the test moves."""

from __future__ import annotations

from stratus.dashboard.sessions import MemoryStore, Session, Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _session(clock: Clock, expires_in: float) -> Session:
    return Session(token="gAAAA-secret-token", expires_at=clock.now + expires_in,
                   user={"id": "u", "name": "alice", "domain": "Default"},
                   project={"id": "p", "name": "demo"}, roles=["member"], catalog=[])


def _sessions(idle: float) -> tuple[Sessions, MemoryStore, Clock]:
    clock = Clock()
    store = MemoryStore(clock=clock)
    return Sessions(store, idle_timeout=idle, clock=clock), store, clock


async def test_a_session_is_found_by_its_cookie_and_the_store_keys_a_hash() -> None:
    sessions, store, clock = _sessions(3600)
    cookie = await sessions.create(_session(clock, 600))
    assert cookie is not None and len(cookie) >= 40
    found = await sessions.get(cookie)
    assert found is not None and found.user["name"] == "alice"
    assert found.csrf and found.csrf != cookie
    assert cookie not in "".join(store._entries)  # keyed by its SHA-256, not the cookie
    assert await sessions.get("forged") is None
    assert await sessions.get(None) is None
    await sessions.end(cookie)
    assert await sessions.get(cookie) is None


async def test_a_session_never_outlives_its_token() -> None:
    sessions, _, clock = _sessions(3600)
    assert await sessions.create(_session(clock, -1)) is None  # already expired: none
    session = _session(clock, 300)
    assert sessions.ttl(session) == 300
    cookie = await sessions.create(session)
    clock.now += 299
    assert await sessions.get(cookie) is not None  # used: idle time restarts, but ...
    clock.now += 2
    assert await sessions.get(cookie) is None  # ... never past the token's expiry


async def test_an_idle_session_ends_and_use_restarts_its_idle_time() -> None:
    sessions, _, clock = _sessions(100)
    cookie = await sessions.create(_session(clock, 10_000))
    for _ in range(5):  # used every 80 s: alive for 400 s, four idle timeouts
        clock.now += 80
        assert await sessions.get(cookie) is not None
    clock.now += 101  # left alone longer than one
    assert await sessions.get(cookie) is None


async def test_sessions_round_trip_as_bytes_for_any_store() -> None:
    session = _session(Clock(), 600)
    assert Session.from_bytes(session.to_bytes()) == session
