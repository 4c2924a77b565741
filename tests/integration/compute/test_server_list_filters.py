"""``GET /servers`` filters and sort keys per role and microversion (whole in-process
cloud, fake hypervisor, SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from stratus.compute.objects import VifInfo, VifIP
from tests.integration.compute import test_boot_flow
from tests.integration.compute.conftest import ComputeCloud, assert_compute_error
from tests.integration.compute.test_boot_flow import Cloud, boot_body, upload_image

cloud = test_boot_flow.cloud  # the whole in-process cloud, three fake hosts


async def _names(cloud: Cloud, query: str, version: str = "2.96",
                 token: str | None = None) -> list[str]:
    headers = cloud.headers(version)
    if token:
        headers["X-Auth-Token"] = token
    response = await cloud.client.get(f"/compute/v2.1/servers?{query}", headers=headers)
    assert response.status_code == 200, response.text
    return [s["name"] for s in response.json()["servers"]]


async def _fleet(cloud: Cloud) -> dict[str, dict[str, Any]]:
    image_id = await upload_image(cloud)
    specs = {"web-1": ["web", "prod"], "web-2": ["web"], "db-1": ["db", "prod"]}
    ids = {}
    for name, tags in specs.items():
        created = await cloud.compute("POST", "/servers",
                                      json=boot_body(image_id, name=name, tags=tags))
        assert created.status_code == 202, created.text
        ids[name] = created.json()["server"]["id"]
    servers = {n: await cloud.wait_for(i, "ACTIVE") for n, i in ids.items()}
    async with cloud.stack.compute.service() as svc:  # type: ignore[union-attr]
        for n, (name, server) in enumerate(servers.items()):
            row = await svc.instances.get(server["id"])
            row.network_info = [VifInfo(
                id=f"port-{n}", address=f"fa:16:3e:00:00:0{n}", network_id="net",
                network_name="private",
                ips=[VifIP(address=f"10.0.0.{10 + n}"),
                     VifIP(address=f"fd00::{10 + n}", version=6)]).model_dump()]
            if name == "db-1":
                row.locked = True
    return servers


async def test_filters_everyone_may_use(cloud: Cloud) -> None:
    servers = await _fleet(cloud)
    assert sorted(await _names(cloud, "name=^web-")) == ["web-1", "web-2"]
    assert await _names(cloud, "ip=" + quote(r"10\.0\.0\.12$")) == ["db-1"]
    assert await _names(cloud, "ip6=" + quote("fd00::10$")) == ["web-1"]
    assert sorted(await _names(cloud, "tags=web,prod")) == ["web-1"]
    assert sorted(await _names(cloud, "tags-any=db,prod")) == ["db-1", "web-1"]
    assert sorted(await _names(cloud, "not-tags=web,prod")) == ["db-1", "web-2"]
    assert sorted(await _names(cloud, "not-tags-any=prod")) == ["web-2"]
    assert len(await _names(cloud, "tags=db", version="2.25")) == 3, "tags need 2.26"
    assert await _names(cloud, "locked=true", version="2.73") == ["db-1"]
    assert_compute_error(await cloud.compute("GET", "/servers?locked=maybe", version="2.73"),
                         400, "badRequest")

    assert await _names(cloud, "sort_key=display_name&sort_dir=asc") == [
        "db-1", "web-1", "web-2"]
    assert await _names(cloud, "sort_key=display_name&sort_dir=desc") == [
        "web-2", "web-1", "db-1"]
    two_keys = "sort_key=locked&sort_dir=desc&sort_key=display_name&sort_dir=asc"
    assert await _names(cloud, two_keys) == ["db-1", "web-1", "web-2"]
    for bad in ("sort_key=bogus", "sort_dir=sideways", "sort_dir=asc&sort_dir=desc",
                "name=" + quote("(["), "changes-since=yesterday"):
        assert_compute_error(await cloud.compute("GET", f"/servers?{bad}"), 400, "badRequest")

    stop = await cloud.compute("POST", f"/servers/{servers['web-2']['id']}/action",
                               json={"os-stop": None})
    assert stop.status_code == 202
    await cloud.wait_for(servers["web-2"]["id"], "SHUTOFF")
    assert await _names(cloud, "status=SHUTOFF") == ["web-2"]
    assert sorted(await _names(cloud, "status=active")) == ["db-1", "web-1"]


async def test_time_windows_and_deleted(cloud: Cloud) -> None:
    servers = await _fleet(cloud)
    middle = dt.datetime.now(dt.UTC)
    stop = await cloud.compute("POST", f"/servers/{servers['web-1']['id']}/action",
                               json={"os-stop": None})
    assert stop.status_code == 202
    await cloud.wait_for(servers["web-1"]["id"], "SHUTOFF")
    deleted = await cloud.compute("DELETE", f"/servers/{servers['db-1']['id']}")
    assert deleted.status_code == 204
    await cloud.wait_for(servers["db-1"]["id"], "DELETED")

    since = quote(middle.isoformat())
    assert sorted(await _names(cloud, f"changes-since={since}")) == ["db-1", "web-1"]
    assert await _names(cloud, f"changes-before={since}", version="2.66") == ["web-2"]
    assert_compute_error(await cloud.compute(
        "GET", f"/servers?changes-since={since}&changes-before="
        f"{quote((middle - dt.timedelta(days=1)).isoformat())}", version="2.66"),
        400, "badRequest")
    assert await _names(cloud, "deleted=true") == ["db-1"]
    assert "db-1" not in await _names(cloud, "")


async def test_admin_only_filters(cloud: Cloud) -> None:
    servers = await _fleet(cloud)
    host = servers["web-1"]["OS-EXT-SRV-ATTR:host"]
    on_host = {n for n, s in servers.items() if s["OS-EXT-SRV-ATTR:host"] == host}
    assert set(await _names(cloud, f"host={host}")) == on_host
    assert set(await _names(cloud, f"node={host}")) == on_host
    assert len(await _names(cloud, "vm_state=active", version="2.1")) == 3
    assert await _names(cloud, "vm_state=stopped", version="2.1") == []

    helper = ComputeCloud(cloud.client, cloud.token)
    token, _, _ = await helper.member("lister")
    image_id = await upload_image(cloud)
    public = await cloud.client.patch(
        f"/image/v2/images/{image_id}", json=[
            {"op": "replace", "path": "/visibility", "value": "public"}],
        headers={**cloud.headers(None),
                 "Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert public.status_code == 200, public.text
    mine = await helper.compute("POST", "/servers", token=token, version="2.96",
                                json=boot_body(image_id, name="mine"))
    assert mine.status_code == 202, mine.text
    await cloud.wait_for(mine.json()["server"]["id"], "ACTIVE")
    # A member's host filter is ignored; its vm_state filter needs 2.83.
    assert await _names(cloud, "host=nowhere", token=token) == ["mine"]
    assert await _names(cloud, "vm_state=stopped", version="2.82", token=token) == ["mine"]
    assert await _names(cloud, "vm_state=stopped", version="2.83", token=token) == []
    assert await _names(cloud, "deleted=true", token=token) == ["mine"]
    assert await _names(cloud, "sort_key=host", token=token) == ["mine"]
    assert_compute_error(await helper.compute("GET", "/servers?all_tenants=1", token=token),
                         403, "forbidden")
