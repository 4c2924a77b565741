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
    from stratus.core.service_auth import ServiceAuth
    from stratus.network.service import NetworkRuntime
    from stratus.volume.service import VolumeRuntime

LOG = logging.getLogger(__name__)


@dataclass
class Stack:
    """What the units of one process share while it runs."""

    settings: Settings
    exits: AsyncExitStack = field(default_factory=AsyncExitStack)
    identity: IdentityRuntime | None = None
    validator: TokenValidator | None = None
    compute: ComputeRuntime | None = None
    network: NetworkRuntime | None = None
    volume: VolumeRuntime | None = None
    bus: Transport | None = None
    #: HTTP transport for calls between services; None means real HTTP (tests route them
    #: to the in-process app instead).
    http_transport: httpx.AsyncBaseTransport | None = None
    #: The compute agents running in this process.
    agents: list[ComputeAgentManager] = field(default_factory=list)
    _service_auth: ServiceAuth | None = None

    def service_auth(self) -> ServiceAuth:
        """This process's service credentials (``[auth]``; in the all-in-one, the admin
        user), against ``auth.identity_url`` or this cloud's own identity endpoint."""
        if self._service_auth is None:
            from stratus.core.service_auth import ServiceAuth

            auth = self.settings.auth
            password = (auth.service_password.get_secret_value() if auth.service_password
                        else admin_password(self.settings))
            self._service_auth = ServiceAuth(
                auth.identity_url or f"{self.settings.base_url}/identity/v3",
                username=auth.service_username, password=password,
                project=auth.service_project, domain=auth.service_domain,
                client=self.http_client())
        return self._service_auth

    async def start_compute(self) -> ComputeRuntime:
        if self.compute is None:
            from stratus.compute.service import ComputeRuntime

            runtime = ComputeRuntime(self.settings)
            await runtime.start()
            self.exits.push_async_callback(runtime.stop)
            self.compute = runtime
        return self.compute

    async def start_volume(self) -> VolumeRuntime:
        if self.volume is None:
            from stratus.volume.rpcapi import VolumeManagerAPI
            from stratus.volume.service import VolumeRuntime

            runtime = VolumeRuntime(self.settings,
                                    manager_api=VolumeManagerAPI(await self.transport()))
            await runtime.start()
            self.exits.push_async_callback(runtime.stop)
            self.volume = runtime
        return self.volume

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
    #: More service types registered at the same URL (``volumev3`` beside block-storage).
    catalog_aliases: tuple[str, ...] = ()

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
    from stratus.compute.rpcapi import ComputeAgentAPI, SchedulerAPI
    from stratus.compute.service import ComputeClients
    from stratus.core.clients.image import ImageClient
    from stratus.core.clients.volume import VolumeClient

    runtime = await stack.start_compute()
    bus = await stack.transport()
    http = stack.http_client()
    runtime.connect(ComputeClients(scheduler=SchedulerAPI(bus), agents=ComputeAgentAPI(bus),
                                   images=ImageClient(http), volumes=VolumeClient(http)))
    return create_compute_app(runtime, stack.token_validator())


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
    from stratus.compute.virt import select
    from stratus.compute.virt.fake import FakeDriver, FakeDriverOptions

    settings = stack.settings.compute
    choice = select.embedded_choice(stack.settings)
    bus = await stack.transport()
    options = AgentOptions(report_interval=settings.report_interval,
                           sync_power_state_interval=settings.sync_power_state_interval,
                           cpu_allocation_ratio=settings.cpu_allocation_ratio,
                           ram_allocation_ratio=settings.ram_allocation_ratio,
                           disk_allocation_ratio=settings.disk_allocation_ratio,
                           reserved_host_memory_mb=settings.reserved_host_memory_mb,
                           vif_plugging_timeout=stack.settings.network.vif_plugging_timeout)
    network = None
    # Hosts reach the network service through the catalog, so they need identity: here,
    # or at ``auth.identity_url``. Without either they build guests without networking.
    if stack.identity is not None or stack.settings.auth.identity_url:
        from stratus.compute.agent.network import HostNetwork
        from stratus.core.clients.network import NetworkClient

        network = HostNetwork(NetworkClient(stack.http_client(), stack.service_auth()))
    images = None
    if choice.name == "libvirt" and (stack.identity is not None
                                     or stack.settings.auth.identity_url):
        from stratus.core.images_cache import HostImages

        images = HostImages(select.image_cache_path(stack.settings), stack.service_auth(),
                            stack.http_client())
    # libvirt drives the one machine this process runs on: one host, whatever fake_hosts says.
    hosts = compute_hosts(stack.settings) if choice.name == "fake" else [
        settings.host or socket.gethostname()]
    for host in hosts:
        driver = (select.libvirt_driver(stack.settings) if choice.name == "libvirt" else
                  FakeDriver(FakeDriverOptions(vcpus=settings.fake_vcpus,
                                               memory_mb=settings.fake_memory_mb,
                                               local_gb=settings.fake_local_gb)))
        volumes = None
        if network is not None:  # identity is reachable: so is the volume service's catalog
            from stratus.compute.agent.volumes import HostVolumes
            from stratus.core.clients.volume import VolumeClient

            volumes = HostVolumes(host, driver, stack.service_auth(),
                                  VolumeClient(stack.http_client()))
        agent = ComputeAgentManager(host, driver, ConductorAPI(bus), options, network, images,
                                    volumes)
        await _serve(stack, COMPUTE_TOPIC, host, agent, agent.METHODS)
        await agent.start()
        stack.exits.push_async_callback(agent.stop)
        stack.agents.append(agent)


async def _build_metadata(stack: Stack) -> ASGIApp:
    from stratus.compute.metadata.api import create_metadata_app

    runtime = await stack.start_compute()
    return create_metadata_app(runtime.db, metadata_secret(stack.settings),
                               dhcp_domain=stack.settings.metadata.dhcp_domain)


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


async def _build_network(stack: Stack) -> ASGIApp:
    from stratus.core.clients.compute import ComputeClient
    from stratus.network.api import create_network_app
    from stratus.network.backends import backend_name, create_backend
    from stratus.network.events import ComputeEventSender
    from stratus.network.manager import NetworkServerManager
    from stratus.network.rpcapi import NETWORK_TOPIC
    from stratus.network.service import NetworkRuntime

    bus = await stack.transport()
    events = ComputeEventSender(ComputeClient(stack.http_client(), stack.service_auth()))
    runtime = NetworkRuntime(stack.settings,
                             backend=create_backend(backend_name(stack.settings), bus),
                             events=events)
    await runtime.start()
    stack.exits.push_async_callback(runtime.stop)
    await events.start()
    stack.exits.push_async_callback(events.stop)
    manager = NetworkServerManager(runtime)
    await _serve(stack, NETWORK_TOPIC, None, manager, manager.METHODS)
    stack.network = runtime
    return create_network_app(runtime, stack.token_validator())


async def _build_volume(stack: Stack) -> ASGIApp:
    from stratus.volume.api import create_volume_app

    runtime = await stack.start_volume()
    return create_volume_app(runtime, stack.token_validator(),
                             http_client=stack.http_client())


async def _build_volume_manager(stack: Stack) -> None:
    """One volume-manager for this host (``volume.host``), on the configured backend."""
    from stratus.volume.backends import create_backend
    from stratus.volume.manager import ImageSource, VolumeManager
    from stratus.volume.rpcapi import VOLUME_TOPIC

    settings = stack.settings
    runtime = await stack.start_volume()
    images: ImageSource | None = None
    # Volumes from images need the image service, found through identity's catalog.
    if stack.identity is not None or settings.auth.identity_url:
        from stratus.core.images_cache import HostImages

        images = HostImages(settings.data_dir / "volume-image-cache", stack.service_auth(),
                            stack.http_client())
    host = settings.volume.host or socket.gethostname()
    manager = VolumeManager(host, runtime, create_backend(settings), images=images)
    stack.exits.push_async_callback(manager.stop)
    await _serve(stack, VOLUME_TOPIC, host, manager, manager.METHODS)
    await manager.start()


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


def _linuxbridge(stack: Stack, unit: str) -> bool:
    """Whether the network agents run here (the linuxbridge backend); says so when not."""
    from stratus.network.backends import backend_name

    if backend_name(stack.settings) == "linuxbridge":
        return True
    LOG.info("%s: not started (the network backend is not linuxbridge)", unit)
    return False


async def _build_dhcp_agent(stack: Stack) -> None:
    """dnsmasq and a metadata proxy per network, in its namespace; see
    ``stratus.network.agents.dhcp``."""
    if not _linuxbridge(stack, "dhcp-agent"):
        return
    from stratus.network.agents.dhcp import DhcpAgentManager, DhcpAgentOptions
    from stratus.network.agents.dhcp.dnsmasq import DnsmasqOptions
    from stratus.network.rpcapi import DHCP_AGENT_TOPIC, NetworkServerAPI

    settings = stack.settings
    net = settings.network
    host = settings.compute.host or socket.gethostname()
    options = DhcpAgentOptions(
        state_dir=settings.dhcp_state_dir,
        dnsmasq=DnsmasqOptions(binary=net.dnsmasq, domain=net.dns_domain,
                               lease_seconds=net.dhcp_lease_duration),
        report_interval=net.agent_report_interval, metadata_url=settings.metadata_url,
        metadata_secret=metadata_secret(settings))
    agent = DhcpAgentManager(host, NetworkServerAPI(await stack.transport()), options,
                             http_client=stack.http_client)
    # Registered before the bus server, so on the way out the server stops first.
    stack.exits.push_async_callback(agent.stop)
    await _serve(stack, DHCP_AGENT_TOPIC, host, agent, agent.METHODS)
    await agent.start()


async def _build_l2_agent(stack: Stack) -> None:
    """Bridges and taps for the ports bound to this process's compute hosts; see
    ``stratus.network.agents.l2``."""
    if not _linuxbridge(stack, "l2-agent"):
        return
    from stratus.network.agents.l2 import L2AgentManager, L2AgentOptions
    from stratus.network.rpcapi import L2_AGENT_TOPIC, NetworkServerAPI

    settings = stack.settings
    hosts = compute_hosts(settings) or [settings.compute.host or socket.gethostname()]
    agent = L2AgentManager(hosts, NetworkServerAPI(await stack.transport()), L2AgentOptions(
        tunnel_ip=settings.network.tunnel_ip,
        report_interval=settings.network.agent_report_interval,
        state_file=settings.data_dir / "l2-agent.json"))
    stack.exits.push_async_callback(agent.stop)
    for host in hosts:
        await _serve(stack, L2_AGENT_TOPIC, host, agent.endpoint(host), agent.METHODS)
    await agent.start()


UNITS: dict[str, Unit] = {
    unit.name: unit
    for unit in (
        Unit("identity-api", "/identity", _build_identity, ("identity", "keystone", "/v3")),
        Unit("image-api", "/image", _build_image, ("image", "glance", "")),
        Unit("compute-api", "/compute", _build_compute, ("compute", "nova", "/v2.1")),
        Unit("conductor", None, _build_conductor),
        Unit("scheduler", None, _build_scheduler),
        Unit("compute-agent", None, _build_compute_agent),
        # No catalog entry: only the metadata proxies call it (``settings.metadata_url``).
        Unit("metadata-api", "/metadata", _build_metadata),
        Unit("network-api", "/network", _build_network, ("network", "neutron", "")),
        Unit("dhcp-agent", None, _build_dhcp_agent),
        Unit("l2-agent", None, _build_l2_agent),
        Unit("volume-api", "/volume", _build_volume, ("block-storage", "cinder",
                                                      "/v3/$(project_id)s"),
             catalog_aliases=("volumev3",)),
        Unit("volume-manager", None, _build_volume_manager),
    )
}


def catalog_entries(settings: Settings) -> list[CatalogEntry]:
    entries = []
    for unit in UNITS.values():
        entry = unit.catalog_entry(settings.base_url)
        if entry is not None:
            entries.append(entry)
            entries.extend(CatalogEntry(type=alias, name=f"{entry.name}v3", url=entry.url)
                           for alias in unit.catalog_aliases)
    return entries


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


def metadata_secret(settings: Settings) -> str:
    """The metadata proxies' HMAC key: configured, else generated once and kept (0600)."""
    if settings.metadata.shared_secret is not None:
        return settings.metadata.shared_secret.get_secret_value()
    path = settings.data_dir / "metadata-secret"
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_hex(32)
    _write_private(path, secret + "\n")
    return secret


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
