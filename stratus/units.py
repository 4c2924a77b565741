"""The units Stratus runs and how they are put together, one process or many.

Every unit is an ASGI app mounted under its path prefix (``/identity`` and, as services
arrive, ``/compute``, ``/image`` ...), registered in the catalog at that prefix. ``stratus
up`` runs them all in one process behind one port; ``stratus serve UNIT`` runs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from stratus.core.auth import CachingValidator, TokenValidator
from stratus.core.bus.transport.base import Transport
from stratus.core.config import Settings
from stratus.identity.bootstrap import CatalogEntry, bootstrap
from stratus.identity.service import IdentityRuntime

if TYPE_CHECKING:
    import httpx

    from stratus.compute.agent.manager import ComputeAgentManager
    from stratus.compute.service import ComputeRuntime

LOG = logging.getLogger(__name__)


@dataclass
class Stack:
    """What the units of one process share while it runs."""

    settings: Settings
    exits: AsyncExitStack = field(default_factory=AsyncExitStack)
    identity: IdentityRuntime | None = None
    validator: TokenValidator | None = None
    compute: ComputeRuntime | None = None
    bus: Transport | None = None
    #: HTTP transport for calls between services; None means real HTTP (tests route them
    #: to the in-process app instead).
    http_transport: httpx.AsyncBaseTransport | None = None
    #: The compute agents running in this process.
    agents: list[ComputeAgentManager] = field(default_factory=list)

    async def start_compute(self) -> ComputeRuntime:
        if self.compute is None:
            from stratus.compute.service import ComputeRuntime

            runtime = ComputeRuntime(self.settings)
            await runtime.start()
            self.exits.push_async_callback(runtime.stop)
            self.compute = runtime
        return self.compute

    async def transport(self) -> Transport:
        """The message bus of this process (``settings.bus_url``), started once."""
        if self.bus is None:
            from stratus.core.bus import get_transport

            bus = get_transport(self.settings.bus_url)
            await bus.start()
            self.exits.push_async_callback(bus.close)
            self.bus = bus
        return self.bus

    def http_client(self) -> httpx.AsyncClient:
        from stratus.core.http import service_http_client

        client = service_http_client(transport=self.http_transport)
        self.exits.push_async_callback(client.aclose)
        return client

    async def start_identity(self) -> IdentityRuntime:
        if self.identity is None:
            runtime = IdentityRuntime(self.settings)
            await runtime.start()
            self.exits.push_async_callback(runtime.stop)
            self.identity = runtime
        return self.identity

    def token_validator(self) -> TokenValidator:
        """In-process validation when identity runs here, else REST to ``auth.identity_url``."""
        if self.validator is not None:
            return self.validator
        auth = self.settings.auth
        inner: TokenValidator
        if self.identity is not None:
            inner = self.identity
        elif auth.identity_url:
            from stratus.core.auth_remote import RemoteTokenValidator

            remote = RemoteTokenValidator(
                auth.identity_url, username=auth.service_username,
                password=auth.service_password.get_secret_value() if auth.service_password
                else "", project=auth.service_project, domain=auth.service_domain)
            self.exits.push_async_callback(remote.aclose)
            inner = remote
        else:
            raise RuntimeError("identity is not in this process and auth.identity_url is unset")
        cache = CachingValidator(inner, ttl=auth.cache_ttl, size=auth.cache_size)
        if self.identity is not None:
            self.identity.revocation_listeners.append(cache.invalidate)
        self.validator = cache
        return cache

    async def aclose(self) -> None:
        await self.exits.aclose()


@dataclass(frozen=True)
class Unit:
    name: str
    #: Path the unit's API is mounted at; None for units that only serve the bus.
    prefix: str | None
    #: Starts the unit (its stop is registered on the stack); returns its API, if any.
    build: Callable[[Stack], Awaitable[ASGIApp | None]]
    #: (service type, service name, path after the prefix) registered in the catalog.
    catalog: tuple[str, str, str] | None = None

    def catalog_entry(self, base_url: str) -> CatalogEntry | None:
        if self.catalog is None or self.prefix is None:
            return None
        kind, name, suffix = self.catalog
        return CatalogEntry(type=kind, name=name, url=f"{base_url}{self.prefix}{suffix}")


async def _serve(stack: Stack, topic: str, server: str | None, manager: Any,
                 methods: tuple[str, ...]) -> None:
    from stratus.core.bus import RPCServer, Target

    rpc = RPCServer(await stack.transport(), Target(topic, server=server), manager, methods)
    await rpc.start()
    stack.exits.push_async_callback(rpc.stop)


async def _build_compute(stack: Stack) -> ASGIApp:
    from stratus.compute.api import create_compute_app
    from stratus.compute.image_client import ImageClient
    from stratus.compute.rpcapi import ComputeAgentAPI, SchedulerAPI

    runtime = await stack.start_compute()
    bus = await stack.transport()
    return create_compute_app(runtime, stack.token_validator(), scheduler_api=SchedulerAPI(bus),
                              agent_api=ComputeAgentAPI(bus),
                              image_client=ImageClient(stack.http_client()))


async def _build_scheduler(stack: Stack) -> None:
    from stratus.compute.rpcapi import SCHEDULER_TOPIC, ComputeAgentAPI
    from stratus.compute.scheduler.manager import SchedulerManager
    from stratus.compute.scheduler.selector import HostSelector, SchedulerOptions

    runtime = await stack.start_compute()
    options = stack.settings.compute
    selector = HostSelector(runtime.db, SchedulerOptions(
        host_subset_size=options.host_subset_size,
        service_down_time=options.service_down_time,
        refresh_interval=options.report_interval))
    manager = SchedulerManager(runtime, selector, ComputeAgentAPI(await stack.transport()))
    await _serve(stack, SCHEDULER_TOPIC, None, manager, manager.METHODS)


async def _build_conductor(stack: Stack) -> None:
    from stratus.compute.conductor.manager import ConductorManager
    from stratus.compute.rpcapi import CONDUCTOR_TOPIC, ComputeAgentAPI

    runtime = await stack.start_compute()
    options = stack.settings.compute
    manager = ConductorManager(runtime, ComputeAgentAPI(await stack.transport()),
                               service_down_time=options.service_down_time)
    await _serve(stack, CONDUCTOR_TOPIC, None, manager, manager.METHODS)
    watchdog = asyncio.create_task(manager.run_watchdog(options.report_interval),
                                   name="conductor-watchdog")

    async def stop_watchdog() -> None:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog

    stack.exits.push_async_callback(stop_watchdog)


def compute_hosts(settings: Settings) -> list[str]:
    """The hosts this process's compute agents run as: ``host``, ``host-2``, ..."""
    base = settings.compute.host or socket.gethostname()
    return [base if i == 0 else f"{base}-{i + 1}" for i in range(settings.compute.fake_hosts)]


async def _build_compute_agent(stack: Stack) -> None:
    from stratus.compute.agent.manager import AgentOptions, ComputeAgentManager
    from stratus.compute.rpcapi import COMPUTE_TOPIC, ConductorAPI
    from stratus.compute.virt.fake import FakeDriver, FakeDriverOptions

    settings = stack.settings.compute
    if settings.virt_driver != "fake":
        raise RuntimeError(f"virt driver {settings.virt_driver!r} is not available; use fake")
    bus = await stack.transport()
    options = AgentOptions(report_interval=settings.report_interval,
                           cpu_allocation_ratio=settings.cpu_allocation_ratio,
                           ram_allocation_ratio=settings.ram_allocation_ratio,
                           disk_allocation_ratio=settings.disk_allocation_ratio,
                           reserved_host_memory_mb=settings.reserved_host_memory_mb)
    for host in compute_hosts(stack.settings):
        driver = FakeDriver(FakeDriverOptions(vcpus=settings.fake_vcpus,
                                              memory_mb=settings.fake_memory_mb,
                                              local_gb=settings.fake_local_gb))
        agent = ComputeAgentManager(host, driver, ConductorAPI(bus), options)
        await _serve(stack, COMPUTE_TOPIC, host, agent, agent.METHODS)
        await agent.start()
        stack.exits.push_async_callback(agent.stop)
        stack.agents.append(agent)


async def _build_identity(stack: Stack) -> ASGIApp:
    from stratus.identity.api import create_identity_app

    runtime = await stack.start_identity()
    return create_identity_app(runtime, stack.token_validator())


async def _build_image(stack: Stack) -> ASGIApp:
    from stratus.image.api import create_image_app
    from stratus.image.service import ImageRuntime

    runtime = ImageRuntime(stack.settings)
    await runtime.start()
    stack.exits.push_async_callback(runtime.stop)
    return create_image_app(runtime, stack.token_validator())


UNITS: dict[str, Unit] = {
    unit.name: unit
    for unit in (
        Unit("identity-api", "/identity", _build_identity, ("identity", "keystone", "/v3")),
        Unit("image-api", "/image", _build_image, ("image", "glance", "")),
        Unit("compute-api", "/compute", _build_compute, ("compute", "nova", "/v2.1")),
        Unit("conductor", None, _build_conductor),
        Unit("scheduler", None, _build_scheduler),
        Unit("compute-agent", None, _build_compute_agent),
    )
}


def catalog_entries(settings: Settings) -> list[CatalogEntry]:
    return [e for u in UNITS.values() if (e := u.catalog_entry(settings.base_url)) is not None]


def admin_password(settings: Settings) -> str:
    """``STRATUS_ADMIN_PASSWORD``, else the one generated on first start (kept 0600)."""
    if settings.admin_password is not None:
        return settings.admin_password.get_secret_value()
    path = settings.data_dir / "admin-password"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(18)
    _write_private(path, password + "\n")
    return password


def _write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.replace(tmp, path)


def write_clouds_yaml(settings: Settings, password: str) -> Path:
    """Write ``<data_dir>/clouds.yaml`` for the cloud ``stratus``; 0600, as it holds a password."""
    clouds: dict[str, Any] = {"clouds": {"stratus": {
        "auth": {
            "auth_url": f"{settings.base_url}/identity/v3",
            "username": "admin",
            "password": password,
            "project_name": "admin",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": settings.region,
        "interface": "public",
        "identity_api_version": 3,
    }}}
    path = settings.data_dir / "clouds.yaml"
    _write_private(path, yaml.safe_dump(clouds, sort_keys=False))
    return path


async def run_bootstrap(stack: Stack) -> None:
    runtime = await stack.start_identity()
    async with runtime.service() as svc:
        # A password given in the configuration wins over the stored one; a generated one
        # is ours, so there is nothing to check.
        await bootstrap(svc, admin_password=admin_password(stack.settings),
                        enforce_password=stack.settings.admin_password is not None,
                        region=stack.settings.region, catalog=catalog_entries(stack.settings))


async def root_app(stack: Stack, names: list[str]) -> Starlette:
    """One ASGI app with each named unit mounted at its prefix."""
    mounts: list[Route | Mount] = []
    endpoints = []
    for name in names:
        unit = UNITS[name]
        app = await unit.build(stack)
        if app is not None and unit.prefix is not None:
            mounts.append(Mount(unit.prefix, app=app))
        endpoints.append({"unit": unit.name, "path": unit.prefix})

    async def index(_: Request) -> JSONResponse:
        return JSONResponse({"stratus": {"units": endpoints}})

    return Starlette(routes=[Route("/", index), *mounts])
