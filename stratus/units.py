"""The units Stratus runs, one process or many: the registry, and the app that mounts them.

Every unit is an ASGI app mounted under its path prefix (``/identity``, ``/compute``,
``/image`` ...) and registered in the catalog at that prefix, or a bus server. Each service
declares its units in ``stratus/<service>/units.py``; what they share while a process runs
is the ``Stack`` (``stratus.stack``). ``stratus up`` runs them all in one process behind one
port; ``stratus serve UNIT`` runs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute, Match, Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from stratus.compute import units as compute
from stratus.core.config import Settings
from stratus.core.metrics import metrics_endpoint
from stratus.dashboard import units as dashboard
from stratus.identity import units as identity
from stratus.image import units as image
from stratus.network import units as network
from stratus.stack import Stack, Unit, admin_password
from stratus.volume import units as volume

if TYPE_CHECKING:
    from stratus.identity.bootstrap import CatalogEntry

LOG = logging.getLogger(__name__)

#: Every unit by name, in the order ``stratus up`` starts them.
UNITS: dict[str, Unit] = {
    unit.name: unit
    for unit in (*identity.UNITS, *image.UNITS, *compute.UNITS, *network.UNITS, *volume.UNITS,
                 *dashboard.UNITS)
}


def catalog_entries(settings: Settings) -> list[CatalogEntry]:
    """The catalog: each unit with an API, at ``base_url`` + its prefix."""
    from stratus.identity.bootstrap import CatalogEntry

    entries = []
    for unit in UNITS.values():
        if unit.catalog is None or unit.prefix is None:
            continue
        kind, name, suffix = unit.catalog
        entry = CatalogEntry(type=kind, name=name, url=f"{settings.base_url}{unit.prefix}{suffix}")
        entries.append(entry)
        entries.extend(CatalogEntry(type=alias, name=f"{entry.name}v3", url=entry.url)
                       for alias in unit.catalog_aliases)
    return entries


async def run_bootstrap(stack: Stack, *,
                        admin_password_hash: Awaitable[str] | None = None) -> None:
    """The Default domain, the admin project and user, the roles and the catalog; idempotent.
    ``admin_password_hash``: the admin password's bcrypt hash at ``identity.bcrypt_rounds``,
    already under way (``stratus up`` starts it beside its imports on a first start)."""
    from stratus.identity.bootstrap import bootstrap

    runtime = await identity.identity_runtime(stack)
    async with runtime.service() as svc:
        # A password given in the configuration wins over the stored one; a generated one
        # is ours, so there is nothing to check.
        await bootstrap(svc, admin_password=admin_password(stack.settings),
                        enforce_password=stack.settings.admin_password is not None,
                        admin_password_hash=admin_password_hash,
                        region=stack.settings.region, catalog=catalog_entries(stack.settings))


async def ensure_default_network(stack: Stack) -> None:
    """First start of the all-in-one: the admin project's network (``private``) and its
    subnet, so ``server create --network private`` works at once. Made once; kept after."""
    if stack.network is None or stack.identity is None:
        return
    from stratus.identity.resources import DEFAULT_DOMAIN_ID

    async with stack.identity.service() as svc:
        project = await svc.resources.find_project(name="admin", domain_id=DEFAULT_DOMAIN_ID)
    options = stack.settings.network
    async with stack.network.service() as net:
        await net.ensure_default_network(project.id, options.default_network_name,
                                         options.default_subnet_cidr)


async def ensure_external_network(stack: Stack) -> list[str]:
    """First start of the all-in-one on the linuxbridge backend: the ``public`` external
    network (flat, on ``network.external_physical_network``) and its subnet, once; on every
    start the physical network's host bridge with the subnet's gateway address (and the
    masquerade to the uplink when configured), undone on the way out. What it did, to say."""
    if stack.network is None or stack.identity is None:
        return []
    from stratus.network.backends import backend_name

    options = stack.settings.network
    if backend_name(stack.settings) != "linuxbridge":
        return []
    bridge = options.physical_bridges.get(options.external_physical_network)
    if bridge is None:
        return [f"Network: no bridge for physical network {options.external_physical_network!r}"
                " in network.physical_bridges; no external network made"]
    import asyncio
    from ipaddress import IPv4Network

    from pyroute2 import NetlinkError

    from stratus.identity.resources import DEFAULT_DOMAIN_ID
    from stratus.network.agents import external

    async with stack.identity.service() as svc:
        project = await svc.resources.find_project(name="admin", domain_id=DEFAULT_DOMAIN_ID)
    async with stack.network.service() as net:
        network, gateway, created = await net.ensure_external_network(
            project.id, options.external_network_name, options.external_physical_network,
            options.external_subnet_cidr)
    said = []
    if created:
        said.append(f"Network: made the external network {network.name} "
                    f"({options.external_subnet_cidr}, flat on "
                    f"{options.external_physical_network})")
    if gateway is None:
        return [*said, f"Network: external network {network.name} has no gateway; its "
                       f"bridge {bridge} gets no host address"]
    prefix = IPv4Network(options.external_subnet_cidr).prefixlen
    try:
        host_side = await asyncio.to_thread(external.ensure_external_bridge, bridge,
                                            f"{gateway}/{prefix}",
                                            masquerade=options.external_masquerade)
    except (OSError, RuntimeError, NetlinkError) as exc:  # e.g. an Open vSwitch br-ex
        return [*said, f"Network: the host side of external network {network.name} was not "
                       f"set up on {bridge}: {exc}"]
    stack.exits.push_async_callback(asyncio.to_thread, external.remove_external_bridge,
                                    host_side)
    said.append(f"Network: external network {network.name} on {host_side.describe()}")
    return said


def _mount(prefix: str, app: ASGIApp) -> Mount:
    """A unit's mount. Starlette's pattern stops at a newline (``.``), so a path holding an
    encoded one (``%0A``) missed every unit and got a bare text 404 from the root; with
    DOTALL it reaches the unit, which answers in its API's error format."""
    mount = Mount(prefix, app=app)
    mount.path_regex = re.compile(mount.path_regex.pattern, re.DOTALL)
    return mount


class _PrefixRouter(Router):
    """The root's router. A request under a unit's one-segment prefix (``/network/...``)
    goes straight to that unit's mount by a dict lookup of its first path segment, instead
    of Starlette testing each route in turn on every request; the mount still checks the
    path (``Mount.matches``) and sets the child scope exactly as Starlette would. Anything
    else (``/``, ``/metrics``, a bare ``/network``, a path no unit takes, a websocket) is
    routed by Starlette's route list as before, so its answers do not change."""

    def __init__(self, routes: list[Route | Mount]) -> None:
        super().__init__(routes=routes)
        self.by_segment: dict[str, Mount] = {}
        for route in routes:
            segment = route.path[1:]
            if isinstance(route, Mount) and segment and not any(c in segment for c in "/{"):
                self.by_segment.setdefault(segment, route)  # the first, as the list's order

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = get_route_path(scope)
            end = path.find("/", 1)
            mount = self.by_segment.get(path[1:end]) if end > 0 else None
            if mount is not None:
                match, child_scope = mount.matches(scope)
                if match is Match.FULL:
                    scope.setdefault("router", self)
                    scope["route"] = mount
                    scope.update(child_scope)
                    await mount.handle(scope, receive, send)
                    return
        await super().app(scope, receive, send)


#: The units a process serves before it starts its others, when it runs others too:
#: identity's token routes are what every client asks for first (a ``stratus up`` is
#: timed to its first token). The other units start once these serve, and requests to
#: them wait until the whole start is done.
SERVED_FIRST = ("identity-api",)


class _Starting:
    """A unit's mount while the process is still starting: a request waits until the whole
    start is done, then goes to the unit's app, or gets a 503 if the start failed. Once
    started, the mount calls the unit's app itself (``UnitsStart.open``)."""

    def __init__(self, name: str, started: asyncio.Future[None]) -> None:
        self.name = name
        self.started = started
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.started.done():
            # asyncio.wait, not await: a request that goes away does not cancel the future
            # every other waiting request waits for.
            await asyncio.wait([self.started])
        failed = self.started.cancelled() or self.started.exception() is not None
        if failed or self.app is None:
            if scope["type"] == "http":
                await PlainTextResponse(f"{self.name} did not start",
                                        status_code=503)(scope, receive, send)
            return  # a websocket: closed unanswered, as by a server shutting down
        await self.app(scope, receive, send)

    @property
    def routes(self) -> list[BaseRoute]:
        # What the mount's ``routes`` (reverse URL lookups through the root) reads: the
        # mount keeps the app it was made with, this one, after ``UnitsStart.open``.
        return getattr(self.app, "routes", [])


class _InFlight:
    """A unit served first, counting its requests in flight; ``idle`` is set while none is
    (``UnitsStart.give_way``)."""

    def __init__(self, app: ASGIApp, idle: asyncio.Event) -> None:
        self.app = app
        self.idle = idle
        self.count = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.count += 1
        self.idle.clear()
        try:
            await self.app(scope, receive, send)
        finally:
            self.count -= 1
            if self.count == 0:
                self.idle.set()

    @property
    def routes(self) -> list[BaseRoute]:
        return getattr(self.app, "routes", [])  # as ``_Starting.routes``


class UnitsStart:
    """A process's units, started so that it can serve before all of them have started.

    ``first()`` gives the root app: each running unit mounted at its prefix and the
    process's ``/metrics``. When the process runs a unit of ``SERVED_FIRST`` and others,
    ``first()`` starts only the former, the others' mounts hold their requests, and
    ``rest()`` then starts the others (the process serves meanwhile); ``open()`` lets the
    held requests through once the caller's own start-up work is done too (``fail()``: they
    get a 503). Otherwise ``first()`` starts every unit, as before serving.

    A named unit that cannot run here (``Unit.unavailable``) is left out and recorded in
    ``stack.not_started``. ``worker``: this process is one of a pool sharing the port
    (``stratus serve --workers``), and each response names it (``X-Stratus-Worker``)."""

    def __init__(self, stack: Stack, names: list[str], *, worker: str | None = None) -> None:
        self.stack = stack
        self.worker = worker
        #: The units that run here, in ``names``' order.
        self.running: list[Unit] = []
        for name in names:
            unit = UNITS[name]
            reason = unit.why_not_started(stack.settings)
            if reason is None:
                self.running.append(unit)
            else:
                LOG.info("%s: not started: %s", name, reason)
                stack.not_started[name] = reason
        first = [unit for unit in self.running if unit.name in SERVED_FIRST]
        #: The units served before the others start; empty when all start before serving.
        self.first_units = first if len(first) < len(self.running) else []
        self._mounts: dict[str, Mount] = {}
        self._held: dict[str, _Starting] = {}
        self._started: asyncio.Future[None] | None = None
        self._in_flight: dict[str, _InFlight] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def serves_early(self) -> bool:
        """Whether ``first()`` leaves units for ``rest()`` (the process serves meanwhile)."""
        return bool(self.first_units)

    @property
    def later_units(self) -> list[Unit]:
        """The units ``rest()`` starts."""
        return [unit for unit in self.running if unit not in self.first_units]

    async def _start(self, unit: Unit) -> None:
        app = await unit.build(self.stack)
        if unit.prefix is None or app is None:
            return
        held = self._held.get(unit.name)
        if held is None and unit in self.first_units:
            self._in_flight[unit.name] = _InFlight(app, self._idle)
            self._mounts[unit.name] = _mount(unit.prefix, self._in_flight[unit.name])
        elif held is None:
            self._mounts[unit.name] = _mount(unit.prefix, app)
        else:  # its requests are held until ``open()``
            held.app = app

    async def first(self) -> Starlette:
        """The root app, with the units served first started (every unit, if none is)."""
        if self.serves_early:
            self._started = asyncio.get_running_loop().create_future()
            for unit in self.later_units:
                if unit.prefix is not None:
                    self._held[unit.name] = _Starting(unit.name, self._started)
                    self._mounts[unit.name] = _mount(unit.prefix, self._held[unit.name])
            for unit in self.first_units:
                await self._start(unit)
        else:
            for unit in self.running:
                await self._start(unit)
        # After the units that make the token cache and identity's runtime it shares.
        await self.stack.share_token_revocations()
        if not self.serves_early:
            await self.stack.share_image_changes()
        endpoints = [{"unit": unit.name, "path": unit.prefix} for unit in self.running]

        async def index(_: Request) -> JSONResponse:
            return JSONResponse({"stratus": {"units": endpoints}})

        # One /metrics for the process, whichever units it runs.
        mounts = [self._mounts[unit.name] for unit in self.running
                  if unit.name in self._mounts]
        app = Starlette()
        app.router = _PrefixRouter([Route("/", index), Route("/metrics", metrics_endpoint),
                                    *mounts])
        if self.worker is not None:
            from stratus.core.web.middleware import WorkerHeaderMiddleware

            app.add_middleware(WorkerHeaderMiddleware, value=self.worker)
        return app

    async def rest(self) -> None:
        """Start the units ``first()`` left (none unless ``serves_early``)."""
        if not self.serves_early:
            return
        for unit in self.later_units:
            await self.give_way()
            await self._start(unit)
        await self.stack.share_image_changes()

    async def give_way(self, *, at_most: float = 1.0) -> None:
        """Wait until no request to the units served first is in flight, ``at_most``
        seconds. A start step holds the event loop those requests need (importing a
        service's modules is a few tenths of a second), so each of a request's awaits
        could wait for one; a client's first token would wait for the whole start. The
        wait is bounded so that a steady stream of requests cannot hold the start back
        for long."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await self._idle.wait()

    def open(self) -> None:
        """The start is done: requests held for the units ``rest()`` started go through,
        and from now on each such unit's mount calls its app itself (``Mount.app`` is what
        the mount calls; a unit's mount has no middleware wrapping it)."""
        if self._started is None or self._started.done():
            return
        for name, held in self._held.items():
            if held.app is not None:
                self._mounts[name].app = held.app
        for name, counted in self._in_flight.items():  # nothing gives way to them now
            self._mounts[name].app = counted.app
        self._started.set_result(None)

    def fail(self, error: BaseException) -> None:
        """The start failed: requests held get a 503."""
        if self._started is not None and not self._started.done():
            self._started.set_exception(error)
            self._started.exception()  # retrieved: each held request answers for it


async def root_app(stack: Stack, names: list[str], *, worker: str | None = None) -> Starlette:
    """One ASGI app with each named unit started and mounted at its prefix, and the
    process's ``/metrics`` (``UnitsStart``, both steps at once)."""
    start = UnitsStart(stack, names, worker=worker)
    app = await start.first()
    await start.rest()
    start.open()
    return app
