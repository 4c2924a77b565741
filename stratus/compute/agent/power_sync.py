"""Power-state sync: the compute agent's periodic look at what its hypervisor really runs.

Every ``interval`` seconds, for each instance the database puts on this host and that no
task is acting on, the agent compares the database's power state with the driver's and:

* records the driver's power state when they differ;
* a guest that went down by itself (shut down, crashed, suspended) while the instance is
  ACTIVE makes the instance STOPPED: the user sees SHUTOFF and can start it again (a
  crashed or suspended guest is powered off first, so it is really stopped);
* a paused instance whose guest shut down or crashed by itself becomes STOPPED the same
  way; a guest found paused while the instance is ACTIVE is only recorded (Nova ignores it);
* a guest found running while the instance is STOPPED is powered off: the database says
  what the user asked for;
* SUSPENDED and RESCUED instances only have their power state recorded (a suspended
  guest is not running by design; a rescued one runs the rescue image);
* a guest the hypervisor does not have is recorded as NOSTATE and logged; the instance's
  vm_state is left alone (an operator or a delete settles it).

Changes are guarded by the task state: a power-off first moves the instance to
``powering-off`` expecting no task, so a user's start or stop racing the sync wins and the
sync skips that instance this round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from stratus.compute import states
from stratus.compute.agent import AGENT_USER
from stratus.compute.errors import UnexpectedTaskState
from stratus.compute.objects import InstanceStates, InstanceUpdate
from stratus.compute.rpcapi import ConductorAPI
from stratus.compute.virt.driver import GuestNotFound, PowerState, VirtDriver
from stratus.core.context import RequestContext
from stratus.core.periodic import Periodic

LOG = logging.getLogger(__name__)

#: vm_states the sync leaves alone: the instance's life is being decided elsewhere.
SKIPPED_VM_STATES = (states.BUILDING, states.DELETED, states.SOFT_DELETED,
                     states.SHELVED_OFFLOADED)
_DOWN = (PowerState.SHUTDOWN, PowerState.CRASHED, PowerState.SUSPENDED)


@dataclass(frozen=True)
class SyncDecision:
    """What to do about one instance: power the guest off first (``power_off``), then
    record ``power_state`` and, if set, ``vm_state``."""

    power_state: PowerState
    vm_state: str | None = None
    power_off: bool = False
    reason: str = ""


def decide(vm_state: str, db_power: int, hv_power: PowerState) -> SyncDecision | None:
    """The change the sync makes for an instance at rest; None when all agrees."""
    if vm_state == states.ACTIVE and hv_power in _DOWN:
        return SyncDecision(PowerState.SHUTDOWN if hv_power != PowerState.SHUTDOWN
                            else hv_power, states.STOPPED,
                            power_off=hv_power != PowerState.SHUTDOWN,
                            reason=f"the guest stopped by itself ({hv_power.name})")
    if vm_state == states.PAUSED and hv_power in (PowerState.SHUTDOWN, PowerState.CRASHED):
        return SyncDecision(PowerState.SHUTDOWN, states.STOPPED,
                            power_off=hv_power == PowerState.CRASHED,
                            reason=f"the paused guest stopped by itself ({hv_power.name})")
    if vm_state == states.STOPPED and hv_power in (PowerState.RUNNING, PowerState.PAUSED):
        return SyncDecision(PowerState.SHUTDOWN, power_off=True,
                            reason=f"the guest runs ({hv_power.name}) but the instance is "
                                   "stopped")
    if hv_power != db_power:
        reason = ("the hypervisor has no such guest" if hv_power == PowerState.NOSTATE
                  else f"the hypervisor reports {hv_power.name}")
        return SyncDecision(hv_power, reason=reason)
    return None


@dataclass
class PowerStateSync:
    """Every ``interval`` seconds, the power state of this host's instances brought in line
    with what the hypervisor reports (``decide``)."""

    host: str
    driver: VirtDriver
    conductor: ConductorAPI
    interval: float

    def __post_init__(self) -> None:
        self._periodic = Periodic(
            f"power-state sync on {self.host}", self.interval,
            lambda: self.run_once(RequestContext.for_service(AGENT_USER)))

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def _hypervisor_state(self, uuid: str) -> PowerState:
        try:
            return (await self.driver.get_info(uuid)).power_state
        except GuestNotFound:
            return PowerState.NOSTATE

    async def run_once(self, ctx: RequestContext) -> dict[str, SyncDecision]:
        """One pass over the host's instances; the decisions applied, by instance."""
        applied: dict[str, SyncDecision] = {}
        for instance in await self.conductor.host_instance_states(ctx, self.host):
            if instance.task_state is not None or instance.vm_state in SKIPPED_VM_STATES:
                continue
            hv_power = await self._hypervisor_state(instance.uuid)
            decision = decide(instance.vm_state, instance.power_state, hv_power)
            if decision is None:
                continue
            try:
                if await self._apply(ctx, instance, decision):
                    applied[instance.uuid] = decision
            except Exception:
                LOG.exception("power-state sync of %s on %s failed", instance.uuid, self.host)
        return applied

    async def _apply(self, ctx: RequestContext, instance: InstanceStates,
                     decision: SyncDecision) -> bool:
        uuid = instance.uuid
        log = LOG.warning if decision.vm_state or decision.power_off or \
            decision.power_state == PowerState.NOSTATE else LOG.info
        log("power-state sync of %s on %s: %s (database %s, vm_state %s)", uuid, self.host,
            decision.reason, PowerState(instance.power_state).name, instance.vm_state)
        try:
            if decision.power_off:
                await self.conductor.instance_update(ctx, uuid, InstanceUpdate(
                    task_state=states.POWERING_OFF), [None])
                try:
                    await self.driver.power_off(uuid)
                except Exception:
                    await self.conductor.instance_update(ctx, uuid, InstanceUpdate(
                        clear_task_state=True), [states.POWERING_OFF])
                    raise
                power = await self._hypervisor_state(uuid)
                await self.conductor.instance_update(ctx, uuid, InstanceUpdate(
                    power_state=int(power), vm_state=decision.vm_state,
                    clear_task_state=True), [states.POWERING_OFF])
            else:
                await self.conductor.instance_update(ctx, uuid, InstanceUpdate(
                    power_state=int(decision.power_state), vm_state=decision.vm_state),
                    [None])
        except UnexpectedTaskState:
            LOG.info("power-state sync skips %s: a task began meanwhile", uuid)
            return False
        return True
