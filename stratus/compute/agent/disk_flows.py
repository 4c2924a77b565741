"""A compute host's side of createImage, rebuild and shelve/unshelve.

Each flow walks Nova's task states through the conductor, naming the state it expects (so
a delete that began meanwhile stops it), records its action event, and on failure leaves a
clear state with the event saying why:

- snapshot: ``image_snapshot`` → ``image_pending_upload`` (the driver copies the disk) →
  ``image_uploading`` (the copy streamed to the image service) → None. A failure deletes
  the image and clears the task; the server is as it was.
- rebuild: the guest is removed, its ports kept (``rebuild_block_device_mapping``), the
  guest spawned again from the instance's (new) image on the same ports
  (``rebuild_spawning``) → ACTIVE, or STOPPED again if it was (a volume-backed guest is
  booted afresh from its volume). A failure is ERROR, as Nova's.
- shelve: ``shelving``: powered off (cleanly), then the disk into the shelve image as a
  snapshot → SHELVED; offload (at once, or later): the guest removed, its ports unbound,
  its volumes reserved with no host (their attachments here gone, their devices kept in
  the instance's system metadata), its claim freed and its host cleared through the
  conductor → SHELVED_OFFLOADED. unshelve: a guest still here is powered on; an offloaded
  one is spawned from the shelve image on the host the scheduler claimed on, its ports
  bound and its volumes connected here, and the shelve image deleted. A failed unshelve of
  an offloaded guest frees the new claim again and leaves its volumes reserved with no host
  (SHELVED_OFFLOADED with a fault).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

from stratus.compute import states
from stratus.compute.agent.events import EventsCancelled, EventWaiter, InstanceEvents
from stratus.compute.agent.guest import DriveOptions, guest_spec
from stratus.compute.agent.network import HostNetwork
from stratus.compute.agent.volumes import HostVolumes
from stratus.compute.errors import UnexpectedTaskState
from stratus.compute.objects import (
    VOLUME_DEVICES,
    ActionEvent,
    Fault,
    InstanceRecord,
    InstanceUpdate,
    shelved_volume_devices,
)
from stratus.compute.rpcapi import ConductorAPI
from stratus.compute.virt.driver import PowerState, VirtDriver, VirtError
from stratus.core.clients.image import ImageClient
from stratus.core.context import RequestContext
from stratus.core.db import utcnow
from stratus.core.images_cache import CachedImage


class _Options(Protocol):
    @property
    def vif_plugging_timeout(self) -> float: ...


class Agent(Protocol):
    """What the flows use of their compute agent (``ComputeAgentManager``)."""

    host: str
    driver: VirtDriver
    conductor: ConductorAPI
    network: HostNetwork | None
    volumes: HostVolumes | None
    image_service: ImageClient | None
    events: InstanceEvents

    @property
    def options(self) -> _Options: ...

    async def _update(self, ctx: RequestContext, uuid: str, update: InstanceUpdate,
                      expected: list[str | None],
                      event: ActionEvent | None = None) -> InstanceRecord: ...

    async def _event(self, ctx: RequestContext, uuid: str, event: str, *, finished: bool,
                     result: str | None = None, details: str | None = None) -> None: ...

    async def _destroy_quietly(self, uuid: str) -> None: ...

    async def local_image(self, ctx: RequestContext,
                          image_ref: str) -> CachedImage | None: ...

    async def boot_image(self, ctx: RequestContext, image_ref: str
                         ) -> tuple[CachedImage | None, tuple[str, str] | None]: ...

    def drive_options(self) -> DriveOptions: ...


LOG = logging.getLogger(__name__)

SNAPSHOT_EVENT = "compute_snapshot_instance"
REBUILD_EVENT = "compute_rebuild_instance"
SHELVE_EVENT = "compute_shelve_instance"
OFFLOAD_EVENT = "compute_shelve_offload_instance"
UNSHELVE_EVENT = "compute_unshelve_instance"

#: System metadata keys a shelve records (Nova's names).
SHELVED_KEYS = ("shelved_at", "shelved_image_id", "shelved_host", VOLUME_DEVICES)


def recorded_devices(instance: InstanceRecord) -> dict[str, str]:
    return shelved_volume_devices(instance.system_metadata)


class DiskFlows:
    """The flows above for one compute host (its agent: driver, conductor, clients)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    @property
    def host(self) -> str:
        return self.agent.host

    def _done(self, event: str, result: str = "Success",
              details: str | None = None) -> ActionEvent:
        return ActionEvent(name=event, host=self.host, finished=True, result=result,
                           details=details)

    async def _image_of_disk(self, ctx: RequestContext, uuid: str, image_id: str,
                             pending_from: str, pending: str, uploading: str) -> None:
        """The driver's copy of the disk, made the queued image ``image_id``'s data: where the
        image store keeps it when the driver can (``direct_snapshot``), else uploaded."""
        agent = self.agent
        if agent.image_service is None:
            raise VirtError(f"{self.host} cannot reach the image service to upload to.")
        await agent._update(ctx, uuid, InstanceUpdate(task_state=pending), [pending_from])
        stored = await agent.driver.direct_snapshot(uuid, image_id)
        if stored is not None:  # the data is in the image store already: the image takes it
            await agent._update(ctx, uuid, InstanceUpdate(task_state=uploading), [pending])
            try:
                await agent.image_service.set_disk_format(ctx, image_id, stored.disk_format)
                await agent.image_service.add_location(ctx, image_id, stored.location)
            except BaseException:
                try:
                    await agent.driver.remove_direct_snapshot(stored.location)
                except Exception:  # the image's delete that follows removes it too
                    LOG.exception("could not remove the snapshot data at %s",
                                  stored.location)
                raise
            return
        snapshot = await agent.driver.snapshot(uuid)
        try:
            await agent._update(ctx, uuid, InstanceUpdate(task_state=uploading), [pending])
            await agent.image_service.upload_file(ctx, image_id, snapshot.path)
        finally:
            await asyncio.to_thread(snapshot.path.unlink, True)

    async def _delete_image_quietly(self, ctx: RequestContext, image_id: str | None) -> None:
        if image_id is not None and self.agent.image_service is not None:
            await self.agent.image_service.discard(ctx, image_id)

    async def _failed(self, ctx: RequestContext, uuid: str, event: str, exc: BaseException,
                      expected: list[str | None], vm_state: str) -> None:
        """End a flow that failed: the task cleared (when still ours), ``vm_state`` kept."""
        LOG.warning("%s of %s on %s failed: %s", event, uuid, self.host, exc)
        try:
            await self.agent.conductor.instance_update(
                ctx, uuid, InstanceUpdate(vm_state=vm_state, clear_task_state=True), expected,
                event=self._done(event, "Error", str(exc) or type(exc).__name__))
        except UnexpectedTaskState:  # deleted meanwhile: the delete owns the instance
            await self.agent._event(ctx, uuid, event, finished=True, result="Error",
                                    details=str(exc))

    async def _power(self, uuid: str) -> int:
        try:
            return int((await self.agent.driver.get_info(uuid)).power_state)
        except VirtError:
            return int(PowerState.NOSTATE)

    # createImage --------------------------------------------------------------------------

    async def snapshot(self, ctx: RequestContext, uuid: str, image_id: str) -> None:
        agent = self.agent
        await agent._event(ctx, uuid, SNAPSHOT_EVENT, finished=False)
        instance = await agent.conductor.instance_get(ctx, uuid)
        try:
            await self._image_of_disk(ctx, uuid, image_id, states.IMAGE_SNAPSHOT,
                                      states.IMAGE_PENDING_UPLOAD, states.IMAGE_UPLOADING)
        except Exception as exc:
            await self._delete_image_quietly(ctx, image_id)
            await self._failed(ctx, uuid, SNAPSHOT_EVENT, exc,
                               [states.IMAGE_SNAPSHOT, states.IMAGE_PENDING_UPLOAD,
                                states.IMAGE_UPLOADING], instance.vm_state)
            return
        await agent.conductor.instance_update(
            ctx, uuid, InstanceUpdate(vm_state=instance.vm_state, clear_task_state=True),
            [states.IMAGE_UPLOADING], event=self._done(SNAPSHOT_EVENT))

    # rebuild ------------------------------------------------------------------------------

    async def rebuild(self, ctx: RequestContext, uuid: str, preserve_ephemeral: bool,
                      admin_password: str | None = None) -> None:
        agent = self.agent
        await agent._event(ctx, uuid, REBUILD_EVENT, finished=False)
        instance = await agent.conductor.instance_get(ctx, uuid)
        was_stopped = instance.vm_state == states.STOPPED
        try:
            image_backed = bool(instance.image_ref)
            if image_backed:
                await agent.driver.destroy(uuid)
            await agent._update(ctx, uuid, InstanceUpdate(
                task_state=states.REBUILD_BLOCK_DEVICE_MAPPING), [states.REBUILDING])
            await agent._update(ctx, uuid, InstanceUpdate(task_state=states.REBUILD_SPAWNING),
                                [states.REBUILD_BLOCK_DEVICE_MAPPING])
            if image_backed:
                image, location = await agent.boot_image(ctx, instance.image_ref)
                await agent.driver.spawn(guest_spec(instance, image, instance.network_info,
                                                    [], image_location=location,
                                                    drive=agent.drive_options(),
                                                    admin_pass=admin_password))
            else:  # the volume is the disk, kept as it is: boot it afresh
                await agent.driver.reboot(uuid, hard=True)
            if was_stopped:  # Nova gives a stopped server back stopped
                await agent.driver.power_off(uuid, 0)
            await agent._update(ctx, uuid, InstanceUpdate(
                vm_state=states.STOPPED if was_stopped else states.ACTIVE,
                power_state=await self._power(uuid), clear_task_state=True,
                launched_at=utcnow()), [states.REBUILD_SPAWNING],
                event=self._done(REBUILD_EVENT))
        except Exception as exc:
            LOG.warning("rebuild of %s on %s failed: %s", uuid, self.host, exc)
            await agent._destroy_quietly(uuid)
            try:
                await agent.conductor.instance_update(
                    ctx, uuid, InstanceUpdate(vm_state=states.ERROR, clear_task_state=True,
                                              power_state=int(PowerState.NOSTATE)),
                    [states.REBUILDING, states.REBUILD_BLOCK_DEVICE_MAPPING,
                     states.REBUILD_SPAWNING],
                    event=self._done(REBUILD_EVENT, "Error", str(exc)),
                    fault=Fault(message=f"Rebuild failed: {exc}"))
            except UnexpectedTaskState:
                await agent._event(ctx, uuid, REBUILD_EVENT, finished=True, result="Error",
                                   details=str(exc))

    # shelve -------------------------------------------------------------------------------

    async def shelve(self, ctx: RequestContext, uuid: str, image_id: str | None,
                     offload: bool) -> None:
        agent = self.agent
        await agent._event(ctx, uuid, SHELVE_EVENT, finished=False)
        instance = await agent.conductor.instance_get(ctx, uuid)
        try:
            # As Nova: a clean power-off first, so the snapshot is of a quiet disk (a paused
            # or suspended guest cannot answer the power button: it is simply stopped).
            if instance.vm_state in (states.PAUSED, states.SUSPENDED):
                await agent.driver.power_off(uuid, 0)
            else:
                await agent.driver.power_off(uuid)
            current = states.SHELVING
            if image_id is not None:
                await self._image_of_disk(ctx, uuid, image_id, states.SHELVING,
                                          states.SHELVING_IMAGE_PENDING_UPLOAD,
                                          states.SHELVING_IMAGE_UPLOADING)
                current = states.SHELVING_IMAGE_UPLOADING
        except Exception as exc:
            await self._delete_image_quietly(ctx, image_id)
            if instance.vm_state == states.ACTIVE:
                try:
                    await agent.driver.power_on(uuid)
                except Exception:
                    LOG.exception("could not power %s on again after a failed shelve", uuid)
            await self._failed(ctx, uuid, SHELVE_EVENT, exc,
                               [states.SHELVING, states.SHELVING_IMAGE_PENDING_UPLOAD,
                                states.SHELVING_IMAGE_UPLOADING], instance.vm_state)
            return
        await agent._update(ctx, uuid, InstanceUpdate(
            vm_state=states.SHELVED, power_state=await self._power(uuid),
            task_state=states.SHELVING_OFFLOADING if offload else None,
            clear_task_state=not offload), [current], event=self._done(SHELVE_EVENT))
        if offload:
            await self.offload(ctx, uuid)

    async def offload(self, ctx: RequestContext, uuid: str) -> None:
        agent = self.agent
        await agent._event(ctx, uuid, OFFLOAD_EVENT, finished=False)
        instance = await agent.conductor.instance_get(ctx, uuid)
        try:
            await agent.driver.destroy(uuid)
            await self._release_host_side(ctx, instance, [states.SHELVING_OFFLOADING])
        except Exception as exc:
            await self._failed(ctx, uuid, OFFLOAD_EVENT, exc, [states.SHELVING_OFFLOADING],
                               states.SHELVED)
            return
        await agent._event(ctx, uuid, OFFLOAD_EVENT, finished=True, result="Success")
        await agent.conductor.instance_offloaded(ctx, uuid, self.host)

    async def _release_host_side(self, ctx: RequestContext, instance: InstanceRecord,
                                 expected: list[str | None]) -> None:
        """What ties the instance to this host, other than the guest: its port bindings
        (bound again at unshelve) and its volumes' attachments, which become reservations
        with no host, as Nova keeps them (their devices recorded on the instance, which is
        in one of the task states ``expected``)."""
        agent = self.agent
        if agent.network is not None:
            await agent.network.unbind(ctx, instance.network_info)
        if agent.volumes is not None:
            devices = await agent.volumes.reserve_hostless(ctx, instance.project_id,
                                                           instance.uuid)
            known = recorded_devices(instance)
            if devices and {**known, **devices} != known:
                await agent._update(ctx, instance.uuid, InstanceUpdate(system_metadata={
                    **instance.system_metadata,
                    VOLUME_DEVICES: json.dumps({**known, **devices}, sort_keys=True)}),
                    expected)

    # unshelve -----------------------------------------------------------------------------

    async def unshelve(self, ctx: RequestContext, uuid: str, image_id: str | None) -> None:
        agent = self.agent
        await agent._event(ctx, uuid, UNSHELVE_EVENT, finished=False)
        instance = await agent.conductor.instance_get(ctx, uuid)
        offloaded = instance.vm_state == states.SHELVED_OFFLOADED
        network_info = instance.network_info
        try:
            if offloaded:
                network_info = await self._spawn_here(ctx, instance, image_id)
            else:
                await agent.driver.power_on(uuid)
        except Exception as exc:
            LOG.warning("unshelve of %s on %s failed: %s", uuid, self.host, exc)
            if offloaded:
                await agent._destroy_quietly(uuid)
                try:
                    await self._release_host_side(ctx, instance,
                                                  [states.UNSHELVING, states.SPAWNING])
                except Exception:
                    LOG.exception("could not release the ports and volumes of %s", uuid)
                await agent._event(ctx, uuid, UNSHELVE_EVENT, finished=True, result="Error",
                                   details=str(exc))
                await agent.conductor.instance_offloaded(
                    ctx, uuid, self.host, Fault(message=f"Unshelve failed: {exc}"))
            else:
                await self._failed(ctx, uuid, UNSHELVE_EVENT, exc, [states.UNSHELVING],
                                   states.SHELVED)
            return
        system = {k: v for k, v in instance.system_metadata.items() if k not in SHELVED_KEYS}
        await agent._update(ctx, uuid, InstanceUpdate(
            vm_state=states.ACTIVE, power_state=await self._power(uuid),
            clear_task_state=True, network_info=network_info, system_metadata=system,
            launched_at=utcnow() if offloaded else None),
            [states.SPAWNING if offloaded else states.UNSHELVING],
            event=self._done(UNSHELVE_EVENT))
        await self._delete_image_quietly(ctx, image_id)

    async def _spawn_here(self, ctx: RequestContext, instance: InstanceRecord,
                          image_id: str | None) -> list[dict[str, Any]]:
        """Spawn the offloaded instance on this host: its ports bound here (waiting for
        them to be plugged, as a build does), its root volume attached, its disk from the
        shelve image; the new ``network_info``."""
        agent = self.agent
        uuid = instance.uuid
        await agent._update(ctx, uuid, InstanceUpdate(task_state=states.SPAWNING),
                            [states.UNSHELVING])
        plugged: list[EventWaiter] = []
        try:
            network_info: list[dict[str, Any]] = []
            if agent.network is not None:
                def listen(port_ids: list[str]) -> None:
                    if port_ids:
                        plugged.append(agent.events.prepare(
                            uuid, [f"network-vif-plugged:{p}" for p in port_ids]))

                vifs = await agent.network.rebind(ctx, instance.network_info, self.host,
                                                  before_bind=listen)
                network_info = [vif.model_dump() for vif in vifs]
            block_devices: list[dict[str, Any]] = []
            if agent.volumes is not None:
                # Its volumes, reserved with no host since the offload, connected here.
                connected = await agent.volumes.connect_reserved(
                    ctx, instance.project_id, uuid, recorded_devices(instance))
                if not instance.image_ref and "/dev/vda" not in connected:
                    # Offloaded before its root volume was kept reserved: attached anew.
                    await agent.volumes.connect_boot_volumes(ctx, instance.project_id, uuid)
                # And any still attached to another host (offloaded before volumes were
                # kept reserved) connected anew here; theirs go once the guest runs
                # (``keep_only`` below).
                block_devices = await agent.volumes.take_over(ctx, instance.project_id, uuid)
            for waiter in plugged:
                try:
                    await waiter.wait(agent.options.vif_plugging_timeout)
                except EventsCancelled as exc:
                    raise VirtError(str(exc)) from exc
        finally:
            for waiter in plugged:
                waiter.close()
        image = await agent.local_image(ctx, image_id or "")
        await agent.driver.spawn(guest_spec(instance, image, network_info, block_devices,
                                            drive=agent.drive_options()))
        if agent.volumes is not None:
            await agent.volumes.keep_only(ctx, instance.project_id, uuid, self.host)
        return network_info
