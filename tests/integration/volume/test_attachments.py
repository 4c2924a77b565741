"""Attachments (3.27+) as Nova drives them, and the manager path over the bus: on SQLite and
PostgreSQL, memory bus and RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from tests.integration.volume.conftest import CloudFactory, VolCloud, assert_cinder_error

CONNECTOR = {"host": "compute-1", "initiator": None, "ip": "127.0.0.1", "platform": "x86_64",
             "os_type": "linux", "multipath": False, "mode": "rw"}


async def _available(cloud: VolCloud, **attrs: object) -> dict[str, object]:
    volume = await cloud.create_volume(**attrs)
    return await cloud.wait_volume(str(volume["id"]), "available")


async def test_attach_flow_and_delete_while_attached(cloud: VolCloud) -> None:
    volume = await _available(cloud)
    vid = str(volume["id"])
    server = str(uuid.uuid4())
    # Below 3.27 the API does not exist.
    assert_cinder_error(await cloud.call("POST", "/attachments", version="3.26", json={
        "attachment": {"volume_uuid": vid, "instance_uuid": server}}), 404, "itemNotFound")
    created = await cloud.call("POST", "/attachments", json={"attachment": {
        "volume_uuid": vid, "instance_uuid": server, "connector": None}})
    assert created.status_code == 200, created.text
    attachment = created.json()["attachment"]
    assert attachment["status"] == "reserved" and attachment["instance"] == server
    assert attachment["connection_info"] == {}
    assert (await cloud.wait_volume(vid, "reserved"))["attachments"] == []

    updated = await cloud.call("PUT", f"/attachments/{attachment['id']}",
                               json={"attachment": {"connector": CONNECTOR}})
    assert updated.status_code == 200, updated.text
    info = updated.json()["attachment"]["connection_info"]
    assert info["driver_volume_type"] == "file"
    assert Path(info["data"]["path"]) == cloud.volumes_dir / f"volume-{vid}"
    assert f"volume-{vid}" in cloud.files()
    await cloud.wait_volume(vid, "attaching")

    done = await cloud.call("POST", f"/attachments/{attachment['id']}/action",
                            json={"os-complete": None})
    assert done.status_code == 204, done.text
    in_use = await cloud.wait_volume(vid, "in-use")
    (item,) = in_use["attachments"]
    assert item["server_id"] == server and item["attachment_id"] == attachment["id"]
    assert item["host_name"] == "compute-1"

    # Deleting an attached volume: 400, and nothing changes (row, status, file).
    before = (cloud.volumes_dir / f"volume-{vid}").stat()
    for query in ("", "?cascade=true"):
        assert_cinder_error(await cloud.call("DELETE", f"/volumes/{vid}{query}"), 400,
                            "badRequest")
    after = await cloud.wait_volume(vid, "in-use")
    assert after["attachments"] == in_use["attachments"]
    assert (cloud.volumes_dir / f"volume-{vid}").stat().st_mtime == before.st_mtime
    # Nor can an in-use volume be extended before 3.42 semantics are in place.
    assert_cinder_error(await cloud.call("POST", f"/volumes/{vid}/action",
                                         json={"os-extend": {"new_size": 2}}), 400,
                        "badRequest")
    listed = (await cloud.call("GET", f"/attachments?volume_id={vid}")).json()["attachments"]
    assert [a["id"] for a in listed] == [attachment["id"]]

    deleted = await cloud.call("DELETE", f"/attachments/{attachment['id']}")
    assert deleted.status_code == 200 and deleted.json() == {"attachments": []}
    assert (await cloud.wait_volume(vid, "available"))["attachments"] == []
    assert_cinder_error(await cloud.call("GET", f"/attachments/{attachment['id']}"), 404,
                        "itemNotFound")
    assert (await cloud.call("DELETE", f"/volumes/{vid}")).status_code == 202
    await cloud.wait_volume(vid, "deleted")


async def test_two_servers_race_for_one_volume(cloud: VolCloud) -> None:
    """Attaching one volume to two servers at once: exactly one wins, every time."""
    for _ in range(3):
        volume = await _available(cloud)
        vid = str(volume["id"])
        results = await asyncio.gather(*(cloud.call("POST", "/attachments", json={
            "attachment": {"volume_uuid": vid, "instance_uuid": str(uuid.uuid4()),
                           "connector": CONNECTOR}}) for _ in range(2)))
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 400], [r.text for r in results]
        loser = next(r for r in results if r.status_code == 400)
        assert_cinder_error(loser, 400, "badRequest")
        winner = next(r for r in results if r.status_code == 200).json()["attachment"]
        assert winner["connection_info"]["driver_volume_type"] == "file"
        listed = (await cloud.call("GET", f"/attachments?volume_id={vid}")).json()
        assert [a["id"] for a in listed["attachments"]] == [winner["id"]]
        await cloud.wait_volume(vid, "attaching")


async def test_attachment_bad_input(cloud: VolCloud) -> None:
    volume = await _available(cloud)
    vid = str(volume["id"])
    for body in ({"attachment": {}}, {"attachment": {"volume_uuid": vid, "bogus": 1}},
                 {"attachment": {"volume_uuid": vid, "mode": "xx"}}):
        assert_cinder_error(await cloud.call("POST", "/attachments", json=body), 400,
                            "badRequest")
    assert_cinder_error(await cloud.call("POST", "/attachments", json={"attachment": {
        "volume_uuid": str(uuid.uuid4())}}), 404, "itemNotFound")
    created = (await cloud.call("POST", "/attachments", json={"attachment": {
        "volume_uuid": vid, "instance_uuid": str(uuid.uuid4())}})).json()["attachment"]
    # Completing before a connector was given is refused.
    assert_cinder_error(await cloud.call("POST", f"/attachments/{created['id']}/action",
                                         json={"os-complete": None}), 400, "badRequest")
    assert_cinder_error(await cloud.call("POST", f"/attachments/{created['id']}/action",
                                         json={"os-other": None}), 400, "badRequest")
    # Another project neither sees nor uses it.
    other = await cloud.project()
    assert_cinder_error(await cloud.call("GET", f"/attachments/{created['id']}", other), 404,
                        "itemNotFound")
    assert_cinder_error(await cloud.call("POST", "/attachments", other, json={"attachment": {
        "volume_uuid": vid}}), 404, "itemNotFound")
    await cloud.call("DELETE", f"/attachments/{created['id']}")
    await cloud.wait_volume(vid, "available")


async def test_manager_over_the_bus(make_cloud: CloudFactory, bus_url: str) -> None:
    """volume-api and volume-manager over the memory bus and over RabbitMQ: create, extend,
    snapshot, connection info, delete."""
    cloud = await make_cloud(bus=bus_url)
    volume = await _available(cloud, size=1)
    vid = str(volume["id"])
    assert (await cloud.call("POST", f"/volumes/{vid}/action",
                             json={"os-extend": {"new_size": 2}})).status_code == 202
    assert (await cloud.wait_volume(vid, "available"))["size"] == 2
    snap = (await cloud.call("POST", "/snapshots", json={"snapshot": {
        "volume_id": vid}})).json()["snapshot"]
    await cloud.wait_snapshot(snap["id"], "available")
    attachment = (await cloud.call("POST", "/attachments", json={"attachment": {
        "volume_uuid": vid, "instance_uuid": str(uuid.uuid4()),
        "connector": CONNECTOR}})).json()["attachment"]
    assert attachment["connection_info"]["data"]["path"].endswith(f"volume-{vid}")
    await cloud.call("DELETE", f"/attachments/{attachment['id']}")
    await cloud.wait_volume(vid, "available")
    assert (await cloud.call("DELETE", f"/volumes/{vid}?cascade=true")).status_code == 202
    await cloud.wait_volume(vid, "deleted")
    await cloud.wait_snapshot(snap["id"], "deleted")
    assert cloud.files() == []


async def test_manager_restart_settles_stuck_volumes(cloud: VolCloud) -> None:
    """A volume a crashed manager left in ``creating`` becomes ``error`` when the manager
    starts again, and a half-written file is removed."""
    from stratus.volume.backends.file import PARTIAL_PREFIX, FileBackend
    from stratus.volume.manager import VolumeManager

    volume = await _available(cloud)
    vid = str(volume["id"])
    reset = await cloud.call("POST", f"/volumes/{vid}/action",
                             json={"os-reset_status": {"status": "creating"}})
    assert reset.status_code == 202
    partial = cloud.volumes_dir / f"{PARTIAL_PREFIX}volume-{uuid.uuid4()}"
    partial.write_bytes(b"half")
    manager = VolumeManager("storage-1", cloud.runtime, FileBackend(cloud.volumes_dir))
    await manager.start()
    await manager.stop()
    assert (await cloud.wait_volume(vid, "error"))["status"] == "error"
    assert not partial.exists()
    assert cloud.files() == []


async def test_delete_racing_attach(cloud: VolCloud) -> None:
    """A delete and an attachment sent at once: exactly one of them wins, and the volume
    ends consistent with the winner (deleted with no attachment, or reserved)."""
    for _ in range(3):
        volume = await _available(cloud)
        vid = str(volume["id"])
        delete, attach = await asyncio.gather(
            cloud.call("DELETE", f"/volumes/{vid}"),
            cloud.call("POST", "/attachments", json={"attachment": {
                "volume_uuid": vid, "instance_uuid": str(uuid.uuid4())}}))
        assert sorted([delete.status_code, attach.status_code]) in ([200, 400], [202, 400]), (
            delete.text, attach.text)
        if delete.status_code == 202:
            assert_cinder_error(attach, 400, "badRequest")
            await cloud.wait_volume(vid, "deleted")
            assert f"volume-{vid}" not in cloud.files()
        else:
            assert_cinder_error(delete, 400, "badRequest")
            assert (await cloud.wait_volume(vid, "reserved"))["status"] == "reserved"
            await cloud.call("DELETE", f"/attachments/{attach.json()['attachment']['id']}")
            await cloud.wait_volume(vid, "available")


async def test_attachments_of_several_servers_in_one_list(cloud: VolCloud) -> None:
    """``instance_id`` given once per server lists the attachments of any of them (what
    compute asks for a page of server views), and only theirs."""
    servers = [str(uuid.uuid4()) for _ in range(3)]
    made: dict[str, str] = {}
    for server in servers:
        volume = await _available(cloud)
        created = await cloud.call("POST", "/attachments", json={"attachment": {
            "volume_uuid": volume["id"], "instance_uuid": server, "connector": None}})
        assert created.status_code == 200, created.text
        made[server] = created.json()["attachment"]["id"]
    listed = await cloud.call("GET", "/attachments", params=[
        ("instance_id", servers[0]), ("instance_id", servers[2])])
    assert listed.status_code == 200, listed.text
    assert sorted(a["id"] for a in listed.json()["attachments"]) == sorted(
        [made[servers[0]], made[servers[2]]])
    one = (await cloud.call("GET", f"/attachments?instance_id={servers[1]}")).json()
    assert [a["id"] for a in one["attachments"]] == [made[servers[1]]]
