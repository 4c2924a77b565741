"""A build fetches its image while its ports are made and wired (the image does not depend
on the network), and a failure of either leaves nothing behind: the ports are given back,
a fetch the build no longer needs is stopped, and the failure reported is the step's own.
Once the image is there the driver is told to make what needs no network (the root disk)
while the ports are still being made; a build failing then has the driver remove it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from stratus.compute.agent.manager import ComputeAgentManager
from stratus.compute.agent.network import HostNetwork, NetworkError
from stratus.compute.objects import FlavorInfo, InstanceRecord, VifInfo
from stratus.compute.rpcapi import ConductorAPI
from stratus.compute.virt.driver import GuestSpec
from stratus.compute.virt.fake import FakeDriver
from stratus.core.context import RequestContext
from stratus.core.images_cache import CachedImage, HostImages, ImageCacheError

#: How long a step waits for the other before the test fails (never a measured time: a
#: serial build would wait for ever).
DEADLOCK_GUARD_S = 30


class FileDriver(FakeDriver):
    """The fake driver, asking for the image's file as the libvirt driver does."""

    needs_image_file = True


class Conductor:
    def __init__(self) -> None:
        self.failed: list[str] = []
        self.updates: list[Any] = []

    async def instance_update(self, ctx: RequestContext, instance_uuid: str, update: Any,
                              *args: Any, **kwargs: Any) -> None:
        self.updates.append(update)

    async def action_event(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def build_failed(self, ctx: RequestContext, instance_uuid: str, host: str,
                           fault: Any, *args: Any, **kwargs: Any) -> None:
        self.failed.append(fault.message)


class Network:
    """Ports for the build; ``allocate`` waits for ``wait_for`` first when given one, and
    fails when ``fails``."""

    def __init__(self, wait_for: asyncio.Event | None = None, fails: bool = False) -> None:
        self.wait_for = wait_for
        self.fails = fails
        self.allocated: list[str] = []
        self.deallocated: list[str] = []

    async def allocate(self, ctx: RequestContext, instance_uuid: str, host: str,
                       **kwargs: Any) -> list[VifInfo]:
        if self.wait_for is not None:
            await asyncio.wait_for(self.wait_for.wait(), DEADLOCK_GUARD_S)
        if self.fails:
            raise NetworkError("Could not create a port: no more addresses")
        self.allocated.append(instance_uuid)
        return [VifInfo(id="port-1", address="fa:16:3e:00:00:01", network_id="net",
                        network_name="private")]

    async def deallocate(self, ctx: RequestContext, instance_uuid: str,
                         network_info: Any) -> None:
        self.deallocated.append(instance_uuid)


class Images:
    """The host's image cache: ``started`` is set when a fetch begins; it then waits for
    ``release`` (when given), then fails when ``fails``."""

    def __init__(self, release: asyncio.Event | None = None, fails: bool = False) -> None:
        self.started = asyncio.Event()
        self.release = release
        self.fails = fails
        self.cancelled = False

    async def local_image(self, ctx: RequestContext, image_ref: str) -> CachedImage:
        self.started.set()
        try:
            if self.release is not None:
                await asyncio.wait_for(self.release.wait(), DEADLOCK_GUARD_S)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.fails:
            raise ImageCacheError(f"Image {image_ref} not found.")
        return CachedImage(Path("/nonexistent/image"), "qcow2")


def _agent(network: Network, images: Images) -> tuple[ComputeAgentManager, Conductor]:
    conductor = Conductor()
    agent = ComputeAgentManager("host-1", FileDriver(), cast(ConductorAPI, conductor),
                                network=cast(HostNetwork, network),
                                images=cast(HostImages, images))
    return agent, conductor


def _instance() -> InstanceRecord:
    return InstanceRecord(
        uuid="vm-1", name="vm-1", hostname="vm-1", project_id="p", user_id="u",
        flavor=FlavorInfo(id="1", name="tiny", vcpus=1, ram=512, disk=1), image_ref="img",
        vm_state="building", task_state="networking")


async def test_the_image_is_fetched_while_the_ports_are_made() -> None:
    images = Images()
    network = Network(wait_for=images.started)  # a serial build would never get past it
    agent, conductor = _agent(network, images)
    await agent._build_tracked(RequestContext(), _instance(), alternates=[], attempt=1)
    assert conductor.failed == []
    assert network.allocated == ["vm-1"] and network.deallocated == []
    assert (await agent.driver.get_info("vm-1")).power_state.name == "RUNNING"


async def test_a_failed_network_stops_the_fetch_and_is_the_error_reported() -> None:
    images = Images(release=asyncio.Event())  # never released: only a cancel ends it
    network = Network(wait_for=images.started, fails=True)
    agent, conductor = _agent(network, images)
    await agent._build_tracked(RequestContext(), _instance(), alternates=[], attempt=1)
    assert len(conductor.failed) == 1 and "no more addresses" in conductor.failed[0]
    assert images.cancelled
    assert network.deallocated == ["vm-1"]


async def test_a_failed_fetch_gives_the_ports_back() -> None:
    images = Images(fails=True)
    network = Network(wait_for=images.started)
    agent, conductor = _agent(network, images)
    await agent._build_tracked(RequestContext(), _instance(), alternates=[], attempt=1)
    assert len(conductor.failed) == 1 and "not found" in conductor.failed[0]
    assert network.allocated == ["vm-1"] and network.deallocated == ["vm-1"]
    assert await agent.driver.list_guests() == []


class PreparingDriver(FileDriver):
    """Records what ``prepare`` was asked to make ahead, and sets ``prepared`` then."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared = asyncio.Event()
        self.ahead: list[GuestSpec] = []
        self.destroyed: list[str] = []

    async def prepare(self, guest: GuestSpec) -> None:
        self.ahead.append(guest)
        self.prepared.set()

    async def destroy(self, uuid: str, *, keep_shared_disk: bool = False) -> None:
        self.destroyed.append(uuid)
        await super().destroy(uuid, keep_shared_disk=keep_shared_disk)


async def test_the_driver_prepares_the_root_disk_while_the_ports_are_made() -> None:
    driver = PreparingDriver()
    network = Network(wait_for=driver.prepared)  # a serial build would never get past it
    conductor = Conductor()
    agent = ComputeAgentManager("host-1", driver, cast(ConductorAPI, conductor),
                                network=cast(HostNetwork, network),
                                images=cast(HostImages, Images()))
    await agent._build_tracked(RequestContext(), _instance(), alternates=[], attempt=1)
    assert conductor.failed == []
    [ahead] = driver.ahead
    assert ahead.uuid == "vm-1" and ahead.image_path == Path("/nonexistent/image")
    assert ahead.network_info == []  # none yet: what is made ahead must not need it
    assert (await driver.get_info("vm-1")).power_state.name == "RUNNING"


async def test_a_build_failing_after_prepare_has_the_driver_remove_it() -> None:
    driver = PreparingDriver()
    network = Network(wait_for=driver.prepared, fails=True)
    conductor = Conductor()
    agent = ComputeAgentManager("host-1", driver, cast(ConductorAPI, conductor),
                                network=cast(HostNetwork, network),
                                images=cast(HostImages, Images()))
    await agent._build_tracked(RequestContext(), _instance(), alternates=[], attempt=1)
    assert len(conductor.failed) == 1 and "no more addresses" in conductor.failed[0]
    assert driver.ahead and driver.destroyed == ["vm-1"]


class WiringDriver(FileDriver):
    """Records that the agent let it spawn while the ports are wired (``spawn_when``)."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[GuestSpec] = []

    async def spawn_when(self, guest: GuestSpec,
                         wired: Callable[[], Awaitable[None]]) -> None:
        self.handed.append(guest)
        await super().spawn_when(guest, wired)


async def test_the_driver_is_given_the_wait_for_the_ports_with_the_guest() -> None:
    driver = WiringDriver()
    conductor = Conductor()
    agent = ComputeAgentManager("host-1", driver, cast(ConductorAPI, conductor),
                                network=cast(HostNetwork, Network()),
                                images=cast(HostImages, Images()))
    await agent._build_tracked(RequestContext(), _instance(), alternates=[], attempt=1)
    assert conductor.failed == []
    [guest] = driver.handed
    assert [vif["id"] for vif in guest.network_info] == ["port-1"]
    assert (await driver.get_info("vm-1")).power_state.name == "RUNNING"
