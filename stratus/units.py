"""The units Stratus runs, one process or many: the registry, and the app that mounts them.

Every unit is an ASGI app mounted under its path prefix (``/identity``, ``/compute``,
``/image`` ...) and registered in the catalog at that prefix, or a bus server. Each service
declares its units in ``stratus/<service>/units.py``; what they share while a process runs
is the ``Stack`` (``stratus.stack``). ``stratus up`` runs them all in one process behind one
port; ``stratus serve UNIT`` runs one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match, Mount, Route, Router
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


async def root_app(stack: Stack, names: list[str], *, worker: str | None = None) -> Starlette:
    """One ASGI app with each named unit mounted at its prefix, and the process's
    ``/metrics``; a unit that cannot run here (``Unit.unavailable``) is left out and recorded
    in ``stack.not_started``. ``worker``: this process is one of a pool sharing the port
    (``stratus serve --workers``), and each response names it (``X-Stratus-Worker``)."""
    mounts: list[Route | Mount] = []
    endpoints = []
    for name in names:
        unit = UNITS[name]
        reason = unit.why_not_started(stack.settings)
        if reason is not None:
            LOG.info("%s: not started: %s", name, reason)
            stack.not_started[name] = reason
            continue
        app = await unit.build(stack)
        if app is not None and unit.prefix is not None:
            mounts.append(_mount(unit.prefix, app))
        endpoints.append({"unit": unit.name, "path": unit.prefix})

    await stack.share_token_revocations()
    await stack.share_image_changes()

    async def index(_: Request) -> JSONResponse:
        return JSONResponse({"stratus": {"units": endpoints}})

    # One /metrics for the process, whichever units it runs.
    app = Starlette()
    app.router = _PrefixRouter([Route("/", index), Route("/metrics", metrics_endpoint), *mounts])
    if worker is not None:
        from stratus.core.web.middleware import WorkerHeaderMiddleware

        app.add_middleware(WorkerHeaderMiddleware, value=worker)
    return app
