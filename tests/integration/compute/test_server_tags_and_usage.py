"""Server tags (``/servers/{id}/tags``) and ``os-simple-tenant-usage`` through the API of a
whole in-process cloud (fake hypervisor, memory bus, SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from stratus.compute.models import Instance
from tests.integration.compute import test_boot_flow
from tests.integration.compute.conftest import ROOT, assert_compute_error
from tests.integration.compute.test_boot_flow import Cloud, upload_image
from tests.integration.compute.test_server_actions import _act, _boot, _member_token

cloud = test_boot_flow.cloud  # the whole in-process cloud, three fake hosts


# Tags ---------------------------------------------------------------------------------------

async def test_the_six_tag_routes(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    sid = (await _boot(cloud, image_id))["id"]
    path = f"/servers/{sid}/tags"

    assert (await cloud.compute("GET", path)).json() == {"tags": []}
    added = await cloud.compute("PUT", f"{path}/web")
    assert added.status_code == 201 and added.content == b""
    assert added.headers["Location"] == f"{ROOT}/compute/v2.1/servers/{sid}/tags/web"
    again = await cloud.compute("PUT", f"{path}/web")
    assert again.status_code == 204
    assert (await cloud.compute("GET", f"{path}/web")).status_code == 204
    message = assert_compute_error(await cloud.compute("GET", f"{path}/db"), 404,
                                   "itemNotFound")
    assert message == f"Server {sid} has no tag 'db'"

    replaced = await cloud.compute("PUT", path, json={"tags": ["a", "b", "a", "web"]})
    assert replaced.status_code == 200 and replaced.json() == {"tags": ["a", "b", "web"]}
    shown = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    assert shown["tags"] == ["a", "b", "web"]
    assert "tags" not in (await cloud.compute("GET", f"/servers/{sid}",
                                              version="2.25")).json()["server"]

    # The list filters see them (2.26+).
    other = (await _boot(cloud, image_id, name="other"))["id"]
    assert (await cloud.compute("PUT", f"/servers/{other}/tags/b")).status_code == 201
    for query, expected in (("tags=a,b", {sid}), ("tags-any=a,b", {sid, other}),
                            ("not-tags=a,b", {other}), ("not-tags-any=web", {other})):
        listed = (await cloud.compute("GET", f"/servers?{query}")).json()["servers"]
        assert {s["id"] for s in listed} == expected, query

    deleted = await cloud.compute("DELETE", f"{path}/a")
    assert deleted.status_code == 204
    assert_compute_error(await cloud.compute("DELETE", f"{path}/a"), 404, "itemNotFound")
    assert (await cloud.compute("GET", path)).json() == {"tags": ["b", "web"]}
    assert (await cloud.compute("DELETE", path)).status_code == 204
    assert (await cloud.compute("GET", path)).json() == {"tags": []}


async def test_tag_limits_states_versions_and_policy(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    sid = (await _boot(cloud, image_id))["id"]
    path = f"/servers/{sid}/tags"
    for body in ({"tags": ["x" * 61]}, {"tags": ["a/b"]}, {"tags": ["a,b"]}, {"tags": [""]},
                 {"tags": [5]}, {"tags": "a"}, {"tag": ["a"]},
                 {"tags": [f"t{i}" for i in range(51)]}):
        assert_compute_error(await cloud.compute("PUT", path, json=body), 400, "badRequest")
    assert_compute_error(await cloud.compute("PUT", f"{path}/{'y' * 61}"), 400, "badRequest")
    assert_compute_error(await cloud.compute("PUT", f"{path}/a,b"), 400, "badRequest")
    fifty = [f"t{i}" for i in range(50)]
    assert (await cloud.compute("PUT", path, json={"tags": fifty})).status_code == 200
    message = assert_compute_error(await cloud.compute("PUT", f"{path}/one-more"), 400,
                                   "badRequest")
    assert message == "The number of tags exceeded the per-server limit 50"
    assert (await cloud.compute("GET", path)).json()["tags"] == fifty

    # Before 2.26 the routes do not exist.
    for method in ("GET", "PUT", "DELETE"):
        old = await cloud.compute(method, f"{path}/t1", version="2.25")
        assert_compute_error(old, 404, "itemNotFound")
    assert_compute_error(await cloud.compute("GET", path, version="2.25"), 404,
                         "itemNotFound")

    # A server in rescue takes no tag changes (Nova's states), but is read all the same.
    assert (await _act(cloud, sid, {"rescue": None})).status_code == 200
    await cloud.wait_for(sid, "RESCUE")
    message = assert_compute_error(await cloud.compute("DELETE", path), 409,
                                   "conflictingRequest")
    assert message == f"Cannot 'delete tags' instance {sid} while it is in vm_state rescued"
    assert len((await cloud.compute("GET", path)).json()["tags"]) == 50

    # Another project's member sees no such server.
    stranger = await _member_token(cloud, "tag-stranger", project="tag-elsewhere")
    response = await cloud.client.get(f"/compute/v2.1{path}", headers={
        "X-Auth-Token": stranger, "OpenStack-API-Version": "compute 2.96"})
    assert_compute_error(response, 404, "itemNotFound")


# Usage --------------------------------------------------------------------------------------

async def _set_times(cloud: Cloud, uuid: str, launched: dt.datetime,
                     terminated: dt.datetime | None = None) -> None:
    """Put a server's life where the test wants it on the clock (the database is real)."""
    async with cloud.stack.compute.db.session() as session:  # type: ignore[union-attr]
        await session.execute(update(Instance).where(Instance.uuid == uuid).values(
            launched_at=launched, terminated_at=terminated))


def _iso(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S")


async def test_usage_counts_hours_of_live_and_deleted_servers_and_pages(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    live = (await _boot(cloud, image_id, name="live"))["id"]
    gone = (await _boot(cloud, image_id, name="gone"))["id"]
    assert (await cloud.compute("DELETE", f"/servers/{gone}")).status_code == 204
    await cloud.wait_for(gone, "DELETED")
    await _set_times(cloud, live, now - dt.timedelta(hours=10))
    await _set_times(cloud, gone, now - dt.timedelta(hours=30), now - dt.timedelta(hours=26))

    start, end = now - dt.timedelta(hours=28), now - dt.timedelta(hours=4)
    query = f"start={_iso(start)}&end={_iso(end)}"
    listed = await cloud.compute("GET", f"/os-simple-tenant-usage?{query}&detailed=1")
    assert listed.status_code == 200, listed.text
    (project,) = listed.json()["tenant_usages"]
    # m1.tiny: 1 vCPU, 512 MB, 1 GB. live: 6 h in the window; gone: 2 h in it.
    assert round(project["total_hours"], 3) == 8.0
    assert round(project["total_vcpus_usage"], 3) == 8.0
    assert round(project["total_memory_mb_usage"], 1) == 8.0 * 512
    assert round(project["total_local_gb_usage"], 3) == 8.0
    assert project["start"] == start.strftime("%Y-%m-%dT%H:%M:%S.%f")
    usages = {u["name"]: u for u in project["server_usages"]}
    assert usages["gone"]["state"] == "terminated" and usages["gone"]["uptime"] == 4 * 3600
    assert usages["live"]["state"] == "active" and usages["live"]["ended_at"] is None
    assert {u["instance_id"] for u in usages.values()} == {live, gone}
    sdk_style = (await cloud.compute("GET", f"/os-simple-tenant-usage?{query}&detailed=True"))
    assert len(sdk_style.json()["tenant_usages"][0]["server_usages"]) == 2
    plain = (await cloud.compute("GET", f"/os-simple-tenant-usage?{query}")).json()
    assert "server_usages" not in plain["tenant_usages"][0]
    assert "tenant_usages_links" not in plain

    # Pages of one server: a next link with the marker, until a page comes back empty.
    project_id = project["tenant_id"]
    first = (await cloud.compute(
        "GET", f"/os-simple-tenant-usage/{project_id}?{query}&limit=1")).json()
    (link,) = first["tenant_usage_links"]
    first_id = first["tenant_usage"]["server_usages"][0]["instance_id"]
    assert link["rel"] == "next" and f"marker={first_id}" in link["href"]
    second = (await cloud.compute(
        "GET", f"/os-simple-tenant-usage/{project_id}?{query}&limit=1&marker={first_id}")).json()
    second_id = second["tenant_usage"]["server_usages"][0]["instance_id"]
    assert {first_id, second_id} == {live, gone}
    assert "tenant_usage_links" not in second
    last = await cloud.compute(
        "GET", f"/os-simple-tenant-usage/{project_id}?{query}&marker={second_id}")
    assert last.json() == {"tenant_usage": {}}

    # A window before both lived shows nothing; bad windows and markers are 400s.
    early = f"start={_iso(now - dt.timedelta(hours=50))}&end={_iso(now - dt.timedelta(hours=40))}"
    assert (await cloud.compute("GET", f"/os-simple-tenant-usage?{early}")).json() == {
        "tenant_usages": []}
    for bad in (f"start={_iso(end)}&end={_iso(start)}", "start=yesterday",
                f"{query}&marker=no-such-server", f"{query}&limit=-1", f"{query}&colour=red"):
        assert_compute_error(await cloud.compute("GET", f"/os-simple-tenant-usage?{bad}"),
                             400, "badRequest")


async def test_usage_policy_list_is_for_admins_show_for_the_project(cloud: Cloud) -> None:
    member = await _member_token(cloud, "usage-member", project="usage-project")
    headers = {"X-Auth-Token": member, "OpenStack-API-Version": "compute 2.96"}
    assert_compute_error(await cloud.client.get("/compute/v2.1/os-simple-tenant-usage",
                                                headers=headers), 403, "forbidden")
    projects = (await cloud.client.get("/identity/v3/projects?name=usage-project", headers={
        "X-Auth-Token": cloud.token})).json()["projects"]
    own = await cloud.client.get(f"/compute/v2.1/os-simple-tenant-usage/{projects[0]['id']}",
                                 headers=headers)
    assert own.status_code == 200 and own.json() == {"tenant_usage": {}}
    other = await cloud.client.get("/compute/v2.1/os-simple-tenant-usage/someone-else",
                                   headers=headers)
    assert_compute_error(other, 403, "forbidden")
