"""Resize, cold and live migration, evacuation and the migration lists, through the API of a
whole in-process cloud (three fake hosts, memory bus, SQLite and PostgreSQL): the states a
client sees, and the claims exact after each step."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from stratus.compute.conductor.manager import ConductorManager
from stratus.compute.models import ComputeServiceRecord
from stratus.compute.placement import Placement, provider_uuid
from stratus.compute.rpcapi import ComputeAgentAPI
from stratus.compute.virt.fake import FakeDriver, FakeDriverOptions
from stratus.core.config import Settings
from stratus.core.context import RequestContext
from stratus.stack import Stack
from tests.integration.compute import test_boot_flow
from tests.integration.compute.conftest import ADMIN_PASSWORD, ROOT, assert_compute_error
from tests.integration.compute.test_boot_flow import (
    Cloud,
    boot_body,
    started_cloud,
    upload_image,
)

cloud = test_boot_flow.cloud  # three fake hosts: node, node-2, node-3 (4 vCPU, 4096 MB each)

HOSTS = ("node", "node-2", "node-3")
TINY = {"VCPU": 1, "MEMORY_MB": 512, "DISK_GB": 1}
SMALL = {"VCPU": 1, "MEMORY_MB": 2048, "DISK_GB": 20}


async def claims(cloud: Cloud, consumer: str) -> dict[str, dict[str, int]]:
    """The consumer's allocations by host name."""
    names = {provider_uuid(h): h for h in HOSTS}
    runtime = cloud.stack.compute
    assert runtime is not None
    async with runtime.db.session() as session:
        held = await Placement(session).allocations_of(consumer)
    return {names[p]: r for p, r in held.items()}


async def action(cloud: Cloud, server_id: str, body: dict[str, Any],
                 version: str = "2.96") -> httpx.Response:
    return await cloud.compute("POST", f"/servers/{server_id}/action", version=version,
                               json=body)


async def boot(cloud: Cloud, image_id: str, name: str, **extra: Any) -> dict[str, Any]:
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name=name,
                                                                     **extra))
    assert created.status_code == 202, created.text
    return await cloud.wait_for(created.json()["server"]["id"], "ACTIVE")


async def migrations(cloud: Cloud, query: str = "", version: str = "2.96") -> list[Any]:
    response = await cloud.compute("GET", f"/os-migrations{query}", version=version)
    assert response.status_code == 200, response.text
    rows: list[Any] = response.json()["migrations"]
    return rows


async def migration_reaching(cloud: Cloud, server_id: str, status: str) -> dict[str, Any]:
    """The server's latest migration (``/os-migrations``), once it is ``status``."""
    deadline = time.monotonic() + 10
    while True:
        rows = await migrations(cloud, f"?instance_uuid={server_id}")
        if rows and rows[0]["status"] == status:
            latest: dict[str, Any] = rows[0]
            return latest
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.02)


async def running_live_migration(cloud: Cloud, server_id: str) -> dict[str, Any]:
    """The server's live migration as ``/servers/{id}/migrations`` lists it, once running."""
    deadline = time.monotonic() + 10
    while True:
        listed = (await cloud.compute("GET", f"/servers/{server_id}/migrations")).json()[
            "migrations"]
        if listed and listed[0]["status"] == "running":
            running: dict[str, Any] = listed[0]
            return running
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def action_names(cloud: Cloud, server_id: str) -> list[str]:
    response = await cloud.compute("GET", f"/servers/{server_id}/os-instance-actions")
    return [a["action"] for a in response.json()["instanceActions"]]


async def force_down(stack: Stack, host: str) -> None:
    """The compute service of ``host`` is down (as an operator forcing it down makes it)."""
    runtime = stack.compute
    assert runtime is not None
    async with runtime.db.session() as session:
        service = await session.scalar(select(ComputeServiceRecord).where(
            ComputeServiceRecord.host == host))
        assert service is not None
        service.forced_down = True
        await session.commit()


async def test_resize_confirm_then_revert_with_both_claims_held(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    server = await boot(cloud, image_id, "grow")
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    assert await claims(cloud, sid) == {source: TINY}

    # Wrong inputs and states: 400 / 409, nothing changed.
    assert_compute_error(await action(cloud, sid, {"resize": {"flavorRef": "1"}}), 400,
                         "badRequest")  # the same flavor
    assert_compute_error(await action(cloud, sid, {"resize": {"flavorRef": "nope"}}), 400,
                         "badRequest")
    assert_compute_error(await action(cloud, sid, {"resize": {"flavor": "2"}}), 400,
                         "badRequest")
    for wrong in ("confirmResize", "revertResize"):
        assert_compute_error(await action(cloud, sid, {wrong: None}), 409,
                             "conflictingRequest")
    assert await claims(cloud, sid) == {source: TINY}

    resized = await action(cloud, sid, {"resize": {"flavorRef": "2"}})
    assert resized.status_code == 202, resized.text
    verify = await cloud.wait_for(sid, "VERIFY_RESIZE")
    assert verify["flavor"]["original_name"] == "m1.small"
    dest = verify["OS-EXT-SRV-ATTR:host"]
    (migration,) = await migrations(cloud, f"?instance_uuid={sid}")
    assert migration["status"] == "finished" and migration["migration_type"] == "resize"
    assert (migration["source_compute"], migration["dest_compute"]) == (source, dest)
    assert (migration["old_instance_type_id"], migration["new_instance_type_id"]) == (1, 2)
    # Both flavors held until confirmed: the new one by the server on the destination, the
    # old one by the migration on the source.
    assert await claims(cloud, sid) == {dest: SMALL}
    assert await claims(cloud, migration["uuid"]) == {source: TINY}
    # Resizing again, or migrating, while VERIFY_RESIZE: 409.
    assert_compute_error(await action(cloud, sid, {"resize": {"flavorRef": "3"}}), 409,
                         "conflictingRequest")

    confirmed = await action(cloud, sid, {"confirmResize": None})
    assert confirmed.status_code == 204
    active = await cloud.wait_for(sid, "ACTIVE")
    assert active["flavor"]["original_name"] == "m1.small"
    assert await claims(cloud, sid) == {dest: SMALL}
    assert await claims(cloud, migration["uuid"]) == {}
    assert (await migrations(cloud, f"?instance_uuid={sid}"))[0]["status"] == "confirmed"

    # A second server: resized, then reverted to its old flavor and host.
    other = await boot(cloud, image_id, "shrink-back")
    oid, home = other["id"], other["OS-EXT-SRV-ATTR:host"]
    assert (await action(cloud, oid, {"resize": {"flavorRef": "2"}})).status_code == 202
    moved = await cloud.wait_for(oid, "VERIFY_RESIZE")
    reverted = await action(cloud, oid, {"revertResize": None})
    assert reverted.status_code == 202
    back = await cloud.wait_for(oid, "ACTIVE")
    assert back["flavor"]["original_name"] == "m1.tiny"
    assert back["OS-EXT-SRV-ATTR:host"] == home
    assert await claims(cloud, oid) == {home: TINY}
    (revert_row,) = await migrations(cloud, f"?instance_uuid={oid}")
    assert revert_row["status"] == "reverted"
    assert revert_row["dest_compute"] == moved["OS-EXT-SRV-ATTR:host"]
    assert await claims(cloud, revert_row["uuid"]) == {}
    assert await action_names(cloud, oid) == ["revertResize", "resize", "create"]

    # The guest really moved on the fake hypervisors, and back.
    drivers = {a.host: a.driver for a in cloud.stack.agents}
    assert oid in await drivers[home].list_guests()
    if moved["OS-EXT-SRV-ATTR:host"] != home:
        assert oid not in await drivers[moved["OS-EXT-SRV-ATTR:host"]].list_guests()


async def test_resize_over_quota_is_403_and_a_failed_move_rolls_back(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    server = await boot(cloud, image_id, "capped")
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    project = server["tenant_id"]
    limited = await cloud.compute("PUT", f"/os-quota-sets/{project}",
                                  json={"quota_set": {"cores": 1}})
    assert limited.status_code == 200, limited.text
    over = await action(cloud, sid, {"resize": {"flavorRef": "3"}})  # 2 vCPUs > 1
    assert "Quota exceeded for cores" in assert_compute_error(over, 403, "forbidden")
    after = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    assert (after["status"], after["OS-EXT-STS:task_state"]) == ("ACTIVE", None)
    assert await claims(cloud, sid) == {source: TINY}
    assert await migrations(cloud, f"?instance_uuid={sid}") == []
    await cloud.compute("PUT", f"/os-quota-sets/{project}", json={"quota_set": {"cores": 20}})

    # The destination fails to make the guest: the server is back on its source, ACTIVE,
    # with a fault; the migration is an error and the claims are as before.
    for agent in cloud.stack.agents:
        assert isinstance(agent.driver, FakeDriver)
        agent.driver.fail_next("finish_migration", "no room for the disk")
    assert (await action(cloud, sid, {"resize": {"flavorRef": "2"}})).status_code == 202
    failed_move = await migration_reaching(cloud, sid, "error")
    back = await cloud.wait_for(sid, "ACTIVE")
    assert back["flavor"]["original_name"] == "m1.tiny"
    assert back["OS-EXT-SRV-ATTR:host"] == source
    assert "fault" not in back  # Nova shows faults of ERROR servers only
    actions = (await cloud.compute("GET", f"/servers/{sid}/os-instance-actions")).json()
    resize = actions["instanceActions"][0]
    assert (resize["action"], resize["message"]) == ("resize", "Error")
    events = (await cloud.compute("GET", f"/servers/{sid}/os-instance-actions/"
                                  f"{resize['request_id']}")).json()["instanceAction"]["events"]
    failed = {e["event"]: e for e in events if e["result"] == "Error"}
    assert "no room for the disk" in failed["compute_finish_resize"]["details"]
    assert await claims(cloud, sid) == {source: TINY}
    assert await claims(cloud, failed_move["uuid"]) == {}
    for agent in cloud.stack.agents:
        agent.driver._failures.clear()  # type: ignore[attr-defined]


async def test_cold_and_live_migration_and_the_lists(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    server = await boot(cloud, image_id, "mover")
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]

    # Cold: before 2.56 the body must be null; a host that is not one is 400.
    assert_compute_error(await action(cloud, sid, {"migrate": {"host": "node-2"}}, "2.55"),
                         400, "badRequest")
    assert_compute_error(await action(cloud, sid, {"migrate": {"host": "nowhere"}}), 400,
                         "badRequest")
    target = next(h for h in HOSTS if h != source)
    assert (await action(cloud, sid, {"migrate": {"host": target}})).status_code == 202
    verify = await cloud.wait_for(sid, "VERIFY_RESIZE")
    assert verify["OS-EXT-SRV-ATTR:host"] == target
    assert (await action(cloud, sid, {"confirmResize": None})).status_code == 204
    await cloud.wait_for(sid, "ACTIVE")
    assert await claims(cloud, sid) == {target: TINY}

    # Live: the server stays ACTIVE and lands on another host; the source's claim freed.
    assert_compute_error(await action(cloud, sid, {"os-migrateLive": {
        "host": target, "block_migration": "auto"}}), 400, "badRequest")  # its own host
    assert_compute_error(await action(cloud, sid, {"os-migrateLive": {
        "host": None, "block_migration": "auto", "disk_over_commit": False}}), 400,
        "badRequest")  # gone in 2.25
    assert (await action(cloud, sid, {"os-migrateLive": {
        "host": None, "block_migration": "auto"}})).status_code == 202
    deadline = time.monotonic() + 10
    while True:
        shown = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
        assert shown["status"] in ("ACTIVE", "MIGRATING")
        if shown["status"] == "ACTIVE" and shown["OS-EXT-SRV-ATTR:host"] != target:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    live_dest = shown["OS-EXT-SRV-ATTR:host"]
    assert await claims(cloud, sid) == {live_dest: TINY}
    drivers = {a.host: a.driver for a in cloud.stack.agents}
    assert sid in await drivers[live_dest].list_guests()
    assert sid not in await drivers[target].list_guests()

    rows = await migrations(cloud, f"?instance_uuid={sid}")
    assert [(r["migration_type"], r["status"]) for r in rows] == [
        ("live-migration", "completed"), ("migration", "confirmed")]
    assert [r["migration_type"] for r in await migrations(
        cloud, "?migration_type=live-migration")] == ["live-migration"]
    assert await migrations(cloud, f"?host={live_dest}&migration_type=migration") == [] or \
        live_dest == source
    # Paging from 2.59: the newest first, a next link while more follow.
    first = await cloud.compute("GET", f"/os-migrations?instance_uuid={sid}&limit=1")
    assert [m["uuid"] for m in first.json()["migrations"]] == [rows[0]["uuid"]]
    assert "marker=" in first.json()["migrations_links"][0]["href"]
    rest = await migrations(cloud, f"?instance_uuid={sid}&limit=1&marker={rows[0]['uuid']}")
    assert [m["uuid"] for m in rest] == [rows[1]["uuid"]]
    old = await migrations(cloud, f"?instance_uuid={sid}", version="2.1")
    assert "migration_type" not in old[0] and "uuid" not in old[0]
    assert await action_names(cloud, sid) == ["live-migration", "confirmResize", "migrate",
                                              "create"]

    # A slow live migration: listed under the server while running, then aborted.
    for driver in drivers.values():
        driver.options = FakeDriverOptions(latency={"live_migration_round": 0.5})
    assert (await action(cloud, sid, {"os-migrateLive": {
        "host": None, "block_migration": "auto"}})).status_code == 202
    running = await running_live_migration(cloud, sid)
    assert running["server_uuid"] == sid and running["source_compute"] == live_dest
    shown_one = await cloud.compute("GET", f"/servers/{sid}/migrations/{running['id']}")
    assert shown_one.json()["migration"]["uuid"] == running["uuid"]
    assert_compute_error(await action(cloud, sid, {"os-stop": None}), 409, "conflictingRequest")
    aborted = await cloud.compute("DELETE", f"/servers/{sid}/migrations/{running['id']}")
    assert aborted.status_code == 202
    await migration_reaching(cloud, sid, "cancelled")
    after = await cloud.wait_for(sid, "ACTIVE")
    assert after["OS-EXT-SRV-ATTR:host"] == live_dest
    assert await claims(cloud, sid) == {live_dest: TINY}
    assert (await cloud.compute("GET", f"/servers/{sid}/migrations")).json() == {
        "migrations": []}

    # And one forced to complete.
    assert (await action(cloud, sid, {"os-migrateLive": {
        "host": None, "block_migration": "auto"}})).status_code == 202
    running = await running_live_migration(cloud, sid)
    forced = await cloud.compute("POST", f"/servers/{sid}/migrations/{running['id']}/action",
                                 json={"force_complete": None})
    assert forced.status_code == 202
    await migration_reaching(cloud, sid, "completed")
    final = await cloud.wait_for(sid, "ACTIVE")
    assert final["OS-EXT-SRV-ATTR:host"] != live_dest
    assert await claims(cloud, sid) == {final["OS-EXT-SRV-ATTR:host"]: TINY}


async def test_evacuate_only_from_a_down_host(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    server = await boot(cloud, image_id, "refugee")
    sid, source = server["id"], server["OS-EXT-SRV-ATTR:host"]
    up = await action(cloud, sid, {"evacuate": {}})
    assert "still in use" in assert_compute_error(up, 409, "conflictingRequest")
    assert_compute_error(await action(cloud, sid, {"evacuate": {}}, version="2.13"), 400,
                         "badRequest")  # onSharedStorage required before 2.14

    await force_down(cloud.stack, source)
    # The scheduler's view of the hosts is refreshed on its own interval: wait it out.
    evacuated = await action(cloud, sid, {"evacuate": {}}, version="2.94")
    assert evacuated.status_code == 200, evacuated.text
    assert evacuated.content == b""
    landed = await cloud.wait_for(sid, "ACTIVE")
    dest = landed["OS-EXT-SRV-ATTR:host"]
    assert dest != source
    assert await claims(cloud, sid) == {dest: TINY}
    (row,) = await migrations(cloud, f"?instance_uuid={sid}&migration_type=evacuation")
    assert (row["status"], row["source_compute"], row["dest_compute"]) == (
        "done", source, dest)
    assert await action_names(cloud, sid) == ["evacuate", "create"]

    # The dead host comes back: it removes its copy of the evacuated server's guest.
    victim = next(a for a in cloud.stack.agents if a.host == source)
    assert sid in await victim.driver.list_guests()
    ctx = RequestContext(user_id="test", project_id="service", roles=["service"])
    await victim.reconcile(ctx, [])
    assert sid not in await victim.driver.list_guests()
    assert sid in await next(a for a in cloud.stack.agents
                             if a.host == dest).driver.list_guests()


@pytest.fixture
async def confirming_cloud(db_url: str, tmp_path: Path) -> AsyncIterator[Cloud]:
    """Two fake hosts whose conductor confirms resizes left unconfirmed over a second."""
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url=ROOT,
                        admin_password=ADMIN_PASSWORD, identity={"bcrypt_rounds": 4},
                        network={"backend": "noop"},
                        compute={"fake_hosts": 2, "host": "node", "resize_confirm_window": 1,
                                 "report_interval": 0.5})
    async with started_cloud(settings) as started:
        yield started


async def test_resizes_left_unconfirmed_are_confirmed_after_the_window(
        confirming_cloud: Cloud) -> None:
    cloud = confirming_cloud
    image_id = await upload_image(cloud)
    server = await boot(cloud, image_id, "forgotten")
    sid = server["id"]
    assert (await action(cloud, sid, {"resize": {"flavorRef": "2"}})).status_code == 202
    await cloud.wait_for(sid, "VERIFY_RESIZE")
    (row,) = await migrations(cloud, f"?instance_uuid={sid}")
    # Nobody confirms: the conductor does, once the window has passed.
    active = await cloud.wait_for(sid, "ACTIVE")
    assert active["flavor"]["original_name"] == "m1.small"
    assert (await migrations(cloud, f"?instance_uuid={sid}"))[0]["status"] == "confirmed"
    assert await claims(cloud, row["uuid"]) == {}
    assert list((await claims(cloud, sid)).values()) == [SMALL]
    assert await action_names(cloud, sid) == ["confirmResize", "resize", "create"]
    # A window of 0 (the default) never confirms.
    runtime = cloud.stack.compute
    assert runtime is not None
    manager = ConductorManager(runtime, ComputeAgentAPI(await cloud.stack.transport()))
    assert await manager.confirm_expired_resizes(0) == []
