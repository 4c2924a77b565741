"""``stratus.units.UnitsStart``: a process running identity and other units serves identity
(a client's first token) before it has started the others; requests to those wait for the
whole start, or get a 503 if it failed; starting them gives way to identity's requests in
flight. Fake units stand in for the real ones (whose start ``test_lazy_units.py`` and the
``startup`` benchmark exercise)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from stratus import units
from stratus.core.config import Settings
from stratus.stack import Stack, Unit
from stratus.units import UnitsStart


class FakeUnits:
    """An identity-api, an API of another service and a bus-only unit, recording which
    were started; identity's requests can be held open (``identity_release``)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.identity_release = asyncio.Event()
        self.identity_release.set()
        self.identity_entered = asyncio.Event()
        self.fail_other = False

    def answer(self, name: str) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if name == "identity-api":
                self.identity_entered.set()
                await self.identity_release.wait()
            await PlainTextResponse(name)(scope, receive, send)
        return app

    def units(self) -> dict[str, Unit]:
        async def identity(_: Stack) -> ASGIApp:
            self.started.append("identity-api")
            return self.answer("identity-api")

        async def other(_: Stack) -> ASGIApp:
            if self.fail_other:
                raise RuntimeError("other did not start")
            self.started.append("other-api")
            return self.answer("other-api")

        async def agent(_: Stack) -> None:
            self.started.append("agent")

        return {"identity-api": Unit("identity-api", "/identity", identity),
                "other-api": Unit("other-api", "/other", other),
                "agent": Unit("agent", None, agent)}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeUnits]:
    fake = FakeUnits()
    monkeypatch.setattr(units, "UNITS", fake.units())
    yield fake


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return Stack(Settings(data_dir=tmp_path, bus_url="memory://"))


def client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@dataclass
class Serving:
    start: UnitsStart
    http: httpx.AsyncClient


@pytest.fixture
async def early(fake: FakeUnits, stack: Stack) -> AsyncIterator[Serving]:
    """The three fake units after ``first()`` (identity served, the others not started yet)
    and a client of the root app."""
    start = UnitsStart(stack, ["identity-api", "other-api", "agent"])
    app = await start.first()
    async with client(app) as http:
        yield Serving(start, http)


async def test_identity_serves_before_the_others_start_and_their_requests_wait(
        fake: FakeUnits, early: Serving) -> None:
    start, http = early.start, early.http
    assert start.serves_early
    assert fake.started == ["identity-api"]
    assert (await http.get("/identity/v3")).text == "identity-api"
    waiting = asyncio.ensure_future(http.get("/other/v2.0"))
    await start.rest()
    assert fake.started == ["identity-api", "other-api", "agent"]
    await asyncio.sleep(0.05)
    assert not waiting.done()  # started, but the whole start (open) is not done yet
    start.open()
    assert (await waiting).text == "other-api"
    assert (await http.get("/other/v2.0")).text == "other-api"
    index = (await http.get("/")).json()
    assert [unit["unit"] for unit in index["stratus"]["units"]] == [
        "identity-api", "other-api", "agent"]


async def test_requests_held_for_a_start_that_failed_get_a_503(
        fake: FakeUnits, early: Serving) -> None:
    start, http = early.start, early.http
    fake.fail_other = True
    waiting = asyncio.ensure_future(http.get("/other/v2.0"))
    with pytest.raises(RuntimeError):
        await start.rest()
    start.fail(RuntimeError("the start failed"))
    response = await waiting
    assert response.status_code == 503
    assert "other-api did not start" in response.text
    assert (await http.get("/identity/v3")).status_code == 200


async def test_starting_the_others_gives_way_to_identity_requests_in_flight(
        fake: FakeUnits, early: Serving) -> None:
    start, http = early.start, early.http
    fake.identity_release.clear()
    token = asyncio.ensure_future(http.post("/identity/v3/auth/tokens"))
    await fake.identity_entered.wait()
    rest = asyncio.ensure_future(start.rest())
    await asyncio.sleep(0.1)
    assert fake.started == ["identity-api"]  # waits while the request is in flight
    fake.identity_release.set()
    assert (await token).text == "identity-api"
    await rest
    assert fake.started == ["identity-api", "other-api", "agent"]


async def test_giving_way_is_bounded(fake: FakeUnits, early: Serving) -> None:
    fake.identity_release.clear()
    token = asyncio.ensure_future(early.http.post("/identity/v3/auth/tokens"))
    await fake.identity_entered.wait()
    async with asyncio.timeout(5):
        await early.start.give_way(at_most=0.05)
    fake.identity_release.set()
    await token


async def test_without_identity_every_unit_starts_before_serving(
        fake: FakeUnits, stack: Stack) -> None:
    start = UnitsStart(stack, ["other-api", "agent"])
    app = await start.first()
    assert not start.serves_early
    assert fake.started == ["other-api", "agent"]
    async with client(app) as http:
        assert (await http.get("/other/v2.0")).text == "other-api"
    await start.rest()  # nothing left
    assert fake.started == ["other-api", "agent"]


async def test_root_app_starts_every_unit(fake: FakeUnits, stack: Stack) -> None:
    app = await units.root_app(stack, ["identity-api", "other-api", "agent"])
    assert fake.started == ["identity-api", "other-api", "agent"]
    async with client(app) as http:
        assert (await http.get("/other/v2.0")).text == "other-api"
