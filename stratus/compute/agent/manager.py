"""The compute agent: one per host, building and running guests through its virt driver.

It never touches the database: it reads instances from the conductor and sends changes
back, each naming the task state it expects, so a delete that began meanwhile stops a
build cleanly. A failed build destroys what it made and hands the instance back to the
conductor, which reschedules it to an alternate host or sets ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from stratus.compute import states
from stratus.compute.agent import AGENT_USER
from stratus.compute.agent.disk_flows import DiskFlows
from stratus.compute.agent.events import EventsCancelled, EventWaiter, InstanceEvents
from stratus.compute.agent.guest import DriveOptions, guest_spec
from stratus.compute.agent.guest_actions import GuestStateActions
from stratus.compute.agent.moves import HostMoves
from stratus.compute.agent.network import HostNetwork
from stratus.compute.agent.power_sync import PowerStateSync
from stratus.compute.agent.volumes import HostVolumes
from stratus.compute.console_types import ConsoleEndpoint, ConsoleKind, ConsoleUnavailable
from stratus.compute.errors import UnexpectedTaskState
from stratus.compute.objects import (
    BUILD_EVENT,
    MAX_BUILD_ATTEMPTS,
    ActionEvent,
    ExternalEvent,
    Fault,
    FlavorInfo,
    HostReport,
    InstanceRecord,
    InstanceUpdate,
    VifInfo,
)
from stratus.compute.rpcapi import ComputeAgentAPI, ConductorAPI
from stratus.compute.virt.driver import (
    GuestNotFound,
    GuestSpec,
    PowerState,
    VirtDriver,
    VirtError,
)
from stratus.core.bus.server import first_delivery
from stratus.core.clients.image import ImageClient
from stratus.core.context import RequestContext
from stratus.core.db import utcnow
from stratus.core.exceptions import StratusError
from stratus.core.images_cache import CachedImage, HostImages, ImageCacheError
from stratus.core.metrics import (
    AGENT_BUILDS_IN_FLIGHT,
    AGENT_DELETES_IN_FLIGHT,
    AGENT_RELEASE_RETRIES,
    BOOTS,
)
from stratus.core.periodic import Periodic
from stratus.core.retry import Backoff, with_backoff
from stratus.core.tracing import span

LOG = logging.getLogger(__name__)


class BuildCancelled(Exception):
    """The instance left the expected task state (it is being deleted)."""

    #: Raised before the guest was spawned (by this build).
    before_spawn = False


@dataclass(frozen=True)
class AgentOptions:
    zone: str = "nova"
    report_interval: float = 10.0
    sync_power_state_interval: float = 600.0
    cpu_allocation_ratio: float = 16.0
    ram_allocation_ratio: float = 1.5
    disk_allocation_ratio: float = 1.0
    reserved_host_memory_mb: int = 512
    #: Seconds to wait for the network service's ``network-vif-plugged`` before failing.
    vif_plugging_timeout: float = 300.0
    #: What config drives' host names end with (the metadata service's ``dhcp_domain``).
    dhcp_domain: str = "novalocal"
    #: How a delete's release of ports and volumes is tried again while the network or
    #: block storage service fails transiently (no answer, a timeout, a 5xx: overloaded,
    #: restarting) before the delete ends in ERROR.
    release_backoff: Backoff = field(default_factory=Backoff)


class ComputeAgentManager(GuestStateActions):
    METHODS = ("build_and_run_instance", "terminate_instance", "stop_instance",
               "start_instance", "reboot_instance", "get_console_output",
               "external_instance_event", "attach_volume", "detach_volume",
               "snapshot_instance", "rebuild_instance", "shelve_instance",
               "shelve_offload_instance", "unshelve_instance",
               "attach_interface", "detach_interface", "get_console",
               # Moves between hosts (stratus.compute.agent.moves)
               "resize_instance", "finish_resize", "confirm_resize", "revert_resize",
               "finish_revert_resize", "live_migration", "pre_live_migration",
               "post_live_migration_at_destination", "rollback_live_migration_at_destination",
               "live_migration_abort", "live_migration_force_complete", "evacuate_instance",
               *GuestStateActions.METHODS)
    #: Served on the host's events topic (``compute-events.<host>``), which takes at most
    #: ``EVENT_PREFETCH`` at a time, apart from the builds that wait for them. Still on
    #: ``METHODS`` too: a compute-api that predates the events topic sends them there.
    EVENT_METHODS = ("external_instance_event",)
    #: Events handled at once: waking waiters is instant; a ``network-changed`` refresh
    #: reads and writes the instance through the conductor and asks the network service.
    EVENT_PREFETCH = 64

    def __init__(self, host: str, driver: VirtDriver, conductor: ConductorAPI,
                 options: AgentOptions | None = None,
                 network: HostNetwork | None = None,
                 images: HostImages | None = None,
                 volumes: HostVolumes | None = None,
                 image_service: ImageClient | None = None,
                 peers: ComputeAgentAPI | None = None) -> None:
        self.host = host
        self.driver = driver
        self.conductor = conductor
        self._builds_in_flight = AGENT_BUILDS_IN_FLIGHT.labels(host)
        #: The instances this process is building (taken up, not yet ended).
        self._building: set[str] = set()
        self._deletes_in_flight = AGENT_DELETES_IN_FLIGHT.labels(host)
        self.options = options or AgentOptions()
        #: The network service's client; None runs without networking (bare compute).
        self.network = network
        #: Local copies of images, for drivers that boot from a file (``needs_image_file``).
        self.images = images
        #: Attachments through the volume service; None: this host cannot attach volumes.
        self.volumes = volumes
        #: The image service, to upload snapshots (with this host's service token); None:
        #: this host cannot take snapshots.
        self.image_service = image_service
        #: createImage, rebuild and shelve on this host (``stratus.compute.agent.disk_flows``).
        self.flows = DiskFlows(self)
        self._heartbeat = Periodic(f"heartbeat of {host}", self.options.report_interval,
                                   self._beat)
        #: Waiters for events other services report (``network-vif-plugged``, ...).
        self.events = InstanceEvents()
        #: One writer of an instance's ``network_info`` at a time (interface attach and
        #: detach, the floating-IP refresh after ``network-changed``): each reads it, then
        #: records a changed copy, so two at once would lose one's change. Entry: the lock
        #: and how many hold or wait for it (dropped at zero, so deleted servers leave none).
        self._network_info_locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self.power_sync = PowerStateSync(host, driver, conductor,
                                         self.options.sync_power_state_interval)
        #: This host's half of resizes, migrations and evacuations; ``peers`` reaches the
        #: other hosts (None: this host can be the source of no move).
        self.moves = HostMoves(host, driver, conductor, peers, network, self._guest_for_move,
                               volumes)

    # Volumes (see stratus.compute.agent.volumes) -------------------------------------------

    async def attach_volume(self, ctx: RequestContext, instance_uuid: str,
                            attachment_id: str, mountpoint: str) -> None:
        if self.volumes is None:
            raise VirtError(f"{self.host} cannot reach the volume service.")
        await self.volumes.attach(ctx, instance_uuid, attachment_id, mountpoint)

    async def detach_volume(self, ctx: RequestContext, instance_uuid: str,
                            attachment_id: str, mountpoint: str) -> None:
        if self.volumes is None:
            raise VirtError(f"{self.host} cannot reach the volume service.")
        await self.volumes.detach(ctx, instance_uuid, attachment_id, mountpoint)

    # Interfaces (os-interface; see stratus.compute.interfaces) -----------------------------

    async def attach_interface(self, ctx: RequestContext, instance_uuid: str, port_id: str,
                               preserve_on_delete: bool, tag: str | None = None,
                               ) -> VifInfo:
        """Bind the port to this host, wait until it is wired, hot-plug the NIC and record
        it in the instance's network_info; returns the new interface (a ``VifInfo`` dict).
        On failure the port is unplugged and released (unbound, or deleted if it was made
        for this attach) and nothing is recorded."""
        if self.network is None:
            raise VirtError(f"{self.host} cannot reach the network service.")
        event = "compute_attach_interface"
        async with self._network_info_lock(instance_uuid):
            instance = await self.conductor.instance_get(ctx, instance_uuid)
            if any(vif.get("id") == port_id for vif in instance.network_info):
                raise VirtError(f"Port {port_id} is already attached to {instance_uuid}.")
            await self._event(ctx, instance_uuid, event, finished=False)
            waiters: list[EventWaiter] = []

            def listen(port_ids: list[str]) -> None:
                waiters.append(self.events.prepare(
                    instance_uuid, [f"network-vif-plugged:{p}" for p in port_ids]))

            plugged = False
            try:
                vif = (await self.network.attach_port(
                    ctx, instance_uuid, self.host, port_id, preserve=preserve_on_delete,
                    zone=instance.availability_zone or self.options.zone,
                    before_bind=listen)).model_copy(update={"tag": tag})
                try:
                    for waiter in waiters:
                        await waiter.wait(self.options.vif_plugging_timeout)
                    await self.driver.attach_interface(instance_uuid, vif.model_dump())
                    plugged = True
                    await self.conductor.instance_update(ctx, instance_uuid, InstanceUpdate(
                        network_info=[*instance.network_info, vif.model_dump()]))
                except BaseException:
                    if plugged:
                        with contextlib.suppress(Exception):
                            await self.driver.detach_interface(instance_uuid, vif.model_dump())
                    with contextlib.suppress(Exception):
                        await self.network.release_port(ctx, port_id, preserve_on_delete)
                    raise
            except Exception as exc:
                await self._event(ctx, instance_uuid, event, finished=True, result="Error",
                                  details=str(exc))
                raise
            finally:
                for waiter in waiters:
                    waiter.close()
        await self._event(ctx, instance_uuid, event, finished=True, result="Success")
        return vif

    async def detach_interface(self, ctx: RequestContext, instance_uuid: str,
                               port_id: str) -> None:
        """Unplug the NIC, drop it from network_info, then give the port back (a port made
        for the instance is deleted, the user's own unbound)."""
        if self.network is None:
            raise VirtError(f"{self.host} cannot reach the network service.")
        event = "compute_detach_interface"
        async with self._network_info_lock(instance_uuid):
            instance = await self.conductor.instance_get(ctx, instance_uuid)
            vif = next((v for v in instance.network_info if v.get("id") == port_id), None)
            if vif is None:
                raise VirtError(f"Port {port_id} is not attached to {instance_uuid}.")
            await self._event(ctx, instance_uuid, event, finished=False)
            try:
                await self.driver.detach_interface(instance_uuid, vif)
                await self.conductor.instance_update(ctx, instance_uuid, InstanceUpdate(
                    network_info=[v for v in instance.network_info
                                  if v.get("id") != port_id]))
                await self.network.release_port(ctx, port_id,
                                                bool(vif.get("preserve_on_delete")))
            except Exception as exc:
                await self._event(ctx, instance_uuid, event, finished=True, result="Error",
                                  details=str(exc))
                raise
        await self._event(ctx, instance_uuid, event, finished=True, result="Success")

    # Life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the driver, report in, reconcile guests, then report periodically."""
        await self.driver.init_host(self.host)
        ctx = RequestContext.for_service(AGENT_USER)
        expected = await self.report(ctx)
        await self.reconcile(ctx, expected)
        self._heartbeat.start()
        self.power_sync.start()

    async def stop(self) -> None:
        await self.power_sync.stop()
        await self._heartbeat.stop()
        await self.driver.cleanup_host()

    async def reconcile(self, ctx: RequestContext, expected: list[str]) -> None:
        """After a restart: finish deletes, fail builds and end the guest state actions
        (``settle_interrupted``) this host left half done, and remove the guests of servers
        rebuilt elsewhere meanwhile (evacuated)."""
        for uuid in set(await self.driver.list_guests()) - set(expected):
            if await self._moved_away(ctx, uuid):
                LOG.warning("guest %s on %s belongs to a server now on another host "
                            "(evacuated): removing it", uuid, self.host)
                await self._destroy_quietly(uuid)
            else:
                LOG.warning("guest %s runs on %s but no instance here owns it", uuid,
                            self.host)
        # One call for the states of every server here; only those a restart left half
        # done are read whole (a host with thousands of servers at rest made a call each).
        wanted = set(expected)
        for found in await self.conductor.host_instance_states(ctx, self.host):
            if found.uuid not in wanted or (found.task_state is None
                                            and found.vm_state != states.BUILDING):
                continue
            uuid = found.uuid
            instance = await self.conductor.instance_get(ctx, uuid)
            if instance.task_state == states.DELETING:
                await self.terminate_instance(ctx, uuid)
            elif instance.task_state is not None and await self.settle_interrupted(
                    ctx, uuid, instance.task_state):
                continue
            elif instance.vm_state == states.BUILDING:
                await self._destroy_quietly(uuid)
                await self._undo_volumes_quietly(ctx, instance, [])
                await self.conductor.build_failed(ctx, uuid, self.host, Fault(
                    message=f"The build was interrupted by a restart of {self.host}."),
                    alternates=[], attempt=MAX_BUILD_ATTEMPTS)

    async def _moved_away(self, ctx: RequestContext, uuid: str) -> bool:
        """The server of this guest lives on another host, with nothing under way (a move
        in progress may still need the guest here)."""
        try:
            instance = await self.conductor.instance_get(ctx, uuid)
        except Exception:
            return False  # not a server of this cloud's: leave it alone
        return (not instance.deleted and instance.host not in (None, self.host)
                and instance.task_state is None)

    async def _beat(self) -> None:
        """One heartbeat, given up when the next one is due: a heartbeat lost with the broker
        node that carried it (its reply never comes) must not hold back the next ones until
        the call's timeout, past ``service_down_time``, when the host would be taken for
        down and its builds failed."""
        # Without the host's instances: only the start's report uses them (reconcile).
        await self.report(RequestContext.for_service(AGENT_USER),
                          answer_within=self.options.report_interval, with_instances=False)

    async def report(self, ctx: RequestContext, *, answer_within: float | None = None,
                     with_instances: bool = True) -> list[str]:
        """Report in; the answer lists the host's live instances (empty unless
        ``with_instances``)."""
        resources = await self.driver.get_available_resource()
        o = self.options
        return await self.conductor.host_report(ctx, answer_within=answer_within,
                                                report=HostReport(
            host=self.host, zone=o.zone, hypervisor_type=resources.hypervisor_type,
            hypervisor_version=resources.hypervisor_version, cpu_arch=resources.cpu_arch,
            vcpus=resources.vcpus, memory_mb=resources.memory_mb,
            local_gb=resources.local_gb, cpu_allocation_ratio=o.cpu_allocation_ratio,
            ram_allocation_ratio=o.ram_allocation_ratio,
            disk_allocation_ratio=o.disk_allocation_ratio,
            reserved_host_memory_mb=o.reserved_host_memory_mb,
            running_guests=await self.driver.list_guests(), with_instances=with_instances))

    # Helpers ------------------------------------------------------------------------------

    async def _update(self, ctx: RequestContext, uuid: str, update: InstanceUpdate,
                      expected: list[str | None],
                      event: ActionEvent | None = None) -> InstanceRecord:
        try:
            return await self.conductor.instance_update(ctx, uuid, update, expected, event)
        except UnexpectedTaskState as exc:
            raise BuildCancelled(exc.message) from exc

    async def _event(self, ctx: RequestContext, uuid: str, event: str, *, finished: bool,
                     result: str | None = None, details: str | None = None) -> None:
        await self.conductor.action_event(ctx, uuid, event, host=self.host, finished=finished,
                                          result=result, details=details)

    # Build --------------------------------------------------------------------------------

    async def build_and_run_instance(self, ctx: RequestContext, instance_uuid: str,
                                     alternates: list[str], attempt: int = 1,
                                     admin_password: str | None = None,
                                     instance: InstanceRecord | None = None) -> None:
        """Build the instance. ``instance``: the scheduler took the build up for this host
        in its claim (``Instances.place_taking_up``: ``networking``, the build's event
        started) and this is its record: on the message's first delivery the build starts
        from it with no call to the conductor. Otherwise (a redelivery, a cast sent again
        for an instance placed already, a reschedule) ``begin_build`` takes it up, or says
        there is nothing to build."""
        if instance_uuid in self._building:
            # Another message for this build (a scheduler's cast sent again) while this
            # process builds it: one build is enough.
            LOG.info("build of %s on %s is under way here already", instance_uuid, self.host)
            return
        trusted = instance is not None and instance.uuid == instance_uuid and first_delivery()
        if not trusted:
            instance = await self.conductor.begin_build(ctx, instance_uuid, self.host,
                                                        BUILD_EVENT)
            if instance is None:
                return  # deleted, being deleted, or a redelivered build taken up already
            if instance_uuid in self._building:  # taken up here while we asked
                return
        assert instance is not None
        self._building.add(instance_uuid)
        try:
            with self._builds_in_flight.track_inprogress():
                await self._build_tracked(ctx, instance, alternates, attempt, admin_password,
                                          trusted=trusted)
        finally:
            self._building.discard(instance_uuid)

    async def _build_tracked(self, ctx: RequestContext, instance: InstanceRecord,
                             alternates: list[str], attempt: int,
                             admin_password: str | None = None,
                             trusted: bool = False) -> None:
        instance_uuid = instance.uuid
        made: list[str] = []  # volumes this build made: deleted again if it fails
        try:
            await self._build(ctx, instance, made, admin_password)
            BOOTS.labels("active").inc()
        except BuildCancelled as cancelled:
            if trusted and cancelled.before_spawn and not await self._being_deleted(
                    ctx, instance_uuid):
                # A build taken up from the scheduler's record found the instance moved on,
                # before it spawned anything, without a delete: a duplicate of its cast (a
                # sender's retry), another delivery of which built it. That guest is not
                # this build's to remove.
                LOG.info("build of %s on %s was taken up by another delivery", instance_uuid,
                         self.host)
                return
            BOOTS.labels("cancelled").inc()
            LOG.info("build of %s on %s cancelled: it is being deleted", instance_uuid,
                     self.host)
            await self._destroy_quietly(instance_uuid)
            await self._deallocate_quietly(ctx, instance)
            await self._undo_volumes_quietly(ctx, instance, made)
            await self._event(ctx, instance_uuid, BUILD_EVENT, finished=True, result="Error",
                              details="cancelled: the instance is being deleted")
            return
        except Exception as exc:
            LOG.warning("build of %s on %s failed: %s", instance_uuid, self.host, exc)
            await self._destroy_quietly(instance_uuid)
            await self._deallocate_quietly(ctx, instance)
            await self._undo_volumes_quietly(ctx, instance, made)
            # The action's record is not worth the instance: the conductor failing to write
            # it (its database restarting) must not keep build_failed from being sent, or
            # the instance stays in BUILD for good.
            try:
                await self._event(ctx, instance_uuid, BUILD_EVENT, finished=True,
                                  result="Error", details=str(exc))
            except Exception as event_exc:
                LOG.warning("could not record the failed build of %s: %s", instance_uuid,
                            event_exc)
            await self.conductor.build_failed(ctx, instance_uuid, self.host,
                                              Fault(code=500, message=str(exc) or
                                                    type(exc).__name__),
                                              alternates, attempt,
                                              admin_password=admin_password)

    async def _being_deleted(self, ctx: RequestContext, instance_uuid: str) -> bool:
        """Whether the instance is gone or being deleted (a cancelled build's cause); when
        that cannot be read, True: the cancelled build then cleans up, as it always did."""
        try:
            current = await self.conductor.instance_get(ctx, instance_uuid)
        except Exception as exc:
            LOG.warning("could not read %s to see why its build stopped: %s", instance_uuid,
                        exc)
            return True
        return current.deleted or current.task_state == states.DELETING

    async def _build(self, ctx: RequestContext, instance: InstanceRecord,
                     made: list[str], admin_password: str | None = None) -> None:
        uuid = instance.uuid  # in task state networking (``begin_build``)
        plugged: list[EventWaiter] = []
        # The image does not depend on the network: it is fetched (or found in this host's
        # cache) while the ports are made and wired, as Nova prepares a server's block
        # devices while its networks are allocated.
        fetching = asyncio.create_task(self._fetch_and_prepare(ctx, instance))
        try:
            try:
                with span("compute.allocate_network", step="26"):
                    network_info = await self._allocate_network(ctx, instance, plugged)
                block_devices: list[dict[str, Any]] = []
                boot_volume = self.volumes is not None and not instance.image_ref
                data_volumes = any(d.kind == "volume" for d in instance.block_devices)
                if not boot_volume and not data_volumes:
                    # No volume to connect: straight on to spawning, in one conductor call
                    # (one bus round trip and one transaction fewer than through
                    # block_device_mapping, which would last no time at all).
                    await self._update(ctx, uuid, InstanceUpdate(
                        task_state=states.SPAWNING, network_info=network_info),
                        [states.NETWORKING])
                else:
                    await self._update(ctx, uuid, InstanceUpdate(
                        task_state=states.BLOCK_DEVICE_MAPPING, network_info=network_info),
                        [states.NETWORKING])
                    with span("compute.connect_volumes", step="39,42,48"):
                        if boot_volume:
                            assert self.volumes is not None
                            block_devices = await self.volumes.connect_boot_volumes(
                                ctx, instance.project_id, uuid)
                        if data_volumes:
                            if self.volumes is None:
                                raise VirtError(f"{self.host} cannot reach the volume "
                                                "service for the server's volumes.")
                            block_devices += await self.volumes.connect_data_volumes(
                                ctx, instance.project_id, uuid, instance.block_devices,
                                made)
                    await self._update(ctx, uuid, InstanceUpdate(task_state=states.SPAWNING),
                                       [states.BLOCK_DEVICE_MAPPING])
            except BaseException as exc:
                if isinstance(exc, BuildCancelled):
                    exc.before_spawn = True
                # The build fails (or is cancelled) before the image is needed: its fetch
                # is stopped (the cache removes a partial download) and its own error, if
                # any, is not the build's.
                fetching.cancel()
                await asyncio.wait([fetching])
                if not fetching.cancelled():
                    fetching.exception()  # retrieved: it is the network's failure we report
                raise
            image, location = await fetching

            async def wired() -> None:
                # As Nova's libvirt driver does: the guest runs only once its ports are
                # wired (the driver may start it paused meanwhile).
                with span("compute.wait_vif_plugged", step="38"):
                    for waiter in plugged:
                        try:
                            await waiter.wait(self.options.vif_plugging_timeout)
                        except EventsCancelled as exc:
                            raise BuildCancelled(str(exc)) from exc

            with span("compute.spawn", step="43-44") as spawning:
                spawning.set_attribute("stratus.virt_driver", self.driver.name)
                await self.driver.spawn_when(
                    guest_spec(instance, image, network_info, block_devices,
                               image_location=location, drive=self.drive_options(),
                               admin_pass=admin_password), wired)
                info = await self.driver.get_info(uuid)
        finally:
            for waiter in plugged:
                waiter.close()
        await self._update(ctx, uuid, InstanceUpdate(
            vm_state=states.ACTIVE, power_state=int(info.power_state), clear_task_state=True,
            launched_at=utcnow(), progress=100), [states.SPAWNING],
            event=ActionEvent(name=BUILD_EVENT, host=self.host, finished=True,
                              result="Success"))

    async def _guest_for_move(self, ctx: RequestContext, instance: InstanceRecord,
                              flavor: FlavorInfo, network_info: list[dict[str, Any]],
                              block_devices: list[dict[str, Any]]) -> GuestSpec:
        """The guest of ``instance`` with ``flavor`` made on this host by a move (its image
        fetched into this host's cache where the driver needs it), with its volumes as
        connected here (``block_devices``)."""
        image = await self._local_image(ctx, instance)
        return guest_spec(instance, image, network_info, block_devices, flavor=flavor,
                          drive=self.drive_options())

    def drive_options(self) -> DriveOptions:
        """What ``guest_spec`` makes a config drive's documents with on this host."""
        return DriveOptions(dhcp_domain=self.options.dhcp_domain, zone=self.options.zone)

    async def _fetch_and_prepare(self, ctx: RequestContext, instance: InstanceRecord
                                 ) -> tuple[CachedImage | None, tuple[str, str] | None]:
        """The image to boot, then the driver told to make what needs no network (the
        root disk) while the ports are made and wired; a failed build's destroy removes
        it, as it would the spawn's."""
        image, location = await self._fetch_boot_image(ctx, instance.image_ref)
        await self.driver.prepare(guest_spec(instance, image, [], [],
                                             image_location=location))
        return image, location

    async def _fetch_boot_image(self, ctx: RequestContext, image_ref: str
                                ) -> tuple[CachedImage | None, tuple[str, str] | None]:
        with span("compute.fetch_image", step="23,25"):
            return await self.boot_image(ctx, image_ref)

    async def boot_image(self, ctx: RequestContext, image_ref: str
                         ) -> tuple[CachedImage | None, tuple[str, str] | None]:
        """The image to boot (a build, a rebuild): where it lies and its disk format, when
        the driver makes the disk there (an RBD clone: nothing is downloaded), else its
        bits in this host's cache."""
        if self.driver.clones_images and image_ref and self.images is not None:
            try:
                record = await self.images.image_info(ctx, image_ref)
            except StratusError as exc:
                raise VirtError(f"Image {image_ref}: {exc}") from exc
            location, disk_format = record.get("direct_url"), record.get("disk_format")
            if await self.driver.can_clone_image(location, disk_format):
                return None, (str(location), str(disk_format))
        return await self.local_image(ctx, image_ref), None

    async def _local_image(self, ctx: RequestContext,
                           instance: InstanceRecord) -> CachedImage | None:
        """The image's bits in this host's cache, when the driver boots from a file."""
        return await self.local_image(ctx, instance.image_ref)

    async def local_image(self, ctx: RequestContext, image_ref: str) -> CachedImage | None:
        """The bits of ``image_ref`` in this host's cache, when the driver boots from a
        file (None when it does not, or for a server booted from a volume)."""
        if not self.driver.needs_image_file or not image_ref:
            return None
        if self.images is None:
            raise VirtError(f"The {self.driver.name} driver needs the image on this host, "
                            "but the host has no image cache (no identity to find it with).")
        try:
            return await self.images.local_image(ctx, image_ref)
        except ImageCacheError as exc:
            raise VirtError(f"Image {image_ref}: {exc}") from exc

    async def _allocate_network(self, ctx: RequestContext, instance: InstanceRecord,
                                plugged: list[EventWaiter]) -> list[dict[str, Any]]:
        """Ports for the instance, bound to this host; ``plugged`` gets the waiter for their
        ``network-vif-plugged`` events, registered before the binding sets them off."""
        if self.network is None:
            return []

        def listen(port_ids: list[str]) -> None:
            if port_ids:
                plugged.append(self.events.prepare(
                    instance.uuid, [f"network-vif-plugged:{p}" for p in port_ids]))

        vifs = await self.network.allocate(
            ctx, instance.uuid, self.host, requested=instance.requested_networks,
            zone=instance.availability_zone or self.options.zone,
            security_groups=instance.security_groups, before_bind=listen)
        return [vif.model_dump() for vif in vifs]

    async def _deallocate_quietly(self, ctx: RequestContext, instance: InstanceRecord) -> None:
        """Give back the instance's ports (never raises: a failed build must still end)."""
        if self.network is None:
            return
        try:
            await self.network.deallocate(ctx, instance.uuid, instance.network_info)
        except Exception:
            LOG.exception("could not release the ports of %s", instance.uuid)

    async def _undo_volumes_quietly(self, ctx: RequestContext, instance: InstanceRecord,
                                    made: list[str]) -> None:
        """Give back a failed build's attachments and delete the volumes it made (never
        raises: a failed build must still end)."""
        if self.volumes is None or (instance.image_ref and not instance.block_devices):
            return
        try:
            await self.volumes.undo_build(ctx, instance.project_id, instance.uuid, made)
        except Exception:
            LOG.exception("could not release the volumes of the failed build of %s",
                          instance.uuid)

    async def _destroy_quietly(self, uuid: str) -> None:
        try:
            await self.driver.destroy(uuid)
        except Exception:
            LOG.exception("could not remove guest %s from %s", uuid, self.host)

    # Other actions ------------------------------------------------------------------------

    async def terminate_instance(self, ctx: RequestContext, instance_uuid: str) -> None:
        with self._deletes_in_flight.track_inprogress():
            await self._terminate(ctx, instance_uuid)

    async def _terminate(self, ctx: RequestContext, instance_uuid: str) -> None:
        self.events.cancel_all(instance_uuid)
        await self._event(ctx, instance_uuid, "compute_terminate_instance", finished=False)
        await self.driver.destroy(instance_uuid)
        try:
            if self.network is not None or self.volumes is not None:
                instance = await self.conductor.instance_get(ctx, instance_uuid)
                await self._release(ctx, instance)
        except Exception as exc:
            # The guest is gone but its ports or volumes are not, and the service that holds
            # them refused or stayed away through every try: ERROR (with why), not a delete
            # stuck in ``deleting``; deleting again retries the release.
            LOG.warning("delete of %s on %s could not release its resources: %s",
                        instance_uuid, self.host, exc)
            await self.conductor.instance_update(
                ctx, instance_uuid, InstanceUpdate(vm_state=states.ERROR, clear_task_state=True,
                                                   power_state=int(PowerState.NOSTATE)),
                event=ActionEvent(name="compute_terminate_instance", host=self.host,
                                  finished=True, result="Error", details=str(exc)),
                fault=Fault(message=f"The instance could not be deleted: {exc}"))
            return
        await self._event(ctx, instance_uuid, "compute_terminate_instance", finished=True,
                          result="Success")
        await self.conductor.instance_destroyed(ctx, instance_uuid, self.host)

    async def _release(self, ctx: RequestContext, instance: InstanceRecord) -> None:
        """Give back the deleted guest's ports, then its volume attachments and the volumes
        that go with it; each tried again with backoff while its service fails transiently
        (both are idempotent: what a try released stays released, a retry finds the rest).
        Volumes made or tagged to go with the instance are looked for only when its boot
        request had any (a root volume, a volume mapping): most deletes ask block storage
        one question, not three."""
        instance_uuid, project_id = instance.uuid, instance.project_id
        network_info = instance.network_info
        owned_volumes = not instance.image_ref or any(
            disk.kind == "volume" for disk in instance.block_devices)
        backoff = self.options.release_backoff
        if self.network is not None:
            network = self.network
            await with_backoff(
                lambda: network.deallocate(ctx, instance_uuid, network_info),
                what=f"releasing the ports of {instance_uuid}", backoff=backoff,
                on_retry=self._count_release_retry)
        if self.volumes is not None:
            volumes = self.volumes
            await with_backoff(
                lambda: volumes.release_all(ctx, project_id, instance_uuid,
                                            owned_volumes=owned_volumes),
                what=f"releasing the volumes of {instance_uuid}", backoff=backoff,
                on_retry=self._count_release_retry)

    def _count_release_retry(self, exc: BaseException) -> None:
        AGENT_RELEASE_RETRIES.labels(self.host).inc()

    async def _power_action(self, ctx: RequestContext, uuid: str, event: str,
                            expected: str, final_vm_state: str) -> None:
        await self._event(ctx, uuid, event, finished=False)
        try:
            if event == "compute_stop_instance":
                await self.driver.power_off(uuid)
            else:
                await self.driver.power_on(uuid)
            info = await self.driver.get_info(uuid)
        except Exception as exc:
            await self._event(ctx, uuid, event, finished=True, result="Error", details=str(exc))
            await self.conductor.instance_update(ctx, uuid, InstanceUpdate(
                clear_task_state=True), [expected])
            raise
        await self.conductor.instance_update(ctx, uuid, InstanceUpdate(
            vm_state=final_vm_state, power_state=int(info.power_state), clear_task_state=True),
            [expected])
        await self._event(ctx, uuid, event, finished=True, result="Success")

    async def stop_instance(self, ctx: RequestContext, instance_uuid: str) -> None:
        await self._power_action(ctx, instance_uuid, "compute_stop_instance",
                                 states.POWERING_OFF, states.STOPPED)

    async def start_instance(self, ctx: RequestContext, instance_uuid: str) -> None:
        await self._power_action(ctx, instance_uuid, "compute_start_instance",
                                 states.POWERING_ON, states.ACTIVE)

    async def reboot_instance(self, ctx: RequestContext, instance_uuid: str,
                              hard: bool) -> None:
        pending, started, requested = (
            (states.REBOOT_PENDING_HARD, states.REBOOT_STARTED_HARD, states.REBOOTING_HARD)
            if hard else (states.REBOOT_PENDING, states.REBOOT_STARTED, states.REBOOTING))
        await self._event(ctx, instance_uuid, "compute_reboot_instance", finished=False)
        await self.conductor.instance_update(ctx, instance_uuid,
                                             InstanceUpdate(task_state=pending), [requested])
        await self.conductor.instance_update(ctx, instance_uuid,
                                             InstanceUpdate(task_state=started), [pending])
        try:
            await self.driver.reboot(instance_uuid, hard=hard)
            power = (await self.driver.get_info(instance_uuid)).power_state
        except GuestNotFound:
            power = PowerState.NOSTATE
        await self.conductor.instance_update(ctx, instance_uuid, InstanceUpdate(
            vm_state=states.ACTIVE, power_state=int(power), clear_task_state=True), [started])
        await self._event(ctx, instance_uuid, "compute_reboot_instance", finished=True,
                          result="Success")

    # Snapshots, rebuild, shelve (see stratus.compute.agent.disk_flows) --------------------

    async def snapshot_instance(self, ctx: RequestContext, instance_uuid: str,
                                image_id: str) -> None:
        await self.flows.snapshot(ctx, instance_uuid, image_id)

    async def rebuild_instance(self, ctx: RequestContext, instance_uuid: str,
                               preserve_ephemeral: bool = False,
                               admin_password: str | None = None) -> None:
        await self.flows.rebuild(ctx, instance_uuid, preserve_ephemeral, admin_password)

    async def shelve_instance(self, ctx: RequestContext, instance_uuid: str,
                              image_id: str | None, offload: bool) -> None:
        await self.flows.shelve(ctx, instance_uuid, image_id, offload)

    async def shelve_offload_instance(self, ctx: RequestContext, instance_uuid: str) -> None:
        await self.flows.offload(ctx, instance_uuid)

    async def unshelve_instance(self, ctx: RequestContext, instance_uuid: str,
                                image_id: str | None) -> None:
        await self.flows.unshelve(ctx, instance_uuid, image_id)

    async def external_instance_event(self, ctx: RequestContext, instance_uuid: str,
                                      events: list[ExternalEvent]) -> None:
        """Events compute-api accepted for an instance here: wake whoever waits for them;
        ``network-changed`` refreshes the instance's network info (its floating IPs)."""
        for event in events:
            self.events.dispatch(instance_uuid, event)
        if any(e.name == "network-changed" for e in events):
            await self._refresh_network_info(instance_uuid)

    async def _refresh_network_info(self, instance_uuid: str) -> None:
        """The instance's ``network_info`` as the network service has it now, recorded
        (never raises: a failed refresh leaves the last one, and the next event retries)."""
        if self.network is None:
            return
        ctx = RequestContext.for_service(AGENT_USER)  # the host's own token: sees every port
        try:
            async with self._network_info_lock(instance_uuid):
                instance = await self.conductor.instance_get(ctx, instance_uuid)
                if not instance.network_info:
                    return
                info = await self.network.with_floating_ips(ctx, instance.network_info)
                if info != instance.network_info:
                    await self.conductor.instance_update(ctx, instance_uuid,
                                                         InstanceUpdate(network_info=info))
        except Exception:
            LOG.exception("could not refresh the network info of %s", instance_uuid)

    @contextlib.asynccontextmanager
    async def _network_info_lock(self, instance_uuid: str) -> AsyncIterator[None]:
        """Held while the instance's ``network_info`` is read and rewritten (see
        ``_network_info_locks``)."""
        lock, users = self._network_info_locks.setdefault(
            instance_uuid, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._network_info_locks[instance_uuid]

    async def get_console_output(self, ctx: RequestContext, instance_uuid: str,
                                 length: int | None = None) -> str:
        output = await self.driver.get_console_output(instance_uuid)
        if length is None:
            return output
        # Nova's rule: the last ``length`` pieces of the log split on newlines.
        return "\n".join(output.split("\n")[-length:]) if length > 0 else ""

    async def get_console(self, ctx: RequestContext, instance_uuid: str,
                          kind: ConsoleKind) -> ConsoleEndpoint:
        """Where the guest's console is here (for the console proxy's token)."""
        try:
            return await self.driver.get_console(instance_uuid, kind)
        except GuestNotFound as exc:
            raise ConsoleUnavailable(f"Instance {instance_uuid} is not ready.") from exc

    # Moves between hosts (see stratus.compute.agent.moves) ---------------------------------

    async def resize_instance(self, ctx: RequestContext, instance_uuid: str,
                              migration_uuid: str) -> None:
        await self.moves.resize_instance(ctx, instance_uuid, migration_uuid)

    async def finish_resize(self, ctx: RequestContext, instance_uuid: str,
                            migration_uuid: str, disk_info: dict[str, Any]) -> None:
        await self.moves.finish_resize(ctx, instance_uuid, migration_uuid, disk_info)

    async def confirm_resize(self, ctx: RequestContext, instance_uuid: str,
                             migration_uuid: str) -> None:
        await self.moves.confirm_resize(ctx, instance_uuid, migration_uuid)

    async def revert_resize(self, ctx: RequestContext, instance_uuid: str,
                            migration_uuid: str) -> None:
        await self.moves.revert_resize(ctx, instance_uuid, migration_uuid)

    async def finish_revert_resize(self, ctx: RequestContext, instance_uuid: str,
                                   migration_uuid: str) -> None:
        await self.moves.finish_revert_resize(ctx, instance_uuid, migration_uuid)

    async def live_migration(self, ctx: RequestContext, instance_uuid: str,
                             migration_uuid: str) -> None:
        await self.moves.live_migration(ctx, instance_uuid, migration_uuid)

    async def pre_live_migration(self, ctx: RequestContext, instance_uuid: str,
                                 migration_uuid: str,
                                 source_data: dict[str, Any]) -> dict[str, Any]:
        return await self.moves.pre_live_migration(ctx, instance_uuid, migration_uuid,
                                                   source_data)

    async def post_live_migration_at_destination(self, ctx: RequestContext,
                                                 instance_uuid: str,
                                                 migration_uuid: str) -> int:
        return await self.moves.post_live_migration_at_destination(ctx, instance_uuid,
                                                                   migration_uuid)

    async def rollback_live_migration_at_destination(self, ctx: RequestContext,
                                                     instance_uuid: str,
                                                     migration_uuid: str) -> None:
        await self.moves.rollback_live_migration_at_destination(ctx, instance_uuid,
                                                                migration_uuid)

    async def live_migration_abort(self, ctx: RequestContext, instance_uuid: str,
                                   migration_uuid: str) -> None:
        await self.moves.live_migration_abort(ctx, instance_uuid, migration_uuid)

    async def live_migration_force_complete(self, ctx: RequestContext, instance_uuid: str,
                                            migration_uuid: str) -> None:
        await self.moves.live_migration_force_complete(ctx, instance_uuid, migration_uuid)

    async def evacuate_instance(self, ctx: RequestContext, instance_uuid: str,
                                migration_uuid: str, stop: bool) -> None:
        await self.moves.evacuate_instance(ctx, instance_uuid, migration_uuid, stop)
