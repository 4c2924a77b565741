"""The compute agent's side of the guest state actions: pause, suspend, rescue, crash dump
and password (``stratus.compute.actions_power`` is compute-api's side).

Each drives the guest through the virt driver inside its action event
(``compute_pause_instance``, ...) and hands the final states to the conductor, expecting
the task state compute-api set: a delete that began meanwhile wins, and the action leaves
the instance alone. A driver that fails clears the task state (the instance is as it was
before), records a fault and finishes the event as an ``Error``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from stratus.compute import states
from stratus.compute.agent.guest import DriveOptions, instance_data
from stratus.compute.errors import GuestAgentNotEnabled, UnexpectedTaskState
from stratus.compute.metadata import config_drive
from stratus.compute.objects import ActionEvent, Fault, InstanceUpdate
from stratus.compute.rpcapi import ConductorAPI
from stratus.compute.virt.driver import AgentNotEnabled, RescueSpec, VirtDriver, VirtError
from stratus.core.context import RequestContext
from stratus.core.images_cache import HostImages, ImageCacheError

LOG = logging.getLogger(__name__)

#: The task states of these actions: the ones a restart of the agent may interrupt.
INTERRUPTIBLE = (states.PAUSING, states.UNPAUSING, states.SUSPENDING, states.RESUMING,
                 states.RESCUING, states.UNRESCUING, states.UPDATING_PASSWORD)


class GuestStateActions:
    """Mixed into ``ComputeAgentManager``; its ``METHODS`` join the manager's."""

    METHODS: tuple[str, ...] = ("pause_instance", "unpause_instance", "suspend_instance",
                                "resume_instance",
                                "rescue_instance", "unrescue_instance",
                                "trigger_crash_dump", "set_admin_password")

    host: str
    driver: VirtDriver
    conductor: ConductorAPI
    images: HostImages | None
    #: What a config drive's documents are made of on this host (the manager's).
    drive_options: Callable[[], DriveOptions]

    async def settle_interrupted(self, ctx: RequestContext, instance_uuid: str,
                                 task_state: str) -> bool:
        """After a restart: an action of this module that the agent was in the middle of
        (``task_state`` one of ``INTERRUPTIBLE``) ends; the task state is cleared and the
        guest's power state recorded, so the user sees where the guest really is and may
        try again. False when ``task_state`` is not one of them."""
        if task_state not in INTERRUPTIBLE:
            return False
        try:
            power = int((await self.driver.get_info(instance_uuid)).power_state)
        except VirtError:
            power = 0
        try:
            await self.conductor.instance_update(
                ctx, instance_uuid, InstanceUpdate(power_state=power, clear_task_state=True),
                [task_state], fault=Fault(message=f"{task_state} was interrupted by a restart "
                                                  f"of {self.host}."))
        except UnexpectedTaskState:
            pass
        return True

    async def _drive(self, ctx: RequestContext, uuid: str, event: str, expected: str,
                     final_vm_state: str, operation: Callable[[], Awaitable[None]]) -> None:
        """Run ``operation`` within ``event``; then the instance is ``final_vm_state`` with
        the guest's power state, or, if it failed, back where it was with a fault."""
        await self.conductor.action_event(ctx, uuid, event, host=self.host, finished=False)
        try:
            await operation()
            power = (await self.driver.get_info(uuid)).power_state
        except Exception as exc:
            LOG.warning("%s of %s on %s failed: %s", event, uuid, self.host, exc)
            message = str(exc) or type(exc).__name__
            try:
                await self.conductor.instance_update(
                    ctx, uuid, InstanceUpdate(clear_task_state=True), [expected],
                    event=ActionEvent(name=event, host=self.host, finished=True,
                                      result="Error", details=message),
                    fault=Fault(message=message))
            except UnexpectedTaskState:
                LOG.info("%s of %s: the instance moved on meanwhile", event, uuid)
            return
        try:
            await self.conductor.instance_update(
                ctx, uuid, InstanceUpdate(vm_state=final_vm_state, power_state=int(power),
                                          clear_task_state=True), [expected],
                event=ActionEvent(name=event, host=self.host, finished=True,
                                  result="Success"))
        except UnexpectedTaskState:
            LOG.info("%s of %s finished, but the instance moved on meanwhile", event, uuid)

    async def pause_instance(self, ctx: RequestContext, instance_uuid: str) -> None:
        await self._drive(ctx, instance_uuid, "compute_pause_instance", states.PAUSING,
                          states.PAUSED, lambda: self.driver.pause(instance_uuid))

    async def unpause_instance(self, ctx: RequestContext, instance_uuid: str) -> None:
        await self._drive(ctx, instance_uuid, "compute_unpause_instance", states.UNPAUSING,
                          states.ACTIVE, lambda: self.driver.unpause(instance_uuid))

    async def suspend_instance(self, ctx: RequestContext, instance_uuid: str) -> None:
        await self._drive(ctx, instance_uuid, "compute_suspend_instance", states.SUSPENDING,
                          states.SUSPENDED, lambda: self.driver.suspend(instance_uuid))

    async def resume_instance(self, ctx: RequestContext, instance_uuid: str) -> None:
        await self._drive(ctx, instance_uuid, "compute_resume_instance", states.RESUMING,
                          states.ACTIVE, lambda: self.driver.resume(instance_uuid))

    async def rescue_instance(self, ctx: RequestContext, instance_uuid: str,
                              rescue_image_ref: str, rescue_password: str) -> None:
        async def rescue() -> None:
            # Nova's libvirt rescue: a guest with a config drive is rescued with one of its
            # own, whose meta_data.json has the rescue password (``admin_pass``).
            instance = await self.conductor.instance_get(ctx, instance_uuid)
            drive = (config_drive.files(instance_data(instance, self.drive_options()),
                                        rescue_password)
                     if instance.config_drive else None)
            spec = RescueSpec(admin_password=rescue_password, config_drive=drive)
            if self.driver.needs_image_file:
                if self.images is None:
                    raise VirtError(f"{self.host} has no image cache for the rescue image.")
                try:
                    image = await self.images.local_image(ctx, rescue_image_ref)
                except ImageCacheError as exc:
                    raise VirtError(f"Rescue image {rescue_image_ref}: {exc}") from exc
                spec = RescueSpec(image_path=image.path, image_format=image.disk_format,
                                  admin_password=rescue_password, config_drive=drive)
            await self.driver.rescue(instance_uuid, spec)

        await self._drive(ctx, instance_uuid, "compute_rescue_instance", states.RESCUING,
                          states.RESCUED, rescue)

    async def unrescue_instance(self, ctx: RequestContext, instance_uuid: str) -> None:
        await self._drive(ctx, instance_uuid, "compute_unrescue_instance",
                          states.UNRESCUING, states.ACTIVE,
                          lambda: self.driver.unrescue(instance_uuid))

    async def trigger_crash_dump(self, ctx: RequestContext, instance_uuid: str) -> None:
        event = "compute_trigger_crash_dump"
        await self.conductor.action_event(ctx, instance_uuid, event, host=self.host,
                                          finished=False)
        try:
            await self.driver.trigger_crash_dump(instance_uuid)
        except Exception as exc:
            LOG.warning("NMI to %s on %s failed: %s", instance_uuid, self.host, exc)
            await self.conductor.action_event(ctx, instance_uuid, event, host=self.host,
                                              finished=True, result="Error",
                                              details=str(exc) or type(exc).__name__)
            return
        await self.conductor.action_event(ctx, instance_uuid, event, host=self.host,
                                          finished=True, result="Success")

    async def set_admin_password(self, ctx: RequestContext, instance_uuid: str,
                                 new_pass: str) -> None:
        """Answers once the password is set; raises ``GuestAgentNotEnabled`` (409) when the
        guest cannot take one, after putting the instance back as it was."""
        event = "compute_set_admin_password"
        await self.conductor.action_event(ctx, instance_uuid, event, host=self.host,
                                          finished=False)
        try:
            await self.driver.set_admin_password(instance_uuid, new_pass)
        except Exception as exc:
            # Never the password itself in a message: only what the driver said of it.
            message = str(exc) or type(exc).__name__
            await self.conductor.instance_update(
                ctx, instance_uuid, InstanceUpdate(clear_task_state=True),
                [states.UPDATING_PASSWORD],
                event=ActionEvent(name=event, host=self.host, finished=True, result="Error",
                                  details=message))
            if isinstance(exc, AgentNotEnabled):
                raise GuestAgentNotEnabled(message) from exc
            raise
        await self.conductor.instance_update(
            ctx, instance_uuid, InstanceUpdate(vm_state=states.ACTIVE, clear_task_state=True),
            [states.UPDATING_PASSWORD],
            event=ActionEvent(name=event, host=self.host, finished=True, result="Success"))
