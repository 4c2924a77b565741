"""The conductor unit. Several can run at once: each call is one database transaction."""

from __future__ import annotations

import logging
import uuid as uuidlib

from sqlalchemy import select

from stratus.compute import states
from stratus.compute.models import ComputeServiceRecord
from stratus.compute.objects import Fault, HostReport, InstanceRecord, InstanceUpdate
from stratus.compute.rpcapi import ComputeAgentAPI
from stratus.compute.scheduler.host_state import COMPUTE_BINARY
from stratus.compute.scheduler.placement import (
    DISK_GB,
    MEMORY_MB,
    VCPU,
    ClaimConflict,
    InsufficientResources,
    InventorySpec,
    Placement,
)
from stratus.compute.scheduler.request_spec import FlavorSpec
from stratus.compute.service import ComputeRuntime
from stratus.core.context import RequestContext
from stratus.core.db import utcnow

LOG = logging.getLogger(__name__)

#: Builds tried in all, on the first host and alternates, before the instance goes to ERROR.
MAX_ATTEMPTS = 3


def provider_uuid(host: str) -> str:
    """A host's resource provider id: stable, so restarts and several conductors agree."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"stratus:compute-node:{host}"))


class ConductorManager:
    METHODS = ("instance_get", "instance_update", "action_event", "build_failed",
               "instance_destroyed", "host_report")

    def __init__(self, runtime: ComputeRuntime, agents: ComputeAgentAPI) -> None:
        self.runtime = runtime
        self.agents = agents

    async def instance_get(self, ctx: RequestContext, instance_uuid: str) -> InstanceRecord:
        async with self.runtime.service() as svc:
            instance = await svc.instances.get(instance_uuid, include_deleted=True)
            return svc.instances.record(instance)

    async def instance_update(self, ctx: RequestContext, instance_uuid: str,
                              update: InstanceUpdate,
                              expected_task_state: list[str | None] | None = None,
                              ) -> InstanceRecord:
        async with self.runtime.service() as svc:
            instance = await svc.instances.update(instance_uuid, update, expected_task_state)
            if update.vm_state is not None and instance.task_state is None:
                await svc.instances.finish_action(instance_uuid, ctx.request_id)
            return svc.instances.record(instance)

    async def action_event(self, ctx: RequestContext, instance_uuid: str, event: str,
                           host: str, finished: bool, result: str | None = None,
                           details: str | None = None) -> None:
        async with self.runtime.service() as svc:
            await svc.instances.record_event(instance_uuid, ctx.request_id, event, host=host,
                                             finished=finished, result=result,
                                             details=details)

    async def build_failed(self, ctx: RequestContext, instance_uuid: str, host: str,
                           fault: Fault, alternates: list[str], attempt: int) -> None:
        """Free the failed host's claim; claim on the next alternate, or set ERROR."""
        async with self.runtime.service() as svc:
            instance = await svc.instances.get(instance_uuid, include_deleted=True)
            await Placement(svc.session).free(instance_uuid)
            if instance.deleted_at is not None or instance.task_state == states.DELETING:
                return
            flavor = instance.flavor
        spec = FlavorSpec(vcpus=flavor["vcpus"], memory_mb=flavor["ram"],
                          root_gb=flavor["disk"], ephemeral_gb=flavor.get("ephemeral", 0),
                          swap_mb=flavor.get("swap", 0))
        remaining = list(alternates)
        while remaining and attempt < MAX_ATTEMPTS:
            candidate = remaining.pop(0)
            try:
                async with self.runtime.service() as svc:
                    await Placement(svc.session).claim(instance_uuid, provider_uuid(candidate),
                                                       spec.resources)
                    await svc.instances.update(instance_uuid, InstanceUpdate(
                        vm_state=states.BUILDING, task_state=states.SCHEDULING,
                        host=candidate, node=candidate))
            except (ClaimConflict, InsufficientResources) as exc:
                LOG.info("alternate %s for %s refused the claim: %s", candidate,
                         instance_uuid, exc)
                continue
            LOG.info("rescheduling %s from %s to %s (attempt %d): %s", instance_uuid, host,
                     candidate, attempt + 1, fault.message)
            await self.agents.build_and_run_instance(ctx, candidate, instance_uuid, remaining,
                                                     attempt + 1)
            return
        async with self.runtime.service() as svc:
            message = fault.message
            if attempt > 1 or alternates:
                message = f"Build of instance {instance_uuid} failed: {fault.message}"
            await svc.instances.set_error(instance_uuid, message=message, code=fault.code,
                                          details=fault.details, host=host)
            await svc.instances.finish_action(instance_uuid, ctx.request_id, "Error")

    async def instance_destroyed(self, ctx: RequestContext, instance_uuid: str,
                                 host: str) -> None:
        async with self.runtime.service() as svc:
            await Placement(svc.session).free(instance_uuid)
            await svc.instances.soft_delete(instance_uuid)
            await svc.instances.finish_action(instance_uuid, ctx.request_id)

    async def host_report(self, ctx: RequestContext, report: HostReport) -> list[str]:
        async with self.runtime.service() as svc:
            session = svc.session
            service = await session.scalar(select(ComputeServiceRecord).where(
                ComputeServiceRecord.host == report.host,
                ComputeServiceRecord.binary == COMPUTE_BINARY))
            now = utcnow()
            if service is None:
                service = ComputeServiceRecord(uuid=str(uuidlib.uuid4()), host=report.host,
                                               binary=COMPUTE_BINARY,
                                               topic=f"compute.{report.host}",
                                               zone=report.zone, report_count=0)
                session.add(service)
            service.last_seen_up = now
            service.updated_at = now
            service.report_count = (service.report_count or 0) + 1
            await Placement(session).ensure_provider(
                provider_uuid(report.host), report.host, {
                    VCPU: InventorySpec(report.vcpus,
                                        allocation_ratio=report.cpu_allocation_ratio),
                    MEMORY_MB: InventorySpec(report.memory_mb,
                                             reserved=report.reserved_host_memory_mb,
                                             allocation_ratio=report.ram_allocation_ratio),
                    DISK_GB: InventorySpec(report.local_gb,
                                           allocation_ratio=report.disk_allocation_ratio),
                }, hypervisor_type=report.hypervisor_type, cpu_arch=report.cpu_arch)
            return await svc.instances.on_host(report.host)
