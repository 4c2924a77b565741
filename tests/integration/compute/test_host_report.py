"""A compute host's periodic report handled by the conductor, on SQLite and PostgreSQL: the
first makes the host's service row, provider and inventories; later ones count the
heartbeat (once) and correct what changed; an unchanged report of a known host is four
statements (its heartbeat, its provider, its inventories read, its instances), on
PostgreSQL one; each is answered with the host's live instances, but a periodic heartbeat,
which asks for none and reads none."""

from __future__ import annotations

import asyncio
import uuid as uuidlib

import pytest
from sqlalchemy import select, text

from stratus.compute import states
from stratus.compute.conductor.manager import ConductorManager
from stratus.compute.hosts import COMPUTE_BINARY
from stratus.compute.models import ComputeServiceRecord, Instance, Inventory, ResourceProvider
from stratus.compute.objects import HostReport
from stratus.compute.placement import provider_uuid
from stratus.core.context import RequestContext
from stratus.core.db import utcnow
from stratus.stack import Stack
from tests.dbcount import statements_of

CTX = RequestContext.for_service("compute")


@pytest.fixture
def stack(conductor_stack: Stack) -> Stack:
    return conductor_stack


def _report(**changes: object) -> HostReport:
    values: dict[str, object] = {"host": "reporter", "zone": "az-r", "hypervisor_type": "fake",
                                 "hypervisor_version": 1, "vcpus": 8, "memory_mb": 4096,
                                 "local_gb": 50}
    values.update(changes)
    return HostReport.model_validate(values)


async def _state(stack: Stack) -> tuple[ComputeServiceRecord, ResourceProvider,
                                         dict[str, tuple[int, int, float, int]]]:
    assert stack.compute is not None
    async with stack.compute.service(write=False) as svc:
        service = await svc.session.scalar(select(ComputeServiceRecord).where(
            ComputeServiceRecord.host == "reporter",
            ComputeServiceRecord.binary == COMPUTE_BINARY))
        provider = await svc.session.get(ResourceProvider, provider_uuid("reporter"))
        inventories = {row.resource_class: (row.total, row.reserved, row.allocation_ratio,
                                            row.max_unit)
                       for row in await svc.session.scalars(select(Inventory).where(
                           Inventory.provider_uuid == provider_uuid("reporter")))}
    assert service is not None and provider is not None
    return service, provider, inventories


async def test_reports_make_then_keep_the_host_and_its_inventories(stack: Stack) -> None:
    assert stack.compute is not None
    conductor = ConductorManager(stack.compute, None)  # type: ignore[arg-type]
    assert await conductor.host_report(CTX, _report()) == []
    service, provider, inventories = await _state(stack)
    assert (service.report_count, service.zone) == (1, "az-r")
    assert provider.name == "reporter"
    assert inventories == {"VCPU": (8, 0, 16.0, 8), "MEMORY_MB": (4096, 512, 1.5, 4096),
                           "DISK_GB": (50, 0, 1.0, 50)}
    first_seen = service.last_seen_up
    assert first_seen is not None

    with statements_of(stack.compute.db.engine) as unchanged:
        await conductor.host_report(CTX, _report())
    service, provider, after = await _state(stack)
    assert service.report_count == 2
    assert service.last_seen_up is not None and service.last_seen_up >= first_seen
    assert after == inventories
    writes = [sql for sql, _ in unchanged.seen if sql.split(None, 1)[0].upper() in (
        "SELECT", "UPDATE", "INSERT", "DELETE", "WITH")]
    # PostgreSQL: one statement (data-modifying CTEs), sent with no BEGIN/COMMIT.
    postgresql = stack.compute.db.backend == "postgresql"
    assert len(writes) == (1 if postgresql else 4), writes
    # Its one write is the heartbeat: the provider's row, which claims lock, is only read.
    assert not [sql for sql in writes if "UPDATE resource_provider" in sql], writes

    # Changed inventories and hypervisor attributes are written.
    await conductor.host_report(CTX, _report(memory_mb=8192, ram_allocation_ratio=1.0,
                                             cpu_arch="aarch64"))
    service, provider, after = await _state(stack)
    assert service.report_count == 3
    assert provider.cpu_arch == "aarch64"
    assert after["MEMORY_MB"] == (8192, 512, 1.0, 8192)
    assert after["VCPU"] == inventories["VCPU"]


async def test_a_missing_inventory_row_is_made_again(stack: Stack) -> None:
    assert stack.compute is not None
    conductor = ConductorManager(stack.compute, None)  # type: ignore[arg-type]
    await conductor.host_report(CTX, _report())
    async with stack.compute.service() as svc:
        row = await svc.session.get(Inventory, (provider_uuid("reporter"), "DISK_GB"))
        assert row is not None
        await svc.session.delete(row)
    await conductor.host_report(CTX, _report())
    _service, _provider, inventories = await _state(stack)
    assert inventories["DISK_GB"] == (50, 0, 1.0, 50)


async def test_a_report_is_answered_with_the_hosts_live_instances(stack: Stack) -> None:
    assert stack.compute is not None
    conductor = ConductorManager(stack.compute, None)  # type: ignore[arg-type]
    await conductor.host_report(CTX, _report())
    async with stack.compute.service() as svc:
        for name, deleted in (("live", None), ("gone", utcnow())):
            svc.session.add(Instance(
                uuid=str(uuidlib.uuid4()), display_name=name, hostname=name, project_id="p",
                user_id="u", reservation_id="r-1", flavor_id="1", vm_state=states.ACTIVE,
                flavor={"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 64, "disk": 1},
                host="reporter", node="reporter", deleted_at=deleted))
        await svc.session.flush()
        live = await svc.session.scalar(select(Instance.uuid).where(
            Instance.display_name == "live"))
    assert await conductor.host_report(CTX, _report()) == [live]
    # Changed inventories (the longer path) get the same answer.
    assert await conductor.host_report(CTX, _report(vcpus=16)) == [live]
    service, _provider, inventories = await _state(stack)
    assert service.report_count == 3
    assert inventories["VCPU"][0] == 16


async def test_a_heartbeat_does_not_read_the_hosts_instances(stack: Stack) -> None:
    """A periodic report (``with_instances=False``) is answered with no instances and sends
    no statement that reads the ``instance`` table: its cost does not grow with the host's
    servers (it read every live one of them on each report), on the short path of an
    unchanged host and on the ORM path of changed inventories alike."""
    assert stack.compute is not None
    conductor = ConductorManager(stack.compute, None)  # type: ignore[arg-type]
    await conductor.host_report(CTX, _report())
    async with stack.compute.service() as svc:
        svc.session.add(Instance(
            uuid=str(uuidlib.uuid4()), display_name="live", hostname="live", project_id="p",
            user_id="u", reservation_id="r-1", flavor_id="1", vm_state=states.ACTIVE,
            flavor={"id": "1", "name": "m1.tiny", "vcpus": 1, "ram": 64, "disk": 1},
            host="reporter", node="reporter"))
    for report in (_report(with_instances=False), _report(vcpus=16, with_instances=False)):
        with statements_of(stack.compute.db.engine) as sent:
            assert await conductor.host_report(CTX, report) == []
        reads = [sql for sql, _ in sent.seen if "instance" in sql.lower()]
        assert reads == []
    service, _provider, inventories = await _state(stack)
    assert service.report_count == 3
    assert inventories["VCPU"][0] == 16
    # The start's report still lists them.
    assert len(await conductor.host_report(CTX, _report())) == 1


async def _lock_waiters(stack: Stack) -> int:
    """Backends of this database waiting for a lock another transaction holds (PostgreSQL)."""
    assert stack.compute is not None
    async with stack.compute.db.engine.connect() as connection:
        return int(await connection.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")) or 0)


# PostgreSQL: a claim locks its provider's row (SQLite has one writer for everything).
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_heartbeat_does_not_wait_for_the_claims_on_its_host(stack: Stack) -> None:
    """Under a burst of boots, claims on a host hold its provider's row locked one after
    another (``Placement.claim``: ``FOR UPDATE``, until their batch commits; seconds on a
    loaded machine). A heartbeat that wrote that row too waited for them all before its
    service row was written: live hosts were taken for down (by the scheduler, by the
    conductor's watchdog, which failed their builds) because they were busy. An unchanged
    report writes only the host's service row, so it goes through while a claim holds the
    provider; whether it waited is asked of PostgreSQL (no clock in the test)."""
    assert stack.compute is not None
    conductor = ConductorManager(stack.compute, None)  # type: ignore[arg-type]
    await conductor.host_report(CTX, _report())
    seen_before = (await _state(stack))[0].report_count
    waited = False
    async with stack.compute.db.engine.connect() as claim, claim.begin():
        await claim.execute(select(ResourceProvider.generation).where(
            ResourceProvider.uuid == provider_uuid("reporter")).with_for_update())
        beat = asyncio.ensure_future(conductor.host_report(CTX, _report(with_instances=False)))
        while not beat.done():
            if await _lock_waiters(stack):
                waited = True
                break
            await asyncio.sleep(0.01)
    assert await beat == []  # the claim's transaction ended: a heartbeat that waited ends too
    assert not waited, "the heartbeat waited for the claim's lock on the host's provider"
    assert (await _state(stack))[0].report_count == seen_before + 1
