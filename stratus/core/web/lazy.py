"""An API built on its first request.

``stratus up`` runs every unit in one process, yet building an API (importing its routes and
request schemas, and FastAPI's analysis of each route's parameters and models) costs a few
tenths of a second of CPU and some megabytes per API, most of a start's work. A unit starts
what must run at once (its runtime, its bus servers) and mounts its API as a ``LazyApp``,
which builds it when the first request reaches it: the first call of each API pays for it.

The build runs in a worker thread, not on the event loop: while one API is being built the
loop goes on serving the others (and the bus, and heartbeats). It still holds the GIL for
most of its work, so other requests are slowed meanwhile, not stopped.

An API a start itself needs part of (identity: the first token) is an ``EagerRoutes``: a small
app of those routes built at once, in front of a ``LazyApp`` of the whole API.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from typing import Any

from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send


class LazyApp:
    """``build()``'s app, made once and kept: by the first request, in a worker thread
    (requests arriving meanwhile wait for that one build, without holding the event loop),
    or by the first look at its attributes (such as ``state``), synchronously.

    ``build`` must not need the event loop's thread (it makes an app; it does not run one).
    A build that raises fails the requests waiting for it; the next request tries again.
    """

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self._app: ASGIApp | None = None
        #: Held while building: the worker thread's build and a synchronous one (``app``)
        #: make one app between them.
        self._lock = threading.Lock()
        #: The build in progress for requests (all of them wait for this one).
        self._building: asyncio.Future[ASGIApp] | None = None

    @property
    def built(self) -> bool:
        return self._app is not None

    def _build_once(self) -> ASGIApp:
        with self._lock:
            if self._app is None:
                self._app = self._build()
            return self._app

    @property
    def app(self) -> ASGIApp:
        """The app, built here and now (on the caller's thread) if nobody has yet."""
        app = self._app
        return app if app is not None else self._build_once()

    async def _built_app(self) -> ASGIApp:
        building = self._building
        # A build begun on another event loop (one a test closed meanwhile) is not waited
        # for here: this loop starts its own, and the lock still makes one app.
        if building is None or building.get_loop() is not asyncio.get_running_loop():
            building = self._building = asyncio.ensure_future(
                asyncio.to_thread(self._build_once))
            building.add_done_callback(self._forget_build)
        # Shielded: a request cancelled while it waits (its client went away) does not
        # cancel the build the others wait for.
        return await asyncio.shield(building)

    def _forget_build(self, future: asyncio.Future[ASGIApp]) -> None:
        # Built: ``_app`` answers from now on. Failed: the next request starts another build.
        if self._building is future:
            self._building = None
        if not future.cancelled():
            future.exception()  # retrieved: a failure is reported to its requests, not as
            # "never retrieved" when none waited any more

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if app is None:
            app = await self._built_app()
        await app(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        # ``state``, ``routes`` ...: the built app's. Private names are never delegated, so
        # a half-made LazyApp (copy, pickle) does not build or recurse.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.app, name)


class EagerRoutes:
    """An API whose few routes needed at once are served by ``front``, a small app of just
    those routes (``routes``) built now, and every other request by ``rest``: the whole
    API, usually a ``LazyApp`` built by the first request that needs it.

    An HTTP request whose path one of ``routes`` matches goes to ``front``, whatever its
    method: it answers it as the whole API would (the handler, or the 405 with its
    ``Allow``) when, in the whole API, the routes matching those paths are the same routes
    and come first. Every other request (another path: a 404 comes from ``rest``, in the
    API's own error format) goes to ``rest``.
    """

    def __init__(self, front: ASGIApp, routes: Iterable[BaseRoute], rest: ASGIApp) -> None:
        self.front = front
        self.rest = rest
        patterns = []
        for route in routes:
            if not isinstance(route, Route):  # a mount or a websocket: not what this is for
                raise TypeError(f"EagerRoutes takes HTTP routes, not {route!r}")
            patterns.append(route.path_regex)
        self._patterns = tuple(dict.fromkeys(patterns))

    def takes(self, path: str) -> bool:
        """Whether ``front`` answers a request for ``path`` (under the API's mount)."""
        return any(pattern.match(path) for pattern in self._patterns)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.takes(get_route_path(scope)):
            await self.front(scope, receive, send)
        else:
            await self.rest(scope, receive, send)
