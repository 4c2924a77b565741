"""``LazyApp`` builds its app once, off the event loop: while one API is being built, the
others answer; the requests that arrive meanwhile wait for that one build."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from stratus.core.web.lazy import LazyApp


class Builds:
    """A build function that counts its runs, and can be held until released."""

    def __init__(self, name: str, *, held: bool = False, fail_first: bool = False) -> None:
        self.name = name
        self.runs = 0
        self.threads: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not held:
            self.release.set()
        self._fail_first = fail_first

    def __call__(self) -> Starlette:
        self.runs += 1
        self.threads.append(threading.current_thread().name)
        self.started.set()
        # Bounded, so a build that (wrongly) ran on the event loop ends the test with a
        # failure instead of hanging it.
        self.release.wait(timeout=30)
        if self._fail_first and self.runs == 1:
            raise RuntimeError("the first build fails")

        async def hello(request: Request) -> PlainTextResponse:
            return PlainTextResponse(f"{self.name} {id(request.app)}")

        return Starlette(routes=[Route("/", hello)])


def _client(app: LazyApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_an_api_being_built_holds_neither_the_loop_nor_the_other_apis() -> None:
    slow, quick = Builds("slow", held=True), Builds("quick")
    slow_app, quick_app = LazyApp(slow), LazyApp(quick)
    async with _client(slow_app) as slow_client, _client(quick_app) as quick_client:
        first = [asyncio.create_task(slow_client.get("/")) for _ in range(5)]
        await asyncio.to_thread(slow.started.wait, 30)
        # The slow API's build is under way: the quick one is built and answers meanwhile.
        answer = await quick_client.get("/")
        assert answer.status_code == 200 and answer.text.startswith("quick ")
        assert not slow_app.built and not any(task.done() for task in first)
        slow.release.set()
        answers = await asyncio.gather(*first)
    assert {(a.status_code, a.text) for a in answers} == {(200, f"slow {id(slow_app.app)}")}
    assert slow.runs == 1  # five first requests, one build
    assert slow.threads[0] != threading.current_thread().name


async def test_a_failed_build_fails_its_requests_and_the_next_request_builds_again() -> None:
    builds = Builds("flaky", fail_first=True)
    app = LazyApp(builds)
    async with _client(app) as client:
        with pytest.raises(RuntimeError, match="the first build fails"):
            await client.get("/")
        assert not app.built
        answer = await client.get("/")
    assert answer.status_code == 200
    assert builds.runs == 2 and app.built


async def test_an_attribute_look_builds_the_app_the_requests_then_use() -> None:
    builds = Builds("state")
    app = LazyApp(builds)
    app.state.marker = "set before any request"  # builds now, on this thread
    async with _client(app) as client:
        answer = await client.get("/")
    assert answer.text == f"state {id(app.app)}"
    assert app.app.state.marker == "set before any request"  # type: ignore[attr-defined]
    assert builds.runs == 1
