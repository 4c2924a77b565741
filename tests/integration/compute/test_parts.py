"""Compute's domain parts on a ``Txn``, without HTTP: each is built from the transaction and
its named collaborators, as the facade wires them."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from stratus.compute.errors import QuotaExceeded
from stratus.compute.hosts import COMPUTE_BINARY, Hosts
from stratus.compute.migrations import HEAD
from stratus.compute.models import ComputeServiceRecord
from stratus.compute.placement import DISK_GB, MEMORY_MB, VCPU, InventorySpec, Placement
from stratus.compute.quotas import Quotas
from stratus.compute.server_groups import ServerGroups
from stratus.compute.server_metadata import ServerMetadata
from stratus.compute.service import SCRIPT_LOCATION, VERSION_TABLE
from stratus.core.context import RequestContext
from stratus.core.db import Database, utcnow
from stratus.core.exceptions import Forbidden


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await database.upgrade(SCRIPT_LOCATION, VERSION_TABLE, known_head=HEAD)
    yield database
    await database.dispose()


async def test_quota_limits_overrides_and_the_instance_check(db: Database) -> None:
    async with db.transaction() as txn:
        quotas = Quotas(txn)
        assert (await quotas.limits("p"))["instances"] == 10
        assert (await quotas.set_limits("p", {"cores": 2}))["cores"] == 2
        with pytest.raises(QuotaExceeded) as over:
            await quotas.check_instances("p", 1, vcpus=4, ram=512)
        assert str(over.value.message) == ("Quota exceeded for cores: Requested 4, but already "
                                           "used 0 of 2 cores")
        await quotas.check_instances("p", 1, vcpus=2, ram=512)  # fits


async def test_server_groups_and_metadata_count_against_the_quotas(db: Database) -> None:
    ctx = RequestContext(user_id="u", project_id="p", roles=["member"])
    async with db.transaction() as txn:
        quotas = Quotas(txn)
        await quotas.set_limits("p", {"server_groups": 1, "metadata_items": 1})
        groups = ServerGroups(txn, quotas)
        await groups.create(ctx, "one", "affinity", {})
        with pytest.raises(Forbidden):
            await groups.create(ctx, "two", "affinity", {})
        with pytest.raises(QuotaExceeded):
            await ServerMetadata(txn, quotas).check_quota("p", 2)
    with pytest.raises(Forbidden):  # a token without a project makes no group
        async with db.transaction() as txn:
            await ServerGroups(txn, Quotas(txn)).create(
                RequestContext(user_id="u", roles=["member"]), "x", "affinity", {})


async def test_hosts_are_up_until_their_heartbeat_is_too_old(db: Database) -> None:
    async with db.transaction() as txn:
        hosts = Hosts(txn.session, down_after=60)
        await hosts.heartbeat("fresh", "nova")
        stale = await hosts.heartbeat("stale", "nova")
        stale.last_seen_up = utcnow() - dt.timedelta(seconds=120)
        txn.session.add(ComputeServiceRecord(uuid="s", host="sched", binary="nova-scheduler",
                                             topic="scheduler", zone="internal",
                                             report_count=0))
        await txn.session.flush()
        assert await hosts.up_states({"fresh", "stale", "sched"}) == {"fresh": True,
                                                                       "stale": False}
        assert await hosts.down_hosts() == ["stale"]
        assert {s.binary for s in await hosts.services()} == {COMPUTE_BINARY, "nova-scheduler"}


async def test_hypervisor_totals_are_the_sums_of_the_hypervisors(db: Database) -> None:
    async with db.transaction() as txn:
        placement = Placement(txn.session)
        for n, host in enumerate(("a", "b", "c")):
            await placement.ensure_provider(f"rp-{host}", host, {
                VCPU: InventorySpec(8), MEMORY_MB: InventorySpec(4096 * (n + 1)),
                DISK_GB: InventorySpec(100)})
        for vm, host in (("vm1", "a"), ("vm2", "a"), ("vm3", "b")):
            await placement.claim(vm, f"rp-{host}", {VCPU: 2, MEMORY_MB: 512, DISK_GB: 10})
        await placement.claim("vm4", "rp-b", {VCPU: 1})
        hosts = Hosts(txn.session)
        listed = await hosts.hypervisors()
        keys = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used",
                "local_gb_used", "running_vms")
        expected = {k: sum(getattr(h, k) for h in listed) for k in keys}
        assert await hosts.hypervisor_totals() == {"count": 3, **expected}
        assert expected["running_vms"] == 4 and expected["vcpus_used"] == 7
        assert [h.index for h in listed] == [1, 2, 3]
        assert (await hosts.hypervisor("2")).provider.name == "b"
