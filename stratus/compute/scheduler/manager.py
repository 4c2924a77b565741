"""The scheduler unit: places each instance of a boot request and starts its build."""

from __future__ import annotations

import logging

from sqlalchemy import select

from stratus.compute.models import Instance as InstanceRow
from stratus.compute.models import ServerGroup, ServerGroupMember
from stratus.compute.objects import BuildRequest
from stratus.compute.rpcapi import ComputeAgentAPI
from stratus.compute.scheduler.placement import Placement
from stratus.compute.scheduler.request_spec import FlavorSpec, RequestSpec
from stratus.compute.scheduler.selector import HostSelector, NoValidHost
from stratus.compute.service import ComputeRuntime
from stratus.core.context import RequestContext

LOG = logging.getLogger(__name__)


def flavor_spec(request: BuildRequest) -> FlavorSpec:
    f = request.flavor
    return FlavorSpec(vcpus=f.vcpus, memory_mb=f.ram, root_gb=f.disk, ephemeral_gb=f.ephemeral,
                      swap_mb=f.swap, extra_specs=dict(f.extra_specs))


class SchedulerManager:
    METHODS = ("schedule_and_build",)

    def __init__(self, runtime: ComputeRuntime, selector: HostSelector,
                 agents: ComputeAgentAPI) -> None:
        self.runtime = runtime
        self.selector = selector
        self.agents = agents

    async def _group(self, group_uuid: str | None) -> tuple[str | None, frozenset[str]]:
        if group_uuid is None:
            return None, frozenset()
        async with self.runtime.db.session() as session:
            group = await session.get(ServerGroup, group_uuid)
            if group is None:
                return None, frozenset()
            hosts = await session.scalars(
                select(InstanceRow.host).join(
                    ServerGroupMember, ServerGroupMember.instance_uuid == InstanceRow.uuid)
                .where(ServerGroupMember.group_uuid == group_uuid,
                       InstanceRow.host.is_not(None), InstanceRow.deleted_at.is_(None)))
            return group.policy, frozenset(h for h in hosts if h)

    async def schedule_and_build(self, ctx: RequestContext, request: BuildRequest) -> None:
        flavor = flavor_spec(request)
        for instance_uuid in request.instance_uuids:
            policy, group_hosts = await self._group(request.group_uuid)
            spec = RequestSpec(instance_uuid=instance_uuid, project_id=request.project_id,
                               flavor=flavor, image_properties=dict(request.image_properties),
                               availability_zone=request.availability_zone,
                               group_policy=policy, group_hosts=group_hosts)
            async with self.runtime.service() as svc:
                instance = await svc.instances.get(instance_uuid, include_deleted=True)
                if instance.deleted_at is not None or instance.task_state != "scheduling":
                    LOG.info("instance %s was deleted before it was scheduled", instance_uuid)
                    continue
                await svc.instances.record_event(instance_uuid, ctx.request_id,
                                                 "conductor_schedule_and_build_instances",
                                                 host=None, finished=False)
            try:
                hosts = await self.selector.select_and_claim(spec)
            except NoValidHost as exc:
                LOG.warning("no valid host for %s: %s", instance_uuid, exc)
                async with self.runtime.service() as svc:
                    await svc.instances.set_error(instance_uuid, message=str(exc), code=500)
                    await svc.instances.record_event(
                        instance_uuid, ctx.request_id, "conductor_schedule_and_build_instances",
                        host=None, finished=True, result="Error", details=str(exc))
                    await svc.instances.finish_action(instance_uuid, ctx.request_id, "Error")
                continue
            chosen, alternates = hosts[0], hosts[1:]
            async with self.runtime.service() as svc:
                instance = await svc.instances.get(instance_uuid, include_deleted=True)
                if instance.deleted_at is not None:
                    # Deleted while we claimed: give the resources back.
                    await Placement(svc.session).free(instance_uuid)
                    continue
                instance.host, instance.node = chosen, chosen
                await svc.instances.record_event(
                    instance_uuid, ctx.request_id, "conductor_schedule_and_build_instances",
                    host=None, finished=True, result="Success")
            await self.agents.build_and_run_instance(ctx, chosen, instance_uuid, alternates)
