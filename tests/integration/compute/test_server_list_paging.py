"""``GET /servers`` and ``/servers/detail`` page in SQL: page 2 of 1,000 servers reads about
one page of rows from the database, not every visible row."""

from __future__ import annotations

import datetime as dt
import uuid
from urllib.parse import urlsplit

import pytest
from sqlalchemy import insert

from stratus.compute.models import Instance, InstanceAction
from tests.dbcount import count_loaded, postgres_plan_unsorted, sqlite_plan, statements_of
from tests.integration.compute import test_boot_flow
from tests.integration.compute.test_boot_flow import Cloud

cloud = test_boot_flow.cloud  # the whole in-process cloud

COUNT = 1000
LIMIT = 25


async def _project_and_user(cloud: Cloud) -> tuple[str, str]:
    token = (await cloud.client.get("/identity/v3/auth/tokens", headers={
        "X-Auth-Token": cloud.token, "X-Subject-Token": cloud.token})).json()["token"]
    return token["project"]["id"], token["user"]["id"]


async def _thousand_servers(cloud: Cloud) -> list[str]:
    """1,000 servers of the caller's project, straight into the database (fast); named in
    creation order; returns their names newest first (the default order)."""
    project_id, user_id = await _project_and_user(cloud)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [{"uuid": str(uuid.uuid4()), "display_name": f"srv-{n:04d}", "hostname": "srv",
             "project_id": project_id, "user_id": user_id, "reservation_id": "r-paging",
             "flavor_id": "1", "flavor": {}, "vm_state": "active",
             "created_at": start + dt.timedelta(seconds=n)} for n in range(COUNT)]
    runtime = cloud.stack.compute
    assert runtime is not None
    async with runtime.service() as svc:
        await svc.session.execute(insert(Instance), rows)
    return [r["display_name"] for r in reversed(rows)]


def _path(href: str) -> str:
    parts = urlsplit(href)
    return f"{parts.path}?{parts.query}"


async def test_page_two_of_a_thousand_servers_reads_one_page(cloud: Cloud) -> None:
    newest_first = await _thousand_servers(cloud)
    for collection in ("servers", "servers/detail"):
        first = await cloud.client.get(f"/compute/v2.1/{collection}?limit={LIMIT}",
                                       headers=cloud.headers())
        assert first.status_code == 200, first.text
        assert [s["name"] for s in first.json()["servers"]] == newest_first[:LIMIT]
        (link,) = first.json()["servers_links"]
        with count_loaded(Instance) as loaded:
            second = await cloud.client.get(_path(link["href"]), headers=cloud.headers())
        assert second.status_code == 200, second.text
        assert [s["name"] for s in second.json()["servers"]] == \
            newest_first[LIMIT:2 * LIMIT]
        assert loaded.count <= LIMIT + 2, f"{collection}: {loaded.count} rows loaded"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_pages_are_ranges_of_an_index_not_sorts(cloud: Cloud) -> None:
    """The database too reads one page: page 2 of each list in its default order seeks
    into an index after the marker (no scan of the project's rows, no sort of them), and
    the quota usage a boot counts is summed from the index. Plans are SQLite's (its
    planner does not change its mind with the table's size, as PostgreSQL's does)."""
    await _thousand_servers(cloud)
    runtime = cloud.stack.compute
    assert runtime is not None
    engine = runtime.db.engine
    for collection in ("servers", "servers/detail"):
        first = await cloud.client.get(f"/compute/v2.1/{collection}?limit={LIMIT}",
                                       headers=cloud.headers())
        (link,) = first.json()["servers_links"]
        with statements_of(engine) as ran:
            second = await cloud.client.get(_path(link["href"]), headers=cloud.headers())
        assert second.status_code == 200, second.text
        plans = [await sqlite_plan(engine, sql, params)
                 for sql, params in ran.selecting("instance")]
        assert plans, ran.seen
        for plan in plans:
            assert "TEMP B-TREE" not in plan and "SCAN instance" not in plan, plan
        assert any("created_at<?" in plan for plan in plans), plans  # seeks past the marker
    project_id, _ = await _project_and_user(cloud)
    async with runtime.service() as svc:
        with statements_of(engine) as ran:
            assert (await svc.quotas.usage(project_id))["instances"] == COUNT
    (usage,) = ran.selecting("instance")
    assert "COVERING INDEX" in await sqlite_plan(engine, *usage)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_pages_on_postgresql_are_read_off_an_index(cloud: Cloud) -> None:
    """PostgreSQL reads the first page and the page after a marker of both lists in their
    default order (created_at, uuid, desc) off an index of the project's live servers, not
    by sorting every one of them: ``deleted_at IS NULL`` is not an equality, so an index
    with ``deleted_at`` before ``created_at`` cannot give that order; one whose rows are
    only the live servers can. Sorting is priced out of the plans (``enable_sort`` off), so
    a ``Sort`` left in one means no index gives the order, whatever the table's size."""
    await _thousand_servers(cloud)
    runtime = cloud.stack.compute
    assert runtime is not None
    engine = runtime.db.engine
    for collection in ("servers", "servers/detail"):
        with statements_of(engine) as ran_first:
            first = await cloud.client.get(f"/compute/v2.1/{collection}?limit={LIMIT}",
                                           headers=cloud.headers())
        assert first.status_code == 200, first.text
        (link,) = first.json()["servers_links"]
        with statements_of(engine) as ran_second:
            second = await cloud.client.get(_path(link["href"]), headers=cloud.headers())
        assert second.status_code == 200, second.text
        pages = [s for s in [*ran_first.selecting("instance"), *ran_second.selecting("instance")]
                 if "ORDER BY" in s[0]]
        assert len(pages) == 2, ran_first.seen + ran_second.seen
        for page in pages:
            plan = await postgres_plan_unsorted(engine, *page)
            assert "ix_instance_project_live_order" in plan and "Sort" not in plan, plan


async def test_page_two_sorted_by_name_with_a_filter_reads_one_page(cloud: Cloud) -> None:
    oldest_first = list(reversed(await _thousand_servers(cloud)))
    query = f"limit={LIMIT}&sort_key=display_name&sort_dir=asc&status=ACTIVE"
    first = await cloud.client.get(f"/compute/v2.1/servers?{query}", headers=cloud.headers())
    assert first.status_code == 200, first.text
    (link,) = first.json()["servers_links"]
    with count_loaded(Instance) as loaded:
        second = await cloud.client.get(_path(link["href"]), headers=cloud.headers())
    assert [s["name"] for s in second.json()["servers"]] == oldest_first[LIMIT:2 * LIMIT]
    assert loaded.count <= LIMIT + 2, f"{loaded.count} rows loaded"


async def test_page_two_of_a_thousand_instance_actions_reads_one_page(cloud: Cloud) -> None:
    project_id, user_id = await _project_and_user(cloud)
    server = str(uuid.uuid4())
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    runtime = cloud.stack.compute
    assert runtime is not None
    async with runtime.service() as svc:
        await svc.session.execute(insert(Instance), [{
            "uuid": server, "display_name": "acted-on", "hostname": "acted-on",
            "project_id": project_id, "user_id": user_id, "reservation_id": "r-actions",
            "flavor_id": "1", "flavor": {}, "vm_state": "active"}])
        await svc.session.execute(insert(InstanceAction), [{
            "instance_uuid": server, "request_id": f"req-{n:04d}", "action": "reboot",
            "project_id": project_id, "user_id": user_id,
            "start_time": start + dt.timedelta(seconds=n)} for n in range(COUNT)])
    newest_first = [f"req-{n:04d}" for n in reversed(range(COUNT))]
    path = f"/compute/v2.1/servers/{server}/os-instance-actions"
    first = await cloud.client.get(f"{path}?limit={LIMIT}", headers=cloud.headers("2.58"))
    assert first.status_code == 200, first.text
    assert [a["request_id"] for a in first.json()["instanceActions"]] == newest_first[:LIMIT]
    (link,) = first.json()["links"]
    with count_loaded(InstanceAction) as loaded:
        second = await cloud.client.get(_path(link["href"]), headers=cloud.headers("2.58"))
    assert second.status_code == 200, second.text
    assert [a["request_id"] for a in second.json()["instanceActions"]] == \
        newest_first[LIMIT:2 * LIMIT]
    assert loaded.count <= LIMIT + 2, f"{loaded.count} rows loaded"
    # Before 2.58 the list is not paged: every action, no links.
    every = await cloud.client.get(f"{path}?limit={LIMIT}", headers=cloud.headers("2.57"))
    assert len(every.json()["instanceActions"]) == COUNT and "links" not in every.json()


async def test_a_status_filter_reads_only_the_servers_that_can_show_it(cloud: Cloud) -> None:
    """``status=BUILD`` among 1,000 ACTIVE servers and a few building ones reads the
    building ones (in SQL by vm_state), not every visible row; a page's marker naming a
    server whose status changed since still pages on."""
    await _thousand_servers(cloud)
    project_id, user_id = await _project_and_user(cloud)
    start = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    building = [{"uuid": str(uuid.uuid4()), "display_name": f"new-{n}", "hostname": "new",
                 "project_id": project_id, "user_id": user_id, "reservation_id": "r-new",
                 "flavor_id": "1", "flavor": {}, "vm_state": "building",
                 "task_state": "spawning", "created_at": start + dt.timedelta(seconds=n)}
                for n in range(3)]
    runtime = cloud.stack.compute
    assert runtime is not None
    async with runtime.service() as svc:
        await svc.session.execute(insert(Instance), building)
    for collection in ("servers", "servers/detail"):
        with count_loaded(Instance) as loaded:
            listed = await cloud.client.get(f"/compute/v2.1/{collection}?status=BUILD",
                                            headers=cloud.headers())
        assert listed.status_code == 200, listed.text
        assert [s["name"] for s in listed.json()["servers"]] == ["new-2", "new-1", "new-0"]
        assert loaded.count <= len(building), f"{collection}: {loaded.count} rows loaded"
    first = await cloud.client.get("/compute/v2.1/servers?status=BUILD&limit=1",
                                   headers=cloud.headers())
    (link,) = first.json()["servers_links"]
    async with runtime.service() as svc:  # the marker's server finished building
        (await svc.instances.get(building[2]["uuid"])).vm_state = "active"
    second = await cloud.client.get(_path(link["href"]), headers=cloud.headers())
    assert second.status_code == 200, second.text
    assert [s["name"] for s in second.json()["servers"]] == ["new-1"]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_quota_usage_on_postgresql_reads_the_live_servers_usage_index(
        cloud: Cloud) -> None:
    """The usage a boot checks (count, vCPUs, RAM of the project's live servers) is an
    index-only scan of ``ix_instance_project_usage`` (the live servers' entries alone, only
    what the sum reads), not of the lists' wider ``ix_instance_project_live``. Scans of
    the table are priced out (``enable_seqscan``, ``enable_bitmapscan`` off): at 1,000 rows
    the planner may read the table whole, which past some size it no longer does."""
    await _thousand_servers(cloud)
    runtime = cloud.stack.compute
    assert runtime is not None
    engine = runtime.db.engine
    project_id, _ = await _project_and_user(cloud)
    async with runtime.service() as svc:
        with statements_of(engine) as ran:
            assert (await svc.quotas.usage(project_id))["instances"] == COUNT
    (usage,) = ran.selecting("instance")
    async with engine.connect() as conn:
        await conn.exec_driver_sql("ANALYZE instance")
        await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        await conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(str(row[0]) for row in
                         await conn.exec_driver_sql(f"EXPLAIN {usage[0]}", usage[1]))
        await conn.rollback()
    assert "Index Only Scan using ix_instance_project_usage" in plan, plan
