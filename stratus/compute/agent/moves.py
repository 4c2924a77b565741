"""A compute host's part in moving servers: resize, cold and live migration, evacuation.

compute-api has checked the request and the scheduler has claimed on the destination
(``stratus.compute.moves`` says how the claims are held); the hosts do the guest's half and
report each step to the conductor, which settles the move in one transaction at the end.

- Resize and cold migration: the source stops the guest and keeps it aside
  (``resize_instance``), the destination makes the guest of the new flavor from its disk
  (``finish_resize``): the server is ``VERIFY_RESIZE``. Confirm: the source drops what it
  kept (``confirm_resize``). Revert: the destination removes its guest (``revert_resize``),
  the source brings the old one back (``finish_revert_resize``). A failure on either side
  brings the old guest back too, with a fault.
- Live migration: the destination gets ready (``pre_live_migration``), the source moves
  the running guest (``live_migration``), the destination takes it
  (``post_live_migration_at_destination``); a failure or an abort leaves it on the source.
- Evacuation: the destination rebuilds the server of a dead host from its image.

Volumes move with the guest, as Nova's do: the host the guest arrives on connects each of
its volumes anew (a second attachment of the instance, with its own connector, at the same
device: ``HostVolumes.take_over``) before making the guest; the host it left gives its
attachments up once the guest runs elsewhere (``HostVolumes.keep_only``): at the end of a
resize or cold migration, a live migration or an evacuation, and at a revert; a move that
fails on the destination gives up the destination's instead, so the volumes stay with the
source.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from stratus.compute import states
from stratus.compute.agent.network import HostNetwork
from stratus.compute.agent.volumes import HostVolumes
from stratus.compute.objects import (
    ActionEvent,
    Fault,
    FlavorInfo,
    InstanceRecord,
    InstanceUpdate,
    LiveMigrationProgress,
    MigrationRecord,
)
from stratus.compute.rpcapi import ComputeAgentAPI, ConductorAPI
from stratus.compute.virt.driver import (
    GuestSpec,
    MigrationAborted,
    MigrationProgress,
    PowerState,
    VirtDriver,
)
from stratus.core.context import RequestContext

LOG = logging.getLogger(__name__)

#: Builds the driver's ``GuestSpec`` for an instance with a flavor and its interfaces
#: (the agent's, which fetches the image into the host's cache where the driver needs it),
#: and the volumes connected on this host.
SpecBuilder = Callable[[RequestContext, InstanceRecord, FlavorInfo, list[dict[str, Any]],
                        list[dict[str, Any]]], Awaitable[GuestSpec]]

RESIZE_EVENT = "compute_resize_instance"
FINISH_RESIZE_EVENT = "compute_finish_resize"
CONFIRM_EVENT = "compute_confirm_resize"
REVERT_EVENT = "compute_revert_resize"
FINISH_REVERT_EVENT = "compute_finish_revert_resize"
LIVE_EVENT = "compute_live_migration"
PRE_LIVE_EVENT = "compute_pre_live_migration"
POST_LIVE_EVENT = "compute_post_live_migration_at_destination"
REBUILD_EVENT = "compute_rebuild_instance"


def _fault(exc: BaseException, doing: str) -> Fault:
    return Fault(code=500, message=f"{doing} failed: {exc or type(exc).__name__}")


class HostMoves:
    def __init__(self, host: str, driver: VirtDriver, conductor: ConductorAPI,
                 peers: ComputeAgentAPI | None, network: HostNetwork | None,
                 guest_spec: SpecBuilder, volumes: HostVolumes | None = None) -> None:
        self.host = host
        self.driver = driver
        self.conductor = conductor
        #: Other compute hosts (the source tells the destination, and back).
        self._peers = peers
        self.network = network
        self.guest_spec = guest_spec
        #: The volume service's side (None: this host moves no server's volumes).
        self.volumes = volumes

    @property
    def peers(self) -> ComputeAgentAPI:
        if self._peers is None:
            raise RuntimeError(f"{self.host} cannot reach other compute hosts.")
        return self._peers

    def _done(self, name: str, exc: BaseException | None = None) -> ActionEvent:
        if exc is None:
            return ActionEvent(name=name, host=self.host, finished=True, result="Success")
        return ActionEvent(name=name, host=self.host, finished=True, result="Error",
                           details=str(exc) or type(exc).__name__)

    def _started(self, name: str) -> ActionEvent:
        return ActionEvent(name=name, host=self.host)

    async def _rebind_quietly(self, ctx: RequestContext, instance: InstanceRecord,
                              host: str | None) -> None:
        if self.network is None or not host:
            return
        try:
            await self.network.rebind(ctx, instance.network_info, host)
        except Exception:
            LOG.exception("could not bind the ports of %s back to %s", instance.uuid, host)

    async def _take_over(self, ctx: RequestContext,
                         instance: InstanceRecord) -> list[dict[str, Any]]:
        """The instance's volumes connected to this host (``HostVolumes.take_over``)."""
        if self.volumes is None:
            return []
        return await self.volumes.take_over(ctx, instance.project_id, instance.uuid)

    async def _keep_only_quietly(self, ctx: RequestContext, instance_uuid: str,
                                 host: str | None = None, *,
                                 source_of: str | None = None,
                                 project_id: str | None = None) -> None:
        """The instance's volumes stay connected to ``host`` only (or, given a migration's
        uuid as ``source_of``, to that move's source): ``HostVolumes.keep_only``
        (``project_id``: the instance's, when the caller has it). Never raises: the move's
        ending must still be told."""
        if self.volumes is None:
            return
        try:
            if source_of is not None:
                host = (await self.conductor.migration_get(ctx, source_of)).source_compute
            if not host:
                return
            if project_id is None:
                project_id = (await self.conductor.instance_get(ctx, instance_uuid)).project_id
            await self.volumes.keep_only(ctx, project_id, instance_uuid, host)
        except Exception:
            LOG.exception("could not settle the volume connections of %s on %s",
                          instance_uuid, host)

    # Resize and cold migration ------------------------------------------------------------

    async def resize_instance(self, ctx: RequestContext, instance_uuid: str,
                              migration_uuid: str) -> None:
        """Source: stop the guest, keep it aside, tell the destination to finish."""
        migration: MigrationRecord | None = None
        aside = False
        try:
            migration = (await self.conductor.move_step(
                ctx, migration_uuid, "migrating",
                InstanceUpdate(task_state=states.RESIZE_MIGRATING), [states.RESIZE_PREP],
                self._started(RESIZE_EVENT))).migration
            dest = migration.dest_compute
            assert dest is not None, "the scheduler chose no destination"
            disk_info = await self.driver.migrate_disk_and_power_off(instance_uuid, dest)
            aside = True
            await self.conductor.migration_update(
                ctx, migration_uuid, "post-migrating",
                InstanceUpdate(task_state=states.RESIZE_MIGRATED,
                               power_state=int(PowerState.SHUTDOWN)),
                [states.RESIZE_MIGRATING], self._done(RESIZE_EVENT))
        except Exception as exc:
            LOG.warning("moving %s off %s failed: %s", instance_uuid, self.host, exc)
            if migration is None:
                migration = await self.conductor.migration_get(ctx, migration_uuid)
            await self._give_back(ctx, migration, aside, exc, RESIZE_EVENT)
            return
        await self.peers.finish_resize(ctx, dest, instance_uuid, migration_uuid, disk_info)

    async def _give_back(self, ctx: RequestContext, migration: MigrationRecord, aside: bool,
                         exc: BaseException, event: str) -> None:
        """Source, after a failed move: the guest back as it was, the move rolled back."""
        power = 0
        try:
            if aside:
                await self.driver.finish_revert_migration(
                    migration.instance_uuid,
                    power_on=migration.old_vm_state != states.STOPPED)
            power = int((await self.driver.get_info(migration.instance_uuid)).power_state)
        except Exception:
            LOG.exception("could not bring %s back on %s", migration.instance_uuid, self.host)
        await self.conductor.move_ended(ctx, migration.uuid, "rolled_back", power,
                                        self._done(event, exc), _fault(exc, "The move"))

    async def finish_resize(self, ctx: RequestContext, instance_uuid: str,
                            migration_uuid: str, disk_info: dict[str, Any]) -> None:
        """Destination: the guest of the new flavor from the source's disk."""
        migration: MigrationRecord | None = None
        same_host = False
        try:
            step = await self.conductor.move_step(
                ctx, migration_uuid, "post-migrating",
                InstanceUpdate(task_state=states.RESIZE_FINISH), [states.RESIZE_MIGRATED],
                self._started(FINISH_RESIZE_EVENT))
            migration, instance = step.migration, step.instance
            same_host = migration.source_compute == self.host
            network_info = list(instance.network_info)
            if not same_host and self.network is not None and network_info:
                network_info = [vif.model_dump() for vif in await self.network.rebind(
                    ctx, network_info, self.host)]
                await self.conductor.instance_update(
                    ctx, instance_uuid, InstanceUpdate(network_info=network_info),
                    [states.RESIZE_FINISH])
            block_devices = await self._take_over(ctx, instance)
            spec = await self.guest_spec(ctx, instance, migration.new_flavor, network_info,
                                         block_devices)
            await self.driver.finish_migration(
                spec, disk_info, power_on=migration.old_vm_state != states.STOPPED)
            power = int((await self.driver.get_info(instance_uuid)).power_state)
        except Exception as exc:
            LOG.warning("finishing the move of %s on %s failed: %s", instance_uuid,
                        self.host, exc)
            if migration is None:
                migration = await self.conductor.migration_get(ctx, migration_uuid)
                same_host = migration.source_compute == self.host
            if not same_host:
                try:  # the source keeps using a shared disk
                    await self.driver.destroy(instance_uuid, keep_shared_disk=True)
                except Exception:
                    LOG.exception("could not remove %s from %s", instance_uuid, self.host)
                await self._keep_only_quietly(ctx, instance_uuid, migration.source_compute)
            record = await self.conductor.instance_get(ctx, instance_uuid)
            await self._rebind_quietly(ctx, record, migration.source_compute)
            await self.conductor.migration_update(
                ctx, migration_uuid, "error", event=self._done(FINISH_RESIZE_EVENT, exc))
            assert migration.source_compute is not None
            await self.peers.finish_revert_resize(ctx, migration.source_compute,
                                                  instance_uuid, migration_uuid)
            return
        if not same_host and block_devices:
            # The source's connections end with the guest it has stopped (a server with no
            # volume has none: take_over found none of its attachments anywhere).
            await self._keep_only_quietly(ctx, instance_uuid, self.host,
                                          project_id=instance.project_id)
        await self.conductor.move_ended(ctx, migration_uuid, "resized", power,
                                        self._done(FINISH_RESIZE_EVENT))

    async def confirm_resize(self, ctx: RequestContext, instance_uuid: str,
                             migration_uuid: str) -> None:
        """Source: drop the guest kept aside; the move is over."""
        await self.conductor.action_event(ctx, instance_uuid, CONFIRM_EVENT, host=self.host,
                                          finished=False)
        try:
            await self.driver.confirm_migration(instance_uuid)
        except Exception as exc:
            # What is left aside is only disk space: confirm anyway, say so.
            LOG.warning("could not clean up after the move of %s on %s: %s", instance_uuid,
                        self.host, exc)
        await self.conductor.move_ended(ctx, migration_uuid, "confirmed", 0,
                                        self._done(CONFIRM_EVENT))

    async def revert_resize(self, ctx: RequestContext, instance_uuid: str,
                            migration_uuid: str) -> None:
        """Destination: remove the new guest; the source brings the old one back."""
        step = await self.conductor.move_step(ctx, migration_uuid,
                                              event=self._started(REVERT_EVENT))
        migration, record = step.migration, step.instance
        try:
            # A disk the hosts share (RBD) is the one the source brings the guest back on.
            await self.driver.destroy(instance_uuid, keep_shared_disk=True)
            if migration.source_compute != self.host and self.network is not None:
                if record.network_info:
                    network_info = [vif.model_dump() for vif in await self.network.rebind(
                        ctx, record.network_info, migration.source_compute or "")]
                    await self.conductor.instance_update(
                        ctx, instance_uuid, InstanceUpdate(network_info=network_info))
            event = self._done(REVERT_EVENT)
        except Exception as exc:
            LOG.warning("reverting %s on %s: %s", instance_uuid, self.host, exc)
            event = self._done(REVERT_EVENT, exc)
        await self.conductor.action_event(ctx, instance_uuid, event.name, host=self.host,
                                          finished=True, result=event.result,
                                          details=event.details)
        assert migration.source_compute is not None
        await self.peers.finish_revert_resize(ctx, migration.source_compute, instance_uuid,
                                              migration_uuid)

    async def finish_revert_resize(self, ctx: RequestContext, instance_uuid: str,
                                   migration_uuid: str) -> None:
        """Source: the guest kept aside runs again; the move is undone (``reverted``), or
        rolled back when the destination failed."""
        step = await self.conductor.move_step(ctx, migration_uuid,
                                              event=self._started(FINISH_REVERT_EVENT))
        migration, instance = step.migration, step.instance
        ending = "reverted" if migration.status == "reverting" else "rolled_back"
        fault = None
        power = 0
        #: The volumes connected here (None: not known, the take-over failed).
        volumes: list[dict[str, Any]] | None = None
        try:
            volumes = await self._take_over(ctx, instance)
            await self.driver.finish_revert_migration(
                instance_uuid, power_on=migration.old_vm_state != states.STOPPED)
            power = int((await self.driver.get_info(instance_uuid)).power_state)
            event = self._done(FINISH_REVERT_EVENT)
        except Exception as exc:
            event = self._done(FINISH_REVERT_EVENT, exc)
            fault = _fault(exc, "Bringing the guest back")
        if volumes is None or volumes:  # none: the server has no volume anywhere
            await self._keep_only_quietly(ctx, instance_uuid, self.host,
                                          project_id=instance.project_id)
        if ending == "rolled_back" and fault is None:
            fault = Fault(code=500, message="The move failed on its destination; the server "
                                            "is back on its source.")
        await self.conductor.move_ended(ctx, migration_uuid, ending, power, event, fault)

    # Live migration -----------------------------------------------------------------------

    async def live_migration(self, ctx: RequestContext, instance_uuid: str,
                             migration_uuid: str) -> None:
        """Source: move the running guest to the destination the scheduler claimed."""
        dest: str | None = None
        project_id: str | None = None
        prepared = False

        async def progress(p: MigrationProgress) -> None:
            await self.conductor.migration_progress(ctx, migration_uuid, LiveMigrationProgress(
                memory_total=p.memory_total, memory_processed=p.memory_processed,
                memory_remaining=p.memory_remaining, disk_total=p.disk_total,
                disk_processed=p.disk_processed, disk_remaining=p.disk_remaining))

        try:
            step = await self.conductor.move_step(ctx, migration_uuid, "preparing",
                                                  InstanceUpdate(),
                                                  event=self._started(LIVE_EVENT))
            dest, project_id = step.migration.dest_compute, step.instance.project_id
            assert dest is not None, "the scheduler chose no destination"
            source_data = await self.driver.live_migration_source_data(instance_uuid)
            migrate_data = await self.peers.pre_live_migration(
                ctx, dest, instance_uuid, migration_uuid, source_data)
            prepared = True
            await self.conductor.migration_update(ctx, migration_uuid, "running")
            await self.driver.live_migration(instance_uuid, dest, migrate_data, progress)
        except Exception as exc:
            aborted = isinstance(exc, MigrationAborted)
            LOG.warning("live migration of %s from %s %s: %s", instance_uuid, self.host,
                        "aborted" if aborted else "failed", exc)
            if prepared:
                try:
                    assert dest is not None
                    await self.peers.rollback_live_migration_at_destination(
                        ctx, dest, instance_uuid, migration_uuid)
                except Exception:
                    LOG.exception("could not clean %s's arrival up on %s", instance_uuid,
                                  dest)
            power = 0
            try:
                power = int((await self.driver.get_info(instance_uuid)).power_state)
            except Exception:
                LOG.exception("%s is not on %s any more", instance_uuid, self.host)
            await self.conductor.move_ended(
                ctx, migration_uuid, "cancelled" if aborted else "rolled_back", power,
                self._done(LIVE_EVENT, exc),
                None if aborted else _fault(exc, "The live migration"))
            return
        fault = None
        power = int(PowerState.RUNNING)
        try:
            power = await self.peers.post_live_migration_at_destination(
                ctx, dest, instance_uuid, migration_uuid)
        except Exception as exc:
            # The guest has left this host: the server is the destination's, with a fault.
            fault = _fault(exc, f"Taking the guest over on {dest}")
        await self._keep_only_quietly(ctx, instance_uuid, dest, project_id=project_id)
        await self.conductor.move_ended(ctx, migration_uuid, "live_migrated", power,
                                        self._done(LIVE_EVENT), fault)

    async def pre_live_migration(self, ctx: RequestContext, instance_uuid: str,
                                 migration_uuid: str,
                                 source_data: dict[str, Any]) -> dict[str, Any]:
        """Destination: ready to receive the guest (its files, its disk)."""
        instance = (await self.conductor.move_step(
            ctx, migration_uuid, event=self._started(PRE_LIVE_EVENT))).instance
        try:
            block_devices = await self._take_over(ctx, instance)
            spec = await self.guest_spec(ctx, instance, instance.flavor, instance.network_info,
                                         block_devices)
            migrate_data = await self.driver.pre_live_migration(spec, source_data)
        except Exception as exc:
            await self._keep_only_quietly(ctx, instance_uuid, source_of=migration_uuid,
                                          project_id=instance.project_id)
            await self.conductor.action_event(ctx, instance_uuid, PRE_LIVE_EVENT,
                                              host=self.host, finished=True, result="Error",
                                              details=str(exc))
            raise
        await self.conductor.action_event(ctx, instance_uuid, PRE_LIVE_EVENT, host=self.host,
                                          finished=True, result="Success")
        return migrate_data

    async def post_live_migration_at_destination(self, ctx: RequestContext,
                                                 instance_uuid: str,
                                                 migration_uuid: str) -> int:
        """Destination: the guest is here; its ports are bound here. Its power state."""
        instance = (await self.conductor.move_step(
            ctx, migration_uuid, event=self._started(POST_LIVE_EVENT))).instance
        await self.driver.post_live_migration_at_destination(instance_uuid)
        if self.network is not None:
            if instance.network_info:
                network_info = [vif.model_dump() for vif in await self.network.rebind(
                    ctx, instance.network_info, self.host)]
                await self.conductor.instance_update(
                    ctx, instance_uuid, InstanceUpdate(network_info=network_info))
        power = int((await self.driver.get_info(instance_uuid)).power_state)
        await self.conductor.action_event(ctx, instance_uuid, POST_LIVE_EVENT, host=self.host,
                                          finished=True, result="Success")
        return power

    async def rollback_live_migration_at_destination(self, ctx: RequestContext,
                                                     instance_uuid: str,
                                                     migration_uuid: str) -> None:
        try:
            await self.driver.rollback_live_migration_at_destination(instance_uuid)
        finally:
            await self._keep_only_quietly(ctx, instance_uuid, source_of=migration_uuid)

    async def live_migration_abort(self, ctx: RequestContext, instance_uuid: str,
                                   migration_uuid: str) -> None:
        try:
            await self.driver.live_migration_abort(instance_uuid)
        except Exception as exc:
            LOG.warning("could not abort the live migration of %s: %s", instance_uuid, exc)

    async def live_migration_force_complete(self, ctx: RequestContext, instance_uuid: str,
                                            migration_uuid: str) -> None:
        try:
            await self.driver.live_migration_force_complete(instance_uuid)
        except Exception as exc:
            LOG.warning("could not force the live migration of %s: %s", instance_uuid, exc)

    # Evacuation ---------------------------------------------------------------------------

    async def evacuate_instance(self, ctx: RequestContext, instance_uuid: str,
                                migration_uuid: str, stop: bool) -> None:
        """Destination: rebuild the server of a dead host from its image, here."""
        try:
            instance = await self.conductor.migration_update(
                ctx, migration_uuid, "pre-migrating",
                InstanceUpdate(task_state=states.REBUILD_SPAWNING), [states.REBUILDING],
                self._started(REBUILD_EVENT))
            network_info = list(instance.network_info)
            if self.network is not None and network_info:
                network_info = [vif.model_dump() for vif in await self.network.rebind(
                    ctx, network_info, self.host)]
                await self.conductor.instance_update(
                    ctx, instance_uuid, InstanceUpdate(network_info=network_info),
                    [states.REBUILD_SPAWNING])
            block_devices = await self._take_over(ctx, instance)
            spec = await self.guest_spec(ctx, instance, instance.flavor, network_info,
                                         block_devices)
            await self.driver.spawn(spec)
            if stop:
                await self.driver.power_off(instance_uuid)
            power = int((await self.driver.get_info(instance_uuid)).power_state)
        except Exception as exc:
            LOG.warning("evacuating %s to %s failed: %s", instance_uuid, self.host, exc)
            try:
                await self.driver.destroy(instance_uuid)
            except Exception:
                LOG.exception("could not remove %s from %s", instance_uuid, self.host)
            await self._keep_only_quietly(ctx, instance_uuid, source_of=migration_uuid)
            await self.conductor.move_ended(ctx, migration_uuid, "evacuation_failed", 0,
                                            self._done(REBUILD_EVENT, exc),
                                            _fault(exc, "The evacuation"))
            return
        await self._keep_only_quietly(ctx, instance_uuid, self.host,
                                      project_id=instance.project_id)
        await self.conductor.move_ended(ctx, migration_uuid, "evacuated", power,
                                        self._done(REBUILD_EVENT))
