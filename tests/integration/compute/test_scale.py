"""500 servers booted at once onto 20 fake hosts: all ACTIVE, no host over capacity."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from stratus.compute.models import Allocation, Inventory
from stratus.core.config import Settings
from tests.integration.compute.conftest import ADMIN_PASSWORD, ROOT
from tests.integration.compute.test_boot_flow import (
    Cloud,
    boot_body,
    started_cloud,
    upload_image,
)

SERVERS = 500
HOSTS = 20


@pytest.fixture
async def cloud(db_url: str, tmp_path: Path) -> AsyncIterator[Cloud]:
    # 20 hosts of 8 vCPU x 4.0 and 16 GiB x 1.0: room for 32 m1.tiny each by CPU and RAM,
    # 640 in all, so 500 fit only if the scheduler spreads them without over-committing.
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url=ROOT,
                        admin_password=ADMIN_PASSWORD, identity={"bcrypt_rounds": 4},
                        network={"backend": "noop"},
                        compute={"fake_hosts": HOSTS, "host": "scale", "fake_vcpus": 8,
                                 "fake_memory_mb": 16384, "reserved_host_memory_mb": 0,
                                 "cpu_allocation_ratio": 4.0, "ram_allocation_ratio": 1.0})
    async with started_cloud(settings, http_timeout=120) as started:
        yield started


# 500 boots take ~30 s on a quiet 2-vCPU machine; leave room for a busy one.
@pytest.mark.timeout(900)
# PostgreSQL, where several claims really run at once; SQLite serialises writers anyway.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_500_concurrent_boots_on_20_hosts(cloud: Cloud) -> None:
    project = (await cloud.client.get("/identity/v3/auth/catalog", headers=cloud.headers(None)))
    assert project.status_code == 200
    me = (await cloud.client.get("/identity/v3/auth/projects",
                                 headers=cloud.headers(None))).json()["projects"]
    admin_project = next(p["id"] for p in me if p["name"] == "admin")
    unlimited = await cloud.compute("PUT", f"/os-quota-sets/{admin_project}", json={
        "quota_set": {"instances": -1, "cores": -1, "ram": -1}})
    assert unlimited.status_code == 200, unlimited.text
    image_id = await upload_image(cloud)

    responses = await asyncio.gather(*(
        cloud.compute("POST", "/servers", json=boot_body(image_id, f"s{n}"))
        for n in range(SERVERS)))
    assert {r.status_code for r in responses} == {202}
    ids = {r.json()["server"]["id"] for r in responses}
    assert len(ids) == SERVERS

    deadline = time.monotonic() + 300
    while True:
        listed = (await cloud.compute("GET", "/servers/detail")).json()["servers"]
        statuses = [s["status"] for s in listed]
        if statuses.count("ACTIVE") == SERVERS:
            break
        assert "ERROR" not in statuses, [s.get("fault") for s in listed if "fault" in s][:3]
        assert time.monotonic() < deadline, {s: statuses.count(s) for s in set(statuses)}
        await asyncio.sleep(0.5)
    assert {s["id"] for s in listed} == ids
    assert len({s["OS-EXT-SRV-ATTR:host"] for s in listed}) == HOSTS

    runtime = cloud.stack.compute
    assert runtime is not None
    async with runtime.db.session() as session:
        capacity = {(i.provider_uuid, i.resource_class):
                    (i.total - i.reserved) * i.allocation_ratio
                    for i in await session.scalars(select(Inventory))}
        used = (await session.execute(
            select(Allocation.provider_uuid, Allocation.resource_class, func.sum(Allocation.used))
            .group_by(Allocation.provider_uuid, Allocation.resource_class))).all()
        consumers = await session.scalar(
            select(func.count(Allocation.consumer_uuid.distinct())))
    assert consumers == SERVERS
    for provider, rc, amount in used:
        assert amount <= capacity[provider, rc], (provider, rc, amount)
