"""What the units of one process share while it runs: the ``Stack``, what a ``Unit`` is,
and (from ``stratus.core.generated_secrets``) the admin password.

A ``Stack`` holds the settings, the message bus, HTTP clients for calls between services,
the service credentials, the token validator, each service's runtime (made and started once
by ``runtime()``, whichever unit asks first) and the exit stack that stops all of it in
reverse order.

Lazy imports: here and in every ``stratus/<service>/units.py``, service modules are imported
inside the functions that need them, so a process pays at start-up only for the units it
runs (the ``startup`` benchmark measures it); the APIs are mounted as
``stratus.core.web.lazy.LazyApp`` and built by their first request, but for identity's token
routes (``EagerRoutes``: the first token needs them).
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, cast, overload

from starlette.types import ASGIApp

from stratus.core.auth import CachingValidator, TokenValidator
from stratus.core.config import Settings
from stratus.core.generated_secrets import admin_password, write_private

if TYPE_CHECKING:
    import httpx

    from stratus.compute.agent.manager import ComputeAgentManager
    from stratus.compute.service import ComputeRuntime
    from stratus.core.bus.transport.base import Transport
    from stratus.core.image_caches import ImageRecords
    from stratus.core.service_auth import ServiceAuth
    from stratus.identity.service import IdentityRuntime
    from stratus.image.service import ImageRuntime
    from stratus.network.service import NetworkRuntime
    from stratus.volume.service import VolumeRuntime

LOG = logging.getLogger(__name__)


class Runtime(Protocol):
    """What ``Stack.runtime`` starts once and stops with the stack."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


R = TypeVar("R", bound=Runtime)
T = TypeVar("T")


class _Running(Generic[T]):
    """A read-only ``Stack`` attribute: the runtime started under the attribute's name."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.service = name

    @overload
    def __get__(self, stack: None, owner: type) -> _Running[T]: ...

    @overload
    def __get__(self, stack: Stack, owner: type) -> T | None: ...

    def __get__(self, stack: Stack | None, owner: type) -> _Running[T] | T | None:
        if stack is None:
            return self
        return cast("T | None", stack.running(self.service))


@dataclass
class Stack:
    """What the units of one process share while it runs."""

    settings: Settings
    exits: AsyncExitStack = field(default_factory=AsyncExitStack)
    validator: TokenValidator | None = None
    bus: Transport | None = None
    #: HTTP transport for calls between services; None means real HTTP (tests route them
    #: to the in-process app instead).
    http_transport: httpx.AsyncBaseTransport | None = None
    #: The compute agents running in this process.
    agents: list[ComputeAgentManager] = field(default_factory=list)
    #: Units asked for but not started, with the reason (``Unit.unavailable``).
    not_started: dict[str, str] = field(default_factory=dict)
    #: What units chose for this host, and why: ``{"volume backend": "file (DIR/volumes)"}``;
    #: ``stratus up`` shows it.
    choices: dict[str, str] = field(default_factory=dict)
    _runtimes: dict[str, Any] = field(default_factory=dict)
    _service_auth: ServiceAuth | None = None
    _verify: ssl.SSLContext | bool | None = None
    _image_records: ImageRecords | None = None

    def chose(self, what: str, choice: str) -> None:
        """Record (and log) a choice a unit made for this host, for the start-up summary."""
        self.choices[what] = choice
        LOG.info("%s: %s", what, choice)

    async def runtime(self, service: str, make: Callable[[], R]) -> R:
        """``service``'s runtime in this process: made by ``make`` and started the first
        time a unit asks, stopped when the stack closes; the same object afterwards."""
        if service not in self._runtimes:
            runtime = make()
            await runtime.start()
            self.exits.push_async_callback(runtime.stop)
            self._runtimes[service] = runtime
        return cast(R, self._runtimes[service])

    def running(self, service: str) -> Any | None:
        """``service``'s runtime if a unit of this process started it."""
        return self._runtimes.get(service)

    #: The runtimes other code reaches for by name (None until a unit started them).
    identity: ClassVar[_Running[IdentityRuntime]] = _Running()
    compute: ClassVar[_Running[ComputeRuntime]] = _Running()
    image: ClassVar[_Running[ImageRuntime]] = _Running()
    network: ClassVar[_Running[NetworkRuntime]] = _Running()
    volume: ClassVar[_Running[VolumeRuntime]] = _Running()

    @property
    def identity_reachable(self) -> bool:
        """Whether identity (and so the catalog) can be reached: here or at
        ``auth.identity_url``."""
        return self.identity is not None or bool(self.settings.auth.identity_url)

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

    async def transport(self) -> Transport:
        """The message bus of this process (``settings.bus_url``), started once."""
        if self.bus is None:
            from stratus.core.bus import get_transport

            bus = get_transport(self.settings.bus_url)
            await bus.start()
            self.exits.push_async_callback(bus.close)
            self.bus = bus
        return self.bus

    async def serve(self, topic: str, server: str | None, manager: Any,
                    methods: tuple[str, ...], *, prefetch: int | None = None,
                    host_only: bool = False) -> None:
        """Serve ``manager``'s ``methods`` on the bus at ``topic`` (``server``: one host's
        queue; ``prefetch``: messages handled at once per queue, if not the bus's default;
        ``host_only``: that host's queues only, not the topic's shared ones nor its
        fanouts); stopped with the stack."""
        from stratus.core.bus import RPCServer, Target
        from stratus.core.bus.server import DEFAULT_PREFETCH

        rpc = RPCServer(await self.transport(), Target(topic, server=server), manager, methods,
                        prefetch=prefetch or DEFAULT_PREFETCH, host_only=host_only)
        await rpc.start()
        self.exits.push_async_callback(rpc.stop)

    def http_client(self) -> httpx.AsyncClient:
        from stratus.core.http import client_verify, service_http_client

        ca_file = self.settings.tls.ca_file
        if self._verify is None and ca_file is not None:  # one context for every client
            self._verify = client_verify(ca_file)
        # Without the cloud's own CA: the system's authorities, loaded by the first HTTPS
        # call of any client (``TracingTransport``), not by making the clients.
        client = service_http_client(transport=self.http_transport, verify=self._verify)
        self.exits.push_async_callback(client.aclose)
        return client

    def token_validator(self) -> TokenValidator:
        """In-process validation when identity runs here, else REST to ``auth.identity_url``."""
        if self.validator is not None:
            return self.validator
        auth = self.settings.auth
        identity = self.identity
        inner: TokenValidator
        if identity is not None:
            inner = identity
        elif auth.identity_url:
            from stratus.core.auth_remote import RemoteTokenValidator

            remote = RemoteTokenValidator(
                auth.identity_url, username=auth.service_username,
                password=auth.service_password.get_secret_value() if auth.service_password
                else "", project=auth.service_project, domain=auth.service_domain,
                client=self.http_client())
            self.exits.push_async_callback(remote.aclose)
            inner = remote
        else:
            raise RuntimeError("identity is not in this process and auth.identity_url is unset")
        cache = CachingValidator(inner, ttl=auth.cache_ttl, size=auth.cache_size)
        if identity is not None:
            identity.revocation_listeners.append(cache.invalidate)
        self.validator = cache
        return cache

    async def share_token_revocations(self) -> None:
        """When the bus reaches other processes: this process's token cache is emptied by
        a revocation recorded in any process, and revocations recorded here are told to
        the others (``stratus.core.token_caches``)."""
        if not self.settings.bus_shared:
            return
        cache = self.validator
        identity = self.identity
        if not isinstance(cache, CachingValidator) and identity is None:
            return
        from stratus.core.context import RequestContext
        from stratus.core.token_caches import TOPIC, TokenCacheListener, TokenCachesAPI

        bus = await self.transport()
        if isinstance(cache, CachingValidator):
            listener = TokenCacheListener(cache)
            await self.serve(TOPIC, None, listener, listener.METHODS)
        if identity is not None:
            caches = TokenCachesAPI(bus)
            ctx = RequestContext.for_service("identity")
            identity.revocation_listeners.append(lambda: caches.tokens_revoked(ctx))

    def image_records(self) -> ImageRecords:
        """The image records of this process's compute-api (``stratus.core.image_caches``);
        off until ``share_image_changes`` finds what will tell them of changes."""
        if self._image_records is None:
            from stratus.core.image_caches import ImageRecords

            self._image_records = ImageRecords()
        return self._image_records

    async def share_image_changes(self) -> None:
        """Once the units are built: the image service of this process tells this
        process's image records of every change directly, and, when the bus reaches other
        processes, tells the others' over the bus and this process's records listen to
        theirs. The records are used only when something will tell them of changes."""
        records = self._image_records
        image = self.image
        shared = self.settings.bus_shared
        if records is not None and image is not None:
            image.change_listeners.append(records.invalidate)
            records.enabled = True
        if not shared:
            return
        from stratus.core.context import RequestContext
        from stratus.core.image_caches import TOPIC, ImageCacheListener, ImageCachesAPI

        bus = await self.transport()
        if records is not None:
            listener = ImageCacheListener(records)
            await self.serve(TOPIC, None, listener, listener.METHODS)
            # What other processes tell reaches this one only while it is connected.
            records.epoch = lambda: bus.connection_epoch
            records.enabled = True
        if image is not None:
            caches = ImageCachesAPI(bus)
            ctx = RequestContext.for_service("image")

            async def tell_others(image_ids: list[str]) -> None:
                await caches.images_changed(ctx, image_ids)

            image.change_listeners.append(tell_others)

    async def aclose(self) -> None:
        await self.exits.aclose()


@dataclass(frozen=True)
class Unit:
    """One thing a process can run: an API mounted at ``prefix``, or a bus server."""

    name: str
    #: Path the unit's API is mounted at; None for units that only serve the bus.
    prefix: str | None
    #: Starts the unit (its stop is registered on the stack); returns its API, if any.
    build: Callable[[Stack], Awaitable[ASGIApp | None]]
    #: (service type, service name, path after the prefix) registered in the catalog.
    catalog: tuple[str, str, str] | None = None
    #: More service types registered at the same URL (``volumev3`` beside block-storage).
    catalog_aliases: tuple[str, ...] = ()
    #: Why the unit cannot run in this process with these settings (a missing program, a
    #: backend that has no use for it), saying how to add what is missing; None: it runs.
    #: A unit that cannot run is not built, and ``stratus up`` shows it as not started.
    unavailable: Callable[[Settings], str | None] | None = None

    def why_not_started(self, settings: Settings) -> str | None:
        return None if self.unavailable is None else self.unavailable(settings)


def compute_hosts(settings: Settings) -> list[str]:
    """The hosts this process's compute agents run as: ``host``, ``host-2``, ... (the
    l2-agent wires the ports bound to them)."""
    base = settings.compute.host or socket.gethostname()
    return [base if i == 0 else f"{base}-{i + 1}" for i in range(settings.compute.fake_hosts)]


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
    if settings.tls.ca_file is not None:  # the cloud's own CA: clients verify with it
        clouds["clouds"]["stratus"]["cacert"] = str(settings.tls.ca_file)
    import yaml  # written once a start is done, not needed before

    path = settings.data_dir / "clouds.yaml"
    write_private(path, yaml.safe_dump(clouds, sort_keys=False))
    return path
