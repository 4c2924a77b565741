"""An API built on its first request.

``stratus up`` runs every unit in one process, yet building an API (importing its routes and
request schemas, and FastAPI's analysis of each route's parameters and models) costs a few
tenths of a second of CPU and some megabytes per API, most of a start's work. A unit starts
what must run at once (its runtime, its bus servers) and mounts its API as a ``LazyApp``,
which builds it when the first request reaches it: the first call of each API pays for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send


class LazyApp:
    """``build()``'s app, made on the first request (or the first look at its attributes,
    such as ``state``) and kept. The build is synchronous: requests that arrive while it
    runs wait for the event loop, and all reach the one app it made."""

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self._app: ASGIApp | None = None

    @property
    def built(self) -> bool:
        return self._app is not None

    @property
    def app(self) -> ASGIApp:
        if self._app is None:
            self._app = self._build()
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        # ``state``, ``routes`` ...: the built app's. Private names are never delegated, so
        # a half-made LazyApp (copy, pickle) does not build or recurse.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.app, name)
