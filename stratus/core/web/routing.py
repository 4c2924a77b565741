"""One cheap route match per request for an API's FastAPI app.

FastAPI (0.16x) keeps each included router as one route of the app's router: a request is
matched against every included router in turn, each testing its own routes one by one in
Python (swapping keys in the scope around every test), and the router that matched then
matches its routes a second time to pick the handler: ~300 Python calls, ~0.3 ms of CPU, on
every request of the Compute API (95 routes in 22 routers).

``RouteTable`` replaces that search for the requests it can answer exactly as FastAPI would.
Built once the app has answered ``TABLE_AFTER_REQUESTS`` requests, from its routes in order,
it holds, per HTTP method, one regular expression: the alternation of the path patterns of
the routes that take the method, each alternative the route's own pattern (Starlette's
``compile_path``), so the regular expression engine finds, in C, the first route in order
that matches both path and method: Starlette's and FastAPI's first full match. The route's
own pattern then reads the path parameters, and the request goes on as FastAPI's dispatch
would send it (the same scope keys, the same handler app).

Anything else goes through FastAPI's own dispatch, unchanged: a path no route takes (the 404),
a method the path's routes do not take (the 405 with its ``Allow``), another scope type, and
every request of an app with a route kind the table does not know (mounts, websockets) or a
pattern compiled with flags of its own. Routes added to the app after its first request (a
change in the count of its router's routes) rebuild the table; the table reads FastAPI's own
(private) structures, and in a FastAPI without them, FastAPI routes everything.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import fastapi.routing as fastapi_routing
from fastapi import FastAPI
from starlette._utils import get_route_path
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass(frozen=True)
class _FastAPIDispatch:
    """FastAPI's own names for its kinds of included route and for what its dispatch keeps
    in the scope."""

    included_router: type[Any]
    effective_context: type[Any]
    scope_key: str
    included_router_key: str
    context_key: str
    apply_form_limits: Callable[[Scope, Any], None]


def _fastapi_dispatch() -> _FastAPIDispatch | None:
    """FastAPI's names, or None in a FastAPI without them (then nothing is compiled and
    FastAPI routes every request)."""
    try:
        return _FastAPIDispatch(
            included_router=fastapi_routing._IncludedRouter,
            effective_context=fastapi_routing._EffectiveRouteContext,
            scope_key=fastapi_routing._FASTAPI_SCOPE_KEY,
            included_router_key=fastapi_routing._FASTAPI_INCLUDED_ROUTER_KEY,
            context_key=fastapi_routing._FASTAPI_EFFECTIVE_ROUTE_CONTEXT_KEY,
            apply_form_limits=fastapi_routing._apply_router_form_limits)
    except AttributeError:
        return None


_FASTAPI = _fastapi_dispatch()

#: A named group of a route's pattern; in the table's alternation it only groups.
_NAMED_GROUP = re.compile(r"\(\?P<\w+>")
#: The flags of a pattern compiled from a plain ``str`` without any of its own.
_PLAIN_FLAGS = re.compile("").flags


class _NotCompiled(Exception):
    """The app has a route the table cannot answer for exactly as FastAPI would."""


@dataclass(frozen=True)
class _Entry:
    """One route as the table dispatches to it."""

    pattern: re.Pattern[str]
    convertors: dict[str, Any]
    #: The methods it takes; empty: every method.
    methods: frozenset[str]
    endpoint: Any
    #: What goes in ``scope["route"]`` (FastAPI's routes put themselves there; Starlette's
    #: leave it as it was).
    route: Any
    #: The ASGI app that answers (the handler with its dependencies and body limit).
    app: ASGIApp
    #: FastAPI's scope entries as its dispatch leaves them: the included router that took
    #: the request and the route's context within it.
    fastapi_keys: dict[str, Any] = field(default_factory=dict)
    #: Form limits FastAPI's dispatch applies on the way (outermost first); none is usual.
    form_limits: tuple[Any, ...] = ()


def _entries(router: Any) -> list[_Entry]:
    """Every route of ``router`` in FastAPI's order of matching, or ``_NotCompiled``."""
    if _FASTAPI is None:
        raise _NotCompiled("FastAPI without included-router contexts")
    outer_limits = (router.form_limits,) if getattr(router, "form_limits", None) else ()
    entries: list[_Entry] = []
    for route in router.routes:
        if isinstance(route, _FASTAPI.included_router):
            entries.extend(_included(_FASTAPI, route, outer_limits))
        elif type(route) in (Route, fastapi_routing.APIRoute):
            # The app's own (``/openapi.json``): Starlette's ``Route.handle`` runs it.
            entries.append(_Entry(
                pattern=route.path_regex, convertors=route.param_convertors,
                methods=frozenset(route.methods or ()), endpoint=route.endpoint,
                route=route if isinstance(route, fastapi_routing.APIRoute) else None,
                app=route.handle, form_limits=outer_limits))
        else:
            raise _NotCompiled(f"a route of a kind the table does not know: {route!r}")
    return entries


def _included(fastapi: _FastAPIDispatch, included: Any, limits: tuple[Any, ...]
              ) -> list[_Entry]:
    """The routes of one included router (and of the routers it includes), in order."""
    form_limits = included.include_context.form_limits
    limits = (*limits, form_limits) if form_limits else limits
    entries: list[_Entry] = []
    for candidate in included.effective_candidates():
        if isinstance(candidate, fastapi.included_router):
            entries.extend(_included(fastapi, candidate, limits))
            continue
        if not isinstance(candidate, fastapi.effective_context) or not isinstance(
                candidate.original_route, fastapi_routing.APIRoute):
            raise _NotCompiled(f"an included route that is not an API route: {candidate!r}")
        if candidate.app is None or candidate.path_regex is None:
            raise _NotCompiled(f"an included route without its app: {candidate!r}")
        entries.append(_Entry(
            pattern=candidate.path_regex, convertors=candidate.param_convertors,
            methods=frozenset(candidate.methods or ()), endpoint=candidate.endpoint,
            route=candidate.original_route, app=candidate.app,
            fastapi_keys={fastapi.included_router_key: included,
                          fastapi.context_key: candidate},
            form_limits=limits))
    return entries


def _alternation(entries: Sequence[tuple[int, _Entry]]) -> re.Pattern[str]:
    """One pattern whose ``lastgroup`` names (``r<index>``) the first entry that matches."""
    parts = []
    for index, entry in entries:
        if entry.pattern.flags != _PLAIN_FLAGS:
            raise _NotCompiled(f"a pattern with flags: {entry.pattern.pattern!r}")
        parts.append(f"(?P<r{index}>{_NAMED_GROUP.sub('(?:', entry.pattern.pattern)})")
    combined = re.compile("|".join(parts)) if parts else re.compile(r"(?!)")
    if set(combined.groupindex) != {f"r{index}" for index, _ in entries}:
        raise _NotCompiled("a path pattern the alternation cannot hold")
    return combined


@dataclass(frozen=True)
class _Table:
    entries: list[_Entry]
    #: Per method, the alternation of the routes that take it.
    by_method: dict[str, re.Pattern[str]]
    #: The count of the router's routes it was built from.
    built_from: int


def _build(router: Any) -> _Table | None:
    try:
        entries = _entries(router)
        methods = {method for entry in entries for method in entry.methods}
        by_method = {method: _alternation([(i, e) for i, e in enumerate(entries)
                                           if not e.methods or method in e.methods])
                     for method in methods}
    except _NotCompiled:
        return None
    return _Table(entries, by_method, len(router.routes))


#: Requests an app answers through FastAPI's dispatch before its table is built. Building it
#: makes FastAPI's route context for every route of every included router at once (FastAPI
#: makes each router's as a request first reaches it): ~2 MB more for identity's routes in a
#: process that answered one token (idle RSS 149.5 -> 151.7 MB). An API that serves
#: requests earns it back within them; one that answers a handful never pays for it.
TABLE_AFTER_REQUESTS = 100


class RouteTable:
    """The app's router's dispatch (``Router.middleware_stack``): the table's match for the
    requests it answers, FastAPI's own (``fallback``) for the rest, and for the first
    ``requests_before_table``."""

    def __init__(self, router: Any, fallback: Callable[[Scope, Receive, Send], Awaitable[None]],
                 requests_before_table: int = TABLE_AFTER_REQUESTS) -> None:
        self.router = router
        self.fallback = fallback
        self.requests_before_table = requests_before_table
        self._table: _Table | None = None
        #: The route count a build found uncompilable: FastAPI routes until it changes.
        self._refused: int | None = None

    def table(self) -> _Table | None:
        table, count = self._table, len(self.router.routes)
        if table is not None and table.built_from == count:
            return table
        if self._refused == count:
            return None
        self._table = table = _build(self.router)
        self._refused = count if table is None else None
        return table

    def match(self, scope: Scope) -> tuple[_Entry, dict[str, Any]] | None:
        """The route that takes this HTTP request and its path parameters, converted; None
        when FastAPI's dispatch must answer (no route takes both path and method ...)."""
        table = self.table()
        if table is None:
            return None
        pattern = table.by_method.get(scope["method"])
        if pattern is None:
            return None
        path = get_route_path(scope)
        found = pattern.match(path)
        if found is None or found.lastgroup is None:
            return None
        entry = table.entries[int(found.lastgroup[1:])]
        own = entry.pattern.match(path)
        if own is None:  # cannot be: the same pattern matched as an alternative
            return None
        params = own.groupdict()
        for key, value in params.items():
            params[key] = entry.convertors[key].convert(value)
        return entry, params

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.requests_before_table:
            self.requests_before_table -= 1
            await self.fallback(scope, receive, send)
            return
        # FastAPI's own telemetry records the route as its dispatch goes: it routes then.
        matched = (self.match(scope) if scope["type"] == "http"
                   and "fastapi.telemetry" not in scope else None)
        if matched is None:
            await self.fallback(scope, receive, send)
            return
        entry, params = matched
        # As FastAPI's dispatch leaves the scope for the handler: its router, form limits,
        # the included router and route context, the endpoint, the path parameters (over
        # any the scope had from an outer mount) and the route.
        if "router" not in scope:
            scope["router"] = self.router
        if entry.form_limits or entry.fastapi_keys:
            assert _FASTAPI is not None  # there is a table
            for limits in entry.form_limits:
                _FASTAPI.apply_form_limits(scope, limits)
            scope.setdefault(_FASTAPI.scope_key, {}).update(entry.fastapi_keys)
        outer = scope.get("path_params")
        scope["endpoint"] = entry.endpoint
        scope["path_params"] = {**outer, **params} if outer else params
        if entry.route is not None:
            scope["route"] = entry.route
        await entry.app(scope, receive, send)


def install_route_table(app: FastAPI) -> None:
    """``app``'s router dispatches through a ``RouteTable`` (built after
    ``TABLE_AFTER_REQUESTS`` requests). Left as it is when the router has a middleware stack
    of its own."""
    router = app.router
    if router.middleware_stack != router.app:
        return
    router.middleware_stack = RouteTable(router, router.app)

