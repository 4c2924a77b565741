"""Volumes through volume-api and a volume-manager with the file backend (real files made
by qemu-img), on SQLite and PostgreSQL, over the in-process bus."""

from __future__ import annotations

import asyncio
import os
import subprocess

from tests.integration.volume.conftest import VolCloud, assert_cinder_error

GIB = 1 << 30


async def test_discovery_and_microversions(cloud: VolCloud) -> None:
    root = await cloud.client.get("/volume/")
    assert root.status_code == 300
    v3 = await cloud.client.get("/volume/v3/")  # no token: discovery is open
    assert v3.status_code == 200
    (doc,) = v3.json()["versions"]
    assert doc["id"] == "v3.0" and doc["min_version"] == "3.0" and doc["version"] == "3.60"
    assert doc["links"][-1]["href"] == "http://test/volume/v3/"
    listed = await cloud.call("GET", "/volumes", version="3.27")
    assert listed.headers["OpenStack-API-Version"] == "volume 3.27"
    latest = await cloud.call("GET", "/volumes", version="latest")
    assert latest.headers["OpenStack-API-Version"] == "volume 3.60"
    assert_cinder_error(await cloud.call("GET", "/volumes", version="3.99"), 406,
                        "notAcceptable")
    assert_cinder_error(await cloud.call("GET", "/volumes", version="3.x"), 400, "badRequest")
    # The catalog names block-storage and its volumev3 alias, the project filled in.
    token = await cloud.client.get("/identity/v3/auth/catalog", headers=cloud.admin.headers)
    urls = {e["type"]: e["endpoints"][0]["url"] for e in token.json()["catalog"]}
    assert urls["block-storage"] == urls["volumev3"] == (
        f"http://test/volume/v3/{cloud.admin.project_id}")
    # Another project's URL is refused.
    other = await cloud.project()
    response = await cloud.client.get(f"/volume/v3/{cloud.admin.project_id}/volumes",
                                      headers=other.headers)
    assert_cinder_error(response, 400, "badRequest")
    assert (await cloud.client.get(f"/volume/v3/{other.project_id}/volumes")).status_code == 401


async def test_volume_lifecycle(cloud: VolCloud) -> None:
    member = await cloud.project()
    created = await cloud.create_volume(member, size=1, name="data", description="d",
                                        metadata={"a": "1"})
    assert created["status"] == "creating" and created["size"] == 1
    assert created["volume_type"] == "__DEFAULT__" and created["bootable"] == "false"
    assert "os-vol-host-attr:host" not in created  # admin-only field
    # Create and update answer without Cinder's extended attributes (project, host,
    # migration, image metadata): clients validate those bodies against a schema without
    # them. Show and detail carry the project to its members.
    assert "os-vol-tenant-attr:tenant_id" not in created
    volume = await cloud.wait_volume(created["id"], "available", who=member)
    assert volume["os-vol-tenant-attr:tenant_id"] == member.project_id
    path = cloud.volumes_dir / f"volume-{volume['id']}"
    assert path.stat().st_size == GIB
    assert volume["metadata"] == {"a": "1"} and volume["attachments"] == []
    assert volume["group_id"] is None and volume["shared_targets"] is False  # 3.13, 3.48
    old = (await cloud.call("GET", f"/volumes/{volume['id']}", member, version="3.0")).json()
    assert "group_id" not in old["volume"] and "shared_targets" not in old["volume"]

    admin_view = (await cloud.call("GET", f"/volumes/{volume['id']}")).json()["volume"]
    assert admin_view["os-vol-host-attr:host"].startswith("storage-1@")

    summary = (await cloud.call("GET", "/volumes", member)).json()
    assert summary["volumes"] == [{"id": volume["id"], "name": "data",
                                   "links": volume["links"]}]
    updated = await cloud.call("PUT", f"/volumes/{volume['id']}", member,
                               json={"volume": {"name": "renamed", "description": None}})
    assert updated.status_code == 200 and updated.json()["volume"]["name"] == "renamed"
    assert updated.json()["volume"]["description"] is None
    assert "os-vol-tenant-attr:tenant_id" not in updated.json()["volume"]
    by_admin = await cloud.call("PUT", f"/volumes/{volume['id']}",
                                json={"volume": {"name": "renamed"}})
    assert not {k for k in by_admin.json()["volume"] if k.startswith("os-vol-")}
    detail = (await cloud.call("GET", "/volumes/detail", member)).json()["volumes"]
    assert detail[0]["os-vol-tenant-attr:tenant_id"] == member.project_id

    # Metadata.
    meta = await cloud.call("POST", f"/volumes/{volume['id']}/metadata", member,
                            json={"metadata": {"b": "2"}})
    assert meta.json() == {"metadata": {"a": "1", "b": "2"}}
    item = await cloud.call("GET", f"/volumes/{volume['id']}/metadata/b", member)
    assert item.json() == {"meta": {"b": "2"}}
    assert (await cloud.call("DELETE", f"/volumes/{volume['id']}/metadata/a",
                             member)).status_code == 200
    assert_cinder_error(await cloud.call("GET", f"/volumes/{volume['id']}/metadata/a",
                                         member), 404, "itemNotFound")

    # Extend: the file grows; bootable flag.
    extend = await cloud.call("POST", f"/volumes/{volume['id']}/action", member,
                              json={"os-extend": {"new_size": 2}})
    assert extend.status_code == 202, extend.text
    volume = await cloud.wait_volume(volume["id"], "available", who=member)
    assert volume["size"] == 2 and path.stat().st_size == 2 * GIB
    assert_cinder_error(await cloud.call("POST", f"/volumes/{volume['id']}/action", member,
                                         json={"os-extend": {"new_size": 1}}), 400,
                        "badRequest")
    boot = await cloud.call("POST", f"/volumes/{volume['id']}/action", member,
                            json={"os-set_bootable": {"bootable": True}})
    assert boot.status_code == 200
    assert (await cloud.wait_volume(volume["id"], "available", who=member))["bootable"] == (
        "true")

    # Snapshot, then a volume from it and a clone; a volume with snapshots stays.
    snap = await cloud.call("POST", "/snapshots", member, json={"snapshot": {
        "volume_id": volume["id"], "name": "s1", "force": False, "description": None,
        "metadata": {}}})
    assert snap.status_code == 202, snap.text
    snapshot = await cloud.wait_snapshot(snap.json()["snapshot"]["id"], "available")
    assert snapshot["size"] == 2 and snapshot["volume_id"] == volume["id"]
    assert (cloud.volumes_dir / f"snapshot-{snapshot['id']}").exists()
    from_snap = await cloud.create_volume(member, size=None, snapshot_id=snapshot["id"])
    from_snap = await cloud.wait_volume(from_snap["id"], "available", who=member)
    assert from_snap["size"] == 2 and from_snap["snapshot_id"] == snapshot["id"]
    clone = await cloud.create_volume(member, size=3, source_volid=volume["id"])
    clone = await cloud.wait_volume(clone["id"], "available", who=member)
    assert (cloud.volumes_dir / f"volume-{clone['id']}").stat().st_size == 3 * GIB
    assert_cinder_error(await cloud.call("DELETE", f"/volumes/{volume['id']}", member), 400,
                        "badRequest")
    assert (await cloud.call("DELETE", f"/snapshots/{snapshot['id']}",
                             member)).status_code == 202
    await cloud.wait_snapshot(snapshot["id"], "deleted")
    assert not (cloud.volumes_dir / f"snapshot-{snapshot['id']}").exists()

    # Delete: the row leaves every listing, the file goes.
    for vid in (volume["id"], from_snap["id"], clone["id"]):
        assert (await cloud.call("DELETE", f"/volumes/{vid}", member)).status_code == 202
        await cloud.wait_volume(vid, "deleted", who=member)
    assert cloud.files() == []
    assert (await cloud.call("GET", "/volumes/detail", member)).json()["volumes"] == []


async def test_list_filters_sort_and_paging(cloud: VolCloud) -> None:
    member = await cloud.project()
    ids = []
    for i in range(5):
        volume = await cloud.create_volume(member, name=f"v{i}", size=1 + i % 2,
                                           metadata={"parity": str(i % 2)})
        ids.append(volume["id"])
    for vid in ids:
        await cloud.wait_volume(vid, "available", who=member)
    detail = (await cloud.call("GET", "/volumes/detail", member)).json()
    assert [v["id"] for v in detail["volumes"]] == ids[::-1]  # newest first
    assert "volumes_links" not in detail
    by_name = (await cloud.call("GET", "/volumes/detail?name=v3", member)).json()["volumes"]
    assert [v["id"] for v in by_name] == [ids[3]]
    odd = (await cloud.call("GET", "/volumes/detail?metadata={'parity':'1'}",
                            member)).json()["volumes"]
    assert sorted(v["id"] for v in odd) == sorted([ids[1], ids[3]])
    by_size = (await cloud.call("GET", "/volumes/detail?sort=size:asc,name:desc",
                                member)).json()["volumes"]
    assert [v["name"] for v in by_size] == ["v4", "v2", "v0", "v3", "v1"]
    # Pages of two, following volumes_links to the end.
    seen: list[str] = []
    url = "/volumes?limit=2"
    while url:
        page = (await cloud.call("GET", url, member)).json()
        seen += [v["id"] for v in page["volumes"]]
        links = page.get("volumes_links") or []
        url = links[0]["href"].split(f"/v3/{member.project_id}", 1)[1] if links else ""
    assert seen == ids[::-1]
    counted = (await cloud.call("GET", "/volumes?with_count=true&limit=1", member)).json()
    assert counted["count"] == 5 and len(counted["volumes"]) == 1
    assert_cinder_error(await cloud.call("GET", "/volumes?sort=bogus:asc", member), 400,
                        "badRequest")
    assert_cinder_error(await cloud.call("GET", "/volumes?marker=nope", member), 400,
                        "badRequest")
    # Projects see only their own; an admin sees all with all_tenants.
    other = await cloud.project()
    assert (await cloud.call("GET", "/volumes", other)).json()["volumes"] == []
    assert_cinder_error(await cloud.call("GET", f"/volumes/{ids[0]}", other), 404,
                        "itemNotFound")
    everyone = (await cloud.call("GET", "/volumes?all_tenants=1")).json()["volumes"]
    assert set(ids) <= {v["id"] for v in everyone}


async def test_bad_input(cloud: VolCloud) -> None:
    member = await cloud.project()
    for body in ({"size": 0}, {"size": "abc"}, {"size": -1}, {"size": 1, "bogus": 1},
                 {"size": 1, "name": "x" * 256}, {"name": "no size"},
                 {"size": 1, "availability_zone": "elsewhere"},
                 {"size": 1, "metadata": {"k": 1}}):
        response = await cloud.call("POST", "/volumes", member, json={"volume": body})
        assert_cinder_error(response, 400, "badRequest")
    assert_cinder_error(await cloud.call("POST", "/volumes", member, content=b"{not json",
                                         headers={"Content-Type": "application/json"}),
                        400, "badRequest")
    assert_cinder_error(await cloud.call("POST", "/volumes", member, json={"volume": {
        "size": 1, "volume_type": "nosuch"}}), 404, "itemNotFound")
    assert_cinder_error(await cloud.call("GET", "/volumes/not-a-uuid", member), 404,
                        "itemNotFound")
    volume = await cloud.create_volume(member)
    await cloud.wait_volume(volume["id"], "available", who=member)
    for action in ({"os-extend": {"new_size": "x"}}, {"os-extend": {}}, {"os-bogus": {}},
                   {"os-set_bootable": {"bootable": "maybe"}}):
        assert_cinder_error(await cloud.call("POST", f"/volumes/{volume['id']}/action",
                                             member, json=action), 400, "badRequest")
    # Admin-only actions and volume types.
    assert_cinder_error(await cloud.call("POST", f"/volumes/{volume['id']}/action", member,
                                         json={"os-reset_status": {"status": "error"}}),
                        403, "forbidden")
    assert_cinder_error(await cloud.call("POST", "/types", member, json={
        "volume_type": {"name": "fast"}}), 403, "forbidden")
    assert_cinder_error(await cloud.call("POST", "/snapshots", member, json={"snapshot": {
        "volume_id": "00000000-0000-0000-0000-000000000000"}}), 404, "itemNotFound")


async def test_volume_types(cloud: VolCloud) -> None:
    created = await cloud.call("POST", "/types", json={"volume_type": {
        "name": "fast", "description": "SSD", "extra_specs": {"tier": "1"},
        "os-volume-type-access:is_public": True}})
    assert created.status_code == 200, created.text
    fast = created.json()["volume_type"]
    assert fast["name"] == "fast" and fast["extra_specs"] == {"tier": "1"}
    assert_cinder_error(await cloud.call("POST", "/types", json={"volume_type": {
        "name": "fast"}}), 409, "conflictingRequest")
    member = await cloud.project()
    names = {t["name"] for t in (await cloud.call("GET", "/types", member)).json()[
        "volume_types"]}
    assert names == {"__DEFAULT__", "fast"}
    default = (await cloud.call("GET", "/types/default", member)).json()["volume_type"]
    assert default["name"] == "__DEFAULT__"
    volume = await cloud.create_volume(member, volume_type="fast")
    assert volume["volume_type"] == "fast"
    await cloud.wait_volume(volume["id"], "available", who=member)
    assert_cinder_error(await cloud.call("DELETE", f"/types/{fast['id']}"), 400, "badRequest")
    assert_cinder_error(await cloud.call("DELETE", f"/types/{default['id']}"), 400,
                        "badRequest")
    specs = await cloud.call("POST", f"/types/{fast['id']}/extra_specs",
                             json={"extra_specs": {"x": "y"}})
    assert specs.json() == {"extra_specs": {"x": "y"}}
    await cloud.call("DELETE", f"/volumes/{volume['id']}", member)
    await cloud.wait_volume(volume["id"], "deleted", who=member)
    assert (await cloud.call("DELETE", f"/types/{fast['id']}")).status_code == 202
    assert_cinder_error(await cloud.call("GET", f"/types/{fast['id']}"), 404, "itemNotFound")


async def test_quotas_and_limits(cloud: VolCloud) -> None:
    member = await cloud.project()
    update = await cloud.call("PUT", f"/os-quota-sets/{member.project_id}", json={
        "quota_set": {"gigabytes": 5, "volumes": 3, "snapshots": 1}})
    assert update.status_code == 200, update.text
    assert_cinder_error(await cloud.call("PUT", f"/os-quota-sets/{member.project_id}",
                                         member, json={"quota_set": {"volumes": 99}}),
                        403, "forbidden")
    over = await cloud.call("POST", "/volumes", member, json={"volume": {"size": 6}})
    assert "gigabytes" in assert_cinder_error(over, 413, "overLimit")

    # Eight creates at once against a quota of three volumes: exactly three are made.
    results = await asyncio.gather(*(cloud.call("POST", "/volumes", member,
                                                json={"volume": {"size": 1}})
                                     for _ in range(8)))
    codes = sorted(r.status_code for r in results)
    assert codes == [202] * 3 + [413] * 5, codes
    for r in results:
        if r.status_code == 413:
            assert_cinder_error(r, 413, "overLimit")
    made = [r.json()["volume"]["id"] for r in results if r.status_code == 202]
    for vid in made:
        await cloud.wait_volume(vid, "available", who=member)
    usage = (await cloud.call("GET", f"/os-quota-sets/{member.project_id}?usage=true",
                              member)).json()["quota_set"]
    assert usage["volumes"] == {"limit": 3, "in_use": 3, "reserved": 0, "allocated": 0}
    assert usage["gigabytes"]["in_use"] == 3
    limits = (await cloud.call("GET", "/limits", member)).json()["limits"]["absolute"]
    assert limits["maxTotalVolumes"] == 3 and limits["totalVolumesUsed"] == 3
    assert limits["totalGigabytesUsed"] == 3 and limits["maxTotalVolumeGigabytes"] == 5
    # Snapshots count against snapshots and gigabytes; extend against gigabytes.
    snap = await cloud.call("POST", "/snapshots", member, json={"snapshot": {
        "volume_id": made[0]}})
    assert snap.status_code == 202
    assert_cinder_error(await cloud.call("POST", "/snapshots", member, json={"snapshot": {
        "volume_id": made[1]}}), 413, "overLimit")
    assert_cinder_error(await cloud.call("POST", f"/volumes/{made[1]}/action", member,
                                         json={"os-extend": {"new_size": 3}}), 413,
                        "overLimit")
    # Deleting gives the quota back.
    await cloud.wait_snapshot(snap.json()["snapshot"]["id"], "available")
    await cloud.call("DELETE", f"/snapshots/{snap.json()['snapshot']['id']}", member)
    await cloud.wait_snapshot(snap.json()["snapshot"]["id"], "deleted")
    await cloud.call("DELETE", f"/volumes/{made[2]}", member)
    await cloud.wait_volume(made[2], "deleted", who=member)
    await cloud.create_volume(member, size=1)


async def test_failed_backend_create_leaves_error_and_no_file(make_cloud: object) -> None:
    """An image whose data is not the disk format it claims: qemu-img fails writing it into
    the new volume; the volume is ``error`` and its half-made file is gone."""
    cloud: VolCloud = await make_cloud(image={"require_format_match": False})  # type: ignore[operator]
    member = await cloud.project()
    image = (await cloud.client.post("/image/v2/images", headers=member.headers, json={
        "name": "broken", "disk_format": "qcow2", "container_format": "bare"})).json()
    upload = await cloud.client.put(f"/image/v2/images/{image['id']}/file",
                                    headers={**member.headers,
                                             "Content-Type": "application/octet-stream"},
                                    content=b"not a qcow2 disk" + bytes(4096))
    assert upload.status_code == 204, upload.text
    volume = await cloud.create_volume(member, size=1, imageRef=image["id"])
    volume = await cloud.wait_volume(volume["id"], "available", "error", who=member)
    assert volume["status"] == "error"
    assert cloud.files() == []
    async with cloud.runtime.service() as svc:
        reason = (await svc.volumes.get(volume["id"])).error_reason or ""
    assert "qemu-img convert failed" in reason
    # It can be deleted, and counts against nothing afterwards.
    assert (await cloud.call("DELETE", f"/volumes/{volume['id']}", member)).status_code == 202
    await cloud.wait_volume(volume["id"], "deleted", who=member)


async def test_volume_from_image(cloud: VolCloud) -> None:
    member = await cloud.project()
    data = os.urandom(1 << 20)
    image = (await cloud.client.post("/image/v2/images", headers=member.headers, json={
        "name": "raw", "disk_format": "raw", "container_format": "bare"})).json()
    upload = await cloud.client.put(f"/image/v2/images/{image['id']}/file",
                                    headers={**member.headers,
                                             "Content-Type": "application/octet-stream"},
                                    content=data)
    assert upload.status_code == 204, upload.text
    volume = await cloud.create_volume(member, size=1, imageRef=image["id"])
    volume = await cloud.wait_volume(volume["id"], "available", "error", who=member)
    assert volume["status"] == "available" and volume["bootable"] == "true"
    assert volume["volume_image_metadata"]["image_id"] == image["id"]
    path = cloud.volumes_dir / f"volume-{volume['id']}"
    with path.open("rb") as handle:
        assert handle.read(len(data)) == data
    assert path.stat().st_size == GIB
    missing = await cloud.call("POST", "/volumes", member, json={"volume": {
        "size": 1, "imageRef": "00000000-0000-0000-0000-000000000000"}})
    assert_cinder_error(missing, 400, "badRequest")


async def test_without_qemu_img_volumes_work_and_conversions_are_refused(
        make_cloud: object, tmp_path: object) -> None:
    """A volume host without qemu-img: empty volumes (sparse files), extending them and raw
    images work; a qcow2 image is refused at the API with a 503 naming the host, the
    program and its package, and nothing is written or counted."""
    cloud: VolCloud = await make_cloud(qemu_img="/nonexistent/qemu-img")  # type: ignore[operator]
    member = await cloud.project()
    empty = await cloud.create_volume(member, size=1)
    empty = await cloud.wait_volume(empty["id"], "available", "error", who=member)
    assert empty["status"] == "available"
    path = cloud.volumes_dir / f"volume-{empty['id']}"
    assert path.stat().st_size == GIB and path.stat().st_blocks * 512 < 1 << 20
    extend = await cloud.call("POST", f"/volumes/{empty['id']}/action", member,
                              json={"os-extend": {"new_size": 2}})
    assert extend.status_code == 202, extend.text
    assert (await cloud.wait_volume(empty["id"], "available", "error_extending",
                                    who=member))["size"] == 2
    assert path.stat().st_size == 2 * GIB

    images = {}
    for disk_format, data in (("raw", os.urandom(65536)),
                              ("qcow2", _qcow2_disk(tmp_path))):  # type: ignore[arg-type]
        image = (await cloud.client.post("/image/v2/images", headers=member.headers, json={
            "name": disk_format, "disk_format": disk_format,
            "container_format": "bare"})).json()
        upload = await cloud.client.put(f"/image/v2/images/{image['id']}/file",
                                        headers={**member.headers,
                                                 "Content-Type": "application/octet-stream"},
                                        content=data)
        assert upload.status_code == 204, upload.text
        images[disk_format] = image["id"]
    raw = await cloud.create_volume(member, size=1, imageRef=images["raw"])
    assert (await cloud.wait_volume(raw["id"], "available", "error",
                                    who=member))["status"] == "available"

    before = (await cloud.call("GET", "/volumes", member)).json()["volumes"]
    refused = await cloud.call("POST", "/volumes", member, json={"volume": {
        "size": 1, "imageRef": images["qcow2"]}})
    message = assert_cinder_error(refused, 503, "serviceUnavailable")
    assert "qemu-img is not installed on host storage-1" in message
    assert "apt-get install qemu-utils" in message
    assert (await cloud.call("GET", "/volumes", member)).json()["volumes"] == before


def _qcow2_disk(tmp_path: os.PathLike[str]) -> bytes:
    """A small real qcow2 disk, made by this machine's qemu-img (the test's volume host is
    the one without it)."""
    path = os.path.join(tmp_path, "disk.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "64M"], check=True)
    with open(path, "rb") as handle:
        return handle.read()


async def test_no_manager_up_means_error_not_creating(make_cloud: object) -> None:
    cloud: VolCloud = await make_cloud(units=("identity-api", "volume-api"))  # type: ignore[operator]
    volume = await cloud.create_volume(size=1)
    assert volume["status"] == "error"
    assert (await cloud.call("DELETE", f"/volumes/{volume['id']}")).status_code == 202
    await cloud.wait_volume(volume["id"], "deleted")


async def test_availability_zones_and_extensions(cloud: VolCloud) -> None:
    """The zones of the volume hosts, available while one is up; the served extensions."""
    member = await cloud.project()
    for _ in range(100):  # the manager reports itself shortly after start
        zones = (await cloud.call("GET", "/os-availability-zone", member)).json()
        if zones["availabilityZoneInfo"]:
            break
        await asyncio.sleep(0.05)
    assert zones == {"availabilityZoneInfo": [{"zoneName": "nova",
                                               "zoneState": {"available": True}}]}
    extensions = (await cloud.call("GET", "/extensions", member)).json()["extensions"]
    aliases = {e["alias"] for e in extensions}
    assert {"os-availability-zone", "os-vol-tenant-attr", "os-volume-actions",
            "os-quota-sets", "os-volume-transfer"} <= aliases
    assert "backups" not in aliases  # not served
    assert all(set(e) == {"alias", "name", "description", "links", "updated"}
               for e in extensions)


async def test_no_volume_host_means_no_zone(make_cloud: object) -> None:
    cloud: VolCloud = await make_cloud(units=("identity-api", "volume-api"))  # type: ignore[operator]
    zones = (await cloud.call("GET", "/os-availability-zone")).json()
    assert zones == {"availabilityZoneInfo": []}


async def test_snapshot_extended_attributes_only_on_show_and_detail(cloud: VolCloud) -> None:
    """Cinder adds progress and project to show and /snapshots/detail; create, update and
    the plain list answer without them (clients validate those with no other key)."""
    member = await cloud.project()
    volume = await cloud.create_volume(member, size=1)
    await cloud.wait_volume(volume["id"], "available", who=member)
    extended = {"os-extended-snapshot-attributes:progress",
                "os-extended-snapshot-attributes:project_id"}
    created = await cloud.call("POST", "/snapshots", member, json={"snapshot": {
        "volume_id": volume["id"], "name": "s"}})
    assert created.status_code == 202, created.text
    snapshot = created.json()["snapshot"]
    assert not extended & set(snapshot)
    shown = await cloud.wait_snapshot(snapshot["id"], "available")
    assert shown["os-extended-snapshot-attributes:project_id"] == member.project_id
    assert shown["os-extended-snapshot-attributes:progress"] == "100%"
    plain = (await cloud.call("GET", "/snapshots", member)).json()["snapshots"]
    assert [s["id"] for s in plain] == [snapshot["id"]] and not extended & set(plain[0])
    detail = (await cloud.call("GET", "/snapshots/detail", member)).json()["snapshots"]
    assert extended <= set(detail[0])
    updated = await cloud.call("PUT", f"/snapshots/{snapshot['id']}", member,
                               json={"snapshot": {"name": "renamed"}})
    assert updated.json()["snapshot"]["name"] == "renamed"
    assert not extended & set(updated.json()["snapshot"])


async def test_a_full_page_links_on_as_cinder_does(cloud: VolCloud) -> None:
    """Cinder links to a next page from every full page, even the last one (whose next
    page is empty and has no link); a page short of the limit has no link."""
    member = await cloud.project()
    ids = {(await cloud.create_volume(member, size=1))["id"] for _ in range(2)}
    for path in ("/volumes", "/volumes/detail"):
        full = (await cloud.call("GET", f"{path}?limit=2", member)).json()
        assert {v["id"] for v in full["volumes"]} == ids
        (link,) = full["volumes_links"]
        assert link["rel"] == "next" and "limit=2" in link["href"]
        marker = link["href"].split("marker=")[1].split("&")[0]
        empty = (await cloud.call("GET", f"{path}?limit=2&marker={marker}", member)).json()
        assert empty == {"volumes": []}
        short = (await cloud.call("GET", f"{path}?limit=3", member)).json()
        assert len(short["volumes"]) == 2 and "volumes_links" not in short


async def test_snapshot_metadata_and_a_null_volume(cloud: VolCloud) -> None:
    member = await cloud.project()
    volume = await cloud.create_volume(member, size=1)
    await cloud.wait_volume(volume["id"], "available", who=member)
    created = await cloud.call("POST", "/snapshots", member, json={"snapshot": {
        "volume_id": volume["id"], "metadata": {"a": "1"}}})
    snapshot_id = created.json()["snapshot"]["id"]
    await cloud.wait_snapshot(snapshot_id, "available")
    path = f"/snapshots/{snapshot_id}/metadata"
    assert (await cloud.call("GET", path, member)).json() == {"metadata": {"a": "1"}}
    merged = await cloud.call("POST", path, member, json={"metadata": {"b": "2"}})
    assert merged.json() == {"metadata": {"a": "1", "b": "2"}}
    replaced = await cloud.call("PUT", path, member, json={"metadata": {"c": "3"}})
    assert replaced.json() == {"metadata": {"c": "3"}}
    item = await cloud.call("PUT", f"{path}/d", member, json={"meta": {"d": "4"}})
    assert item.json() == {"meta": {"d": "4"}}
    assert (await cloud.call("GET", f"{path}/d", member)).json() == {"meta": {"d": "4"}}
    assert_cinder_error(await cloud.call("PUT", f"{path}/d", member,
                                         json={"meta": {"e": "5"}}), 400, "badRequest")
    assert (await cloud.call("DELETE", f"{path}/d", member)).status_code == 200
    assert_cinder_error(await cloud.call("GET", f"{path}/d", member), 404, "itemNotFound")
    shown = await cloud.call("GET", f"/snapshots/{snapshot_id}", member)
    assert shown.json()["snapshot"]["metadata"] == {"c": "3"}
    other = await cloud.project()
    assert_cinder_error(await cloud.call("GET", path, other), 404, "itemNotFound")
    # The volume is required, but may be null: a volume not found.
    null = await cloud.call("POST", "/snapshots", member, json={"snapshot": {
        "volume_id": None, "name": "s"}})
    assert_cinder_error(null, 404, "itemNotFound")
    missing = await cloud.call("POST", "/snapshots", member, json={"snapshot": {"name": "s"}})
    assert_cinder_error(missing, 400, "badRequest")


async def test_the_readonly_flag_shows_in_the_metadata(cloud: VolCloud) -> None:
    """``os-update_readonly_flag`` sets admin metadata Cinder shows with the volume's own
    metadata ("True"/"False"); the user's metadata calls neither show nor change it."""
    member = await cloud.project()
    volume = await cloud.create_volume(member, size=1, metadata={"a": "1"})
    vid = volume["id"]
    assert (await cloud.wait_volume(vid, "available", who=member))["metadata"] == {"a": "1"}
    for flag in (True, False):
        set_flag = await cloud.call("POST", f"/volumes/{vid}/action", member,
                                    json={"os-update_readonly_flag": {"readonly": flag}})
        assert set_flag.status_code == 202, set_flag.text
        shown = (await cloud.call("GET", f"/volumes/{vid}", member)).json()["volume"]
        assert shown["metadata"] == {"a": "1", "readonly": str(flag)}
    detail = (await cloud.call("GET", "/volumes/detail", member)).json()["volumes"]
    assert detail[0]["metadata"]["readonly"] == "False"
    own = await cloud.call("PUT", f"/volumes/{vid}/metadata", member,
                           json={"metadata": {"b": "2"}})
    assert own.json() == {"metadata": {"b": "2"}}
    shown = (await cloud.call("GET", f"/volumes/{vid}", member)).json()["volume"]
    assert shown["metadata"] == {"b": "2", "readonly": "False"}
