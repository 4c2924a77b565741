"""The scheduler unit: places each instance of a boot request and starts its build."""

from __future__ import annotations

import datetime as dt
import logging
import time

from stratus.compute.errors import (
    FILTER_EVIDENCE_ATTRIBUTE,
    AlreadyPlaced,
    ClaimConflict,
    InstanceGone,
    InsufficientResources,
    NoValidHost,
)
from stratus.compute.instances import Instances
from stratus.compute.objects import (
    BUILD_EVENT,
    BuildRequest,
    FlavorInfo,
    InstanceRecord,
    MoveClaim,
    MoveClaimResult,
    UnshelveRequest,
)
from stratus.compute.placement import Placement, provider_uuid
from stratus.compute.rpcapi import ComputeAgentAPI
from stratus.compute.scheduler.request_spec import FlavorSpec, RequestSpec
from stratus.compute.scheduler.selector import HostSelector
from stratus.compute.server_migrations import Migrations
from stratus.compute.service import ComputeRuntime
from stratus.compute.states import UNSHELVING
from stratus.core.context import RequestContext
from stratus.core.db import Txn, utcnow
from stratus.core.metrics import BOOTS, SCHEDULER_DECISIONS, child
from stratus.core.tracing import span

LOG = logging.getLogger(__name__)

SCHEDULE_EVENT = "conductor_schedule_and_build_instances"
UNSHELVE_SCHEDULE_EVENT = "schedule_instances"


def flavor_spec(request: BuildRequest | UnshelveRequest) -> FlavorSpec:
    return spec_of(request.flavor)


def spec_of(f: FlavorInfo) -> FlavorSpec:
    return FlavorSpec(vcpus=f.vcpus, memory_mb=f.ram, root_gb=f.disk, ephemeral_gb=f.ephemeral,
                      swap_mb=f.swap, extra_specs=dict(f.extra_specs))


def evidence_details(exc: NoValidHost) -> str:
    """A no-valid-host fault's details (shown to admins only, as Nova shows a fault's
    details): each filter's count and the hosts it removed, with why."""
    if not exc.evidence:
        return ""
    return "Filter results:\n" + "\n".join(exc.evidence)


def _log_no_valid_host(instance_uuid: str, exc: NoValidHost) -> None:
    if not exc.evidence:  # not the filters: e.g. every claim attempt conflicted
        LOG.warning("no valid host for %s: %s", instance_uuid, exc)
        return
    # The line Nova's operators grep for, with each filter's result.
    LOG.warning("Filtering removed all hosts for the request with instance ID '%s'. "
                "Filter results: %s", instance_uuid,
                [line for line in exc.evidence if not line.startswith(" ")])


def _decided(outcome: str, since: float) -> None:
    child(SCHEDULER_DECISIONS, outcome).observe(time.perf_counter() - since)


class SchedulerManager:
    METHODS = ("schedule_and_build", "move_claim", "unshelve_instance")

    def __init__(self, runtime: ComputeRuntime, selector: HostSelector,
                 agents: ComputeAgentAPI) -> None:
        self.runtime = runtime
        self.selector = selector
        self.agents = agents

    async def _group(self, group_uuid: str | None) -> tuple[str | None, frozenset[str]]:
        if group_uuid is None:  # most boots: no transaction (it took SQLite's write lock)
            return None, frozenset()
        async with self.runtime.service(write=False) as svc:
            return await svc.server_groups.scheduling_hints(group_uuid)

    async def schedule_and_build(self, ctx: RequestContext, request: BuildRequest) -> None:
        flavor = flavor_spec(request)
        for instance_uuid in request.instance_uuids:
            policy, group_hosts = await self._group(request.group_uuid)
            spec = RequestSpec(instance_uuid=instance_uuid, project_id=request.project_id,
                               flavor=flavor, image_properties=dict(request.image_properties),
                               availability_zone=request.availability_zone,
                               group_policy=policy, group_hosts=group_hosts)
            started = utcnow()
            taken: list[InstanceRecord] = []

            async def place(txn: Txn, host: str, uuid: str = instance_uuid,
                            started: dt.datetime = started,
                            taken: list[InstanceRecord] = taken) -> None:
                # The placement, the claim and the action event commit together, so a
                # deleted instance never keeps a claim and a placed one always has its host.
                # The placement comes first (``select_and_claim``): it locks the instance's
                # row before the provider's, and a redelivered request finds it placed
                # (``AlreadyPlaced``) or past scheduling (``InstanceGone``) before it claims.
                # It also takes the build up for the host (``networking``, the build's
                # event started), as the host's ``begin_build`` call did: the cast carries
                # the record, and the host calls the conductor only to check a delivery
                # that may not be the first (``ComputeAgentManager.build_and_run_instance``).
                # A unit may run again (its batch failed): the last run's record is kept.
                taken[:] = [await Instances(txn).place_taking_up(
                    uuid, host, ctx.request_id, SCHEDULE_EVENT, started, BUILD_EVENT)]

            deciding = time.perf_counter()
            try:
                with span("scheduler.select_and_claim", step="9-11") as decision:
                    try:
                        hosts = await self.selector.select_and_claim(spec, on_claim=place)
                    except NoValidHost as exc:
                        decision.set_attribute(FILTER_EVIDENCE_ATTRIBUTE, exc.evidence)
                        raise
            except InstanceGone:
                _decided("gone", deciding)
                # Deleted meanwhile, or a redelivered request whose build went further.
                LOG.info("instance %s was deleted or is past scheduling: not scheduled",
                         instance_uuid)
                continue
            except AlreadyPlaced as placed:
                _decided("placed", deciding)
                # The scheduler that placed it may have died before the cast: send it again
                # (a host ignores a build it has already taken up), with alternates to
                # reschedule to, as the first cast had.
                alternates = await self.selector.alternates(spec, besides=placed.host)
                await self.agents.build_and_run_instance(ctx, placed.host, instance_uuid,
                                                         alternates,
                                                         admin_password=request.admin_password)
                continue
            except NoValidHost as exc:
                _decided("no_valid_host", deciding)
                BOOTS.labels("no_valid_host").inc()
                _log_no_valid_host(instance_uuid, exc)
                async with self.runtime.service() as svc:
                    instance = await svc.instances.get(instance_uuid, include_deleted=True)
                    if instance.deleted_at is not None:
                        continue
                    await svc.instances.set_error(instance_uuid, message=str(exc), code=500,
                                                  details=evidence_details(exc))
                    await svc.instances.record_event(
                        instance_uuid, ctx.request_id, SCHEDULE_EVENT, host=None,
                        finished=True, result="Error", details=str(exc), started_at=started)
                    await svc.instances.finish_action(instance_uuid, ctx.request_id, "Error")
                continue
            _decided("placed", deciding)
            chosen, alternates = hosts[0], hosts[1:]
            await self.agents.build_and_run_instance(ctx, chosen, instance_uuid, alternates,
                                                     admin_password=request.admin_password,
                                                     instance=taken[-1])

    async def move_claim(self, ctx: RequestContext, claim: MoveClaim) -> MoveClaimResult:
        """A destination for a moving server, claimed in one transaction with the hand-over
        of its source's claim (to the migration, or freed for an evacuation) and the
        migration's destination; the reason when there is none."""
        flavor = spec_of(claim.flavor)
        started = utcnow()

        async def hand_over(txn: Txn) -> None:
            placement = Placement(txn)
            if claim.free_source:
                await placement.free(claim.instance_uuid)
            else:
                await placement.move(claim.instance_uuid, claim.migration_uuid)

        async def record(txn: Txn, host: str) -> None:
            await Migrations(txn).set_destination(claim.migration_uuid, host)
            await Instances(txn).record_event(
                claim.instance_uuid, ctx.request_id, claim.event, host=None, finished=True,
                result="Success", started_at=started)

        if claim.requested_host and claim.force:
            # Forced: no filters, but the claim itself must still fit.
            host = claim.requested_host
            try:
                async with self.runtime.db.transaction() as txn:
                    # The migration's row before the providers', as ``select_and_claim``.
                    await record(txn, host)
                    await hand_over(txn)
                    await Placement(txn).claim(claim.instance_uuid,
                                                       provider_uuid(host), flavor.resources)
            except (InsufficientResources, ClaimConflict) as exc:
                return MoveClaimResult(reason=f"No valid host was found. {exc}")
            return MoveClaimResult(host=host)
        spec = RequestSpec(
            instance_uuid=claim.instance_uuid, project_id=claim.project_id, flavor=flavor,
            image_properties=dict(claim.image_properties),
            availability_zone=claim.availability_zone,
            ignore_hosts=frozenset() if claim.allow_same_host else frozenset(
                {claim.source_host}),
            requested_host=claim.requested_host or None)
        try:
            hosts = await self.selector.select_and_claim(spec, on_claim=record,
                                                         before_claim=hand_over)
        except NoValidHost as exc:
            LOG.info("no host for the move of %s: %s", claim.instance_uuid, exc)
            return MoveClaimResult(reason=str(exc))
        return MoveClaimResult(host=hosts[0])

    async def unshelve_instance(self, ctx: RequestContext, request: UnshelveRequest) -> None:
        """Place a shelved-offloaded instance as a boot would (its flavor, the shelve
        image's properties, the zone or host asked for), claim, and have the host spawn it;
        no host: it stays offloaded, with a fault that says why."""
        uuid = request.instance_uuid
        spec = RequestSpec(instance_uuid=uuid, project_id=request.project_id,
                           flavor=flavor_spec(request),
                           image_properties=dict(request.image_properties),
                           availability_zone=request.availability_zone,
                           requested_host=request.host)
        started = utcnow()

        async def place(txn: Txn, host: str) -> None:
            instances = Instances(txn)
            await instances.place_unshelved(uuid, host)
            await instances.record_event(uuid, ctx.request_id, UNSHELVE_SCHEDULE_EVENT,
                                         host=None, finished=True, result="Success",
                                         started_at=started)

        try:
            hosts = await self.selector.select_and_claim(spec, on_claim=place)
        except InstanceGone:
            LOG.info("instance %s left unshelving before it was placed", uuid)
            return
        except NoValidHost as exc:
            _log_no_valid_host(uuid, exc)
            async with self.runtime.service() as svc:
                instance = await svc.instances.get(uuid, include_deleted=True)
                if instance.deleted_at is not None or instance.task_state != UNSHELVING:
                    return
                instance.task_state = None
                await svc.instances.add_fault(uuid, code=500, message=str(exc),
                                              details=evidence_details(exc))
                await svc.instances.record_event(
                    uuid, ctx.request_id, UNSHELVE_SCHEDULE_EVENT, host=None, finished=True,
                    result="Error", details=str(exc), started_at=started)
                await svc.instances.finish_action(uuid, ctx.request_id, "Error")
            return
        await self.agents.unshelve_instance(ctx, hosts[0], uuid, request.image_id)
