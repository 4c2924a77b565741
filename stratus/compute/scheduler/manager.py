"""The scheduler unit: places each instance of a boot request and starts its build."""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stratus.compute import states
from stratus.compute.models import Instance as InstanceRow
from stratus.compute.models import ServerGroup, ServerGroupMember
from stratus.compute.objects import BuildRequest
from stratus.compute.rpcapi import ComputeAgentAPI
from stratus.compute.scheduler.request_spec import FlavorSpec, RequestSpec
from stratus.compute.scheduler.selector import HostSelector, NoValidHost
from stratus.compute.service import ComputeRuntime, ComputeService
from stratus.core.context import RequestContext
from stratus.core.db import utcnow

LOG = logging.getLogger(__name__)

SCHEDULE_EVENT = "conductor_schedule_and_build_instances"


class InstanceGone(Exception):
    """The instance was deleted (or left ``scheduling``) before it could be placed."""


class AlreadyPlaced(Exception):
    """A redelivered request: the instance was placed (and claimed for) already."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.host = host


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
            placed = [h for h in hosts if h]
            limit = (group.rules or {}).get("max_server_per_host")
            if group.policy == "anti-affinity" and limit:
                # The rule lets a host take up to ``limit`` members: the anti-affinity
                # filter then only has to avoid the hosts that are full.
                return group.policy, frozenset(h for h in set(placed)
                                               if placed.count(h) >= int(limit))
            return group.policy, frozenset(placed)

    async def schedule_and_build(self, ctx: RequestContext, request: BuildRequest) -> None:
        flavor = flavor_spec(request)
        for instance_uuid in request.instance_uuids:
            policy, group_hosts = await self._group(request.group_uuid)
            spec = RequestSpec(instance_uuid=instance_uuid, project_id=request.project_id,
                               flavor=flavor, image_properties=dict(request.image_properties),
                               availability_zone=request.availability_zone,
                               group_policy=policy, group_hosts=group_hosts)
            started = utcnow()

            async def place(session: AsyncSession, host: str, uuid: str = instance_uuid,
                            started: dt.datetime = started) -> None:
                # The placement, the claim and the action event commit together, so a
                # deleted instance never keeps a claim and a placed one always has its host.
                instance = await session.get(InstanceRow, uuid)
                if (instance is None or instance.deleted_at is not None
                        or instance.task_state != states.SCHEDULING):
                    raise InstanceGone(uuid)
                if instance.host:
                    raise AlreadyPlaced(instance.host)  # undoes this second claim
                instance.host, instance.node = host, host
                await ComputeService(self.runtime, session).instances.record_event(
                    uuid, ctx.request_id, SCHEDULE_EVENT, host=None, finished=True,
                    result="Success", started_at=started)

            try:
                hosts = await self.selector.select_and_claim(spec, on_claim=place)
            except InstanceGone:
                LOG.info("instance %s was deleted before it was scheduled", instance_uuid)
                continue
            except AlreadyPlaced as placed:
                # The scheduler that placed it may have died before the cast: send it again
                # (a host ignores a build it has already taken up).
                await self.agents.build_and_run_instance(ctx, placed.host, instance_uuid, [])
                continue
            except NoValidHost as exc:
                LOG.warning("no valid host for %s: %s", instance_uuid, exc)
                async with self.runtime.service() as svc:
                    instance = await svc.instances.get(instance_uuid, include_deleted=True)
                    if instance.deleted_at is not None:
                        continue
                    await svc.instances.set_error(instance_uuid, message=str(exc), code=500)
                    await svc.instances.record_event(
                        instance_uuid, ctx.request_id, SCHEDULE_EVENT, host=None,
                        finished=True, result="Error", details=str(exc), started_at=started)
                    await svc.instances.finish_action(instance_uuid, ctx.request_id, "Error")
                continue
            chosen, alternates = hosts[0], hosts[1:]
            await self.agents.build_and_run_instance(ctx, chosen, instance_uuid, alternates)
