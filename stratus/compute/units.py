"""Compute's units: ``compute-api``, ``placement-api``, ``conductor``, ``scheduler``,
``compute-agent``, ``metadata-api`` and ``console-proxy``, all on one ``ComputeRuntime`` per
process."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from starlette.types import ASGIApp

from stratus.core.generated_secrets import metadata_secret
from stratus.core.periodic import Periodic
from stratus.core.web.lazy import LazyApp
from stratus.stack import Stack, Unit, compute_hosts

if TYPE_CHECKING:
    from stratus.compute.agent.manager import ComputeAgentManager
    from stratus.compute.service import ComputeRuntime


async def compute_runtime(stack: Stack) -> ComputeRuntime:
    from stratus.compute.service import ComputeRuntime

    return await stack.runtime("compute", lambda: ComputeRuntime(stack.settings))


async def build_api(stack: Stack) -> ASGIApp:
    from stratus.compute.rpcapi import ComputeAgentAPI, SchedulerAPI
    from stratus.compute.service import ComputeClients
    from stratus.core.clients.image import ImageClient
    from stratus.core.clients.network import NetworkClient
    from stratus.core.clients.volume import VolumeClient

    runtime = await compute_runtime(stack)
    bus = await stack.transport()
    http = stack.http_client()
    runtime.connect(ComputeClients(scheduler=SchedulerAPI(bus), agents=ComputeAgentAPI(bus),
                                   images=ImageClient(http, records=stack.image_records()),
                                   volumes=VolumeClient(http),
                                   network=NetworkClient(http, stack.service_auth())))
    validator = stack.token_validator()

    def build() -> ASGIApp:
        from stratus.compute.api import create_compute_app

        return create_compute_app(runtime, validator)

    return LazyApp(build)


async def build_placement_api(stack: Stack) -> ASGIApp:
    """The Placement API: reads of the tables the scheduler claims in, on compute's runtime."""
    runtime = await compute_runtime(stack)
    validator = stack.token_validator()

    def build() -> ASGIApp:
        from stratus.compute.api.placement import create_placement_app

        return create_placement_app(runtime, validator)

    return LazyApp(build)


async def build_scheduler(stack: Stack) -> None:
    from stratus.compute.rpcapi import SCHEDULER_TOPIC, ComputeAgentAPI
    from stratus.compute.scheduler.manager import SchedulerManager
    from stratus.compute.scheduler.selector import HostSelector, SchedulerOptions

    runtime = await compute_runtime(stack)
    options = stack.settings.compute
    selector = HostSelector(runtime.db, SchedulerOptions(
        host_subset_size=options.host_subset_size,
        service_down_time=options.service_down_time,
        refresh_interval=options.report_interval))
    manager = SchedulerManager(runtime, selector, ComputeAgentAPI(await stack.transport()))
    await stack.serve(SCHEDULER_TOPIC, None, manager, manager.METHODS)


async def build_conductor(stack: Stack) -> None:
    from stratus.compute.conductor.manager import ConductorManager
    from stratus.compute.rpcapi import CONDUCTOR_TOPIC, ComputeAgentAPI

    runtime = await compute_runtime(stack)
    options = stack.settings.compute
    manager = ConductorManager(runtime, ComputeAgentAPI(await stack.transport()),
                               service_down_time=options.service_down_time)
    await stack.serve(CONDUCTOR_TOPIC, None, manager, manager.METHODS)
    watchdog = Periodic("the conductor's watchdog", options.report_interval,
                        manager.recover_orphans)
    watchdog.start()
    stack.exits.push_async_callback(watchdog.stop)
    if options.resize_confirm_window > 0:
        # Nova polls unconfirmed resizes on each host; here the conductor does, as often as
        # the window asks (and no less often than hosts report).
        window = options.resize_confirm_window
        auto_confirm = Periodic("the confirmation of resizes left unconfirmed",
                                min(float(window), options.report_interval),
                                lambda: manager.confirm_expired_resizes(window))
        auto_confirm.start()
        stack.exits.push_async_callback(auto_confirm.stop)
    if options.shelved_offload_time > 0:  # 0: offloaded at once by the host; -1: never
        offloader = Periodic("the shelved servers' offload", options.report_interval,
                             lambda: manager.offload_shelved(options.shelved_offload_time))
        offloader.start()
        stack.exits.push_async_callback(offloader.stop)


async def serve_agent(stack: Stack, agent: ComputeAgentManager) -> None:
    """Serve ``agent`` on the bus, stopped with the stack: its host's ``compute`` queues, and
    its external events on ``compute-events.<host>``, a consumer of their own so they are
    taken while every build slot of the ``compute`` queue holds a build that waits for one.
    Events are always sent to their host: the topic's shared queues are not served."""
    from stratus.compute.rpcapi import COMPUTE_EVENTS_TOPIC, COMPUTE_TOPIC

    await stack.serve(COMPUTE_EVENTS_TOPIC, agent.host, agent, agent.EVENT_METHODS,
                      prefetch=agent.EVENT_PREFETCH, host_only=True)
    await stack.serve(COMPUTE_TOPIC, agent.host, agent, agent.METHODS)


async def build_agent(stack: Stack) -> None:
    from stratus.compute.agent.manager import AgentOptions, ComputeAgentManager
    from stratus.compute.rpcapi import ComputeAgentAPI, ConductorAPI
    from stratus.compute.virt import select
    from stratus.compute.virt.fake import FakeDriver, FakeDriverOptions
    from stratus.core.retry import Backoff

    settings = stack.settings.compute
    choice = select.embedded_choice(stack.settings)
    if choice.name == "fake":
        stack.choices.setdefault("virt driver", f"fake, {settings.fake_hosts} host(s): no real "
                                                f"guests ({choice.reason})")
    else:
        disks = (f"root disks in RBD pool {settings.images_rbd_pool}"
                 if settings.images_type == "rbd" else "qcow2 root disks")
        stack.choices.setdefault("virt driver", f"{choice.name} ({choice.reason}), {disks}")
    bus = await stack.transport()
    options = AgentOptions(report_interval=settings.report_interval,
                           sync_power_state_interval=settings.sync_power_state_interval,
                           cpu_allocation_ratio=settings.cpu_allocation_ratio,
                           ram_allocation_ratio=settings.ram_allocation_ratio,
                           disk_allocation_ratio=settings.disk_allocation_ratio,
                           reserved_host_memory_mb=settings.reserved_host_memory_mb,
                           vif_plugging_timeout=stack.settings.network.vif_plugging_timeout,
                           dhcp_domain=stack.settings.metadata.dhcp_domain,
                           release_backoff=Backoff(tries=settings.release_tries,
                                                   first=settings.release_retry_delay))
    network = None
    # Hosts reach the network service through the catalog, so they need identity: here,
    # or at ``auth.identity_url``. Without either they build guests without networking.
    if stack.identity_reachable:
        from stratus.compute.agent.network import HostNetwork
        from stratus.core.clients.network import NetworkClient

        network = HostNetwork(NetworkClient(stack.http_client(), stack.service_auth()))
    images = None
    if choice.name == "libvirt" and stack.identity_reachable:
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
                                               local_gb=settings.fake_local_gb,
                                               latency=settings.fake_latency)))
        volumes = None
        if network is not None:  # identity is reachable: so is the volume service's catalog
            from stratus.compute.agent.volumes import HostVolumes
            from stratus.core.clients.volume import VolumeClient

            volumes = HostVolumes(host, driver, stack.service_auth(),
                                  VolumeClient(stack.http_client()))
        image_service = None
        if stack.identity_reachable:  # to upload snapshots (createImage, shelve)
            from stratus.core.clients.image import ImageClient

            image_service = ImageClient(stack.http_client(), stack.service_auth())
        agent = ComputeAgentManager(host, driver, ConductorAPI(bus), options, network, images,
                                    volumes, image_service, peers=ComputeAgentAPI(bus))
        await serve_agent(stack, agent)
        await agent.start()
        stack.exits.push_async_callback(agent.stop)
        stack.agents.append(agent)


async def build_metadata(stack: Stack) -> ASGIApp:
    from stratus.compute.metadata.api import create_metadata_app

    runtime = await compute_runtime(stack)
    return create_metadata_app(runtime.db, metadata_secret(stack.settings),
                               dhcp_domain=stack.settings.metadata.dhcp_domain)


async def build_console_proxy(stack: Stack) -> ASGIApp:
    from stratus.compute.console_proxy.api import create_console_proxy_app

    return create_console_proxy_app(await compute_runtime(stack))


UNITS = (
    Unit("compute-api", "/compute", build_api, ("compute", "nova", "/v2.1")),
    Unit("placement-api", "/placement", build_placement_api, ("placement", "placement", "")),
    Unit("conductor", None, build_conductor),
    Unit("scheduler", None, build_scheduler),
    Unit("compute-agent", None, build_agent),
    # No catalog entry: only the metadata proxies call it (``settings.metadata_url``).
    Unit("metadata-api", "/metadata", build_metadata),
    # No catalog entry: clients reach it through the URLs of remote-consoles, with a token.
    Unit("console-proxy", "/console", build_console_proxy),
)
