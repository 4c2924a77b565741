"""Block device mappings in a boot request, end to end in one process (fake driver): data
volumes made or taken by the compute host and attached, ephemeral and swap disks, the
refusals with nothing made, and a failed build that leaves no volume behind; on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.compute.test_boot_flow import boot_body, upload_image
from tests.integration.volume.test_server_volumes import Cloud, _volume
from tests.integration.volume.test_server_volumes import cloud as cloud


def _with_disks(image_id: str, *disks: dict[str, Any], name: str = "vm",
                **extra: Any) -> dict[str, Any]:
    body = boot_body(image_id, name=name, **extra)
    body["server"]["block_device_mapping_v2"] += list(disks)
    return body


async def _gone(cloud: Cloud, path: str) -> None:
    for _ in range(400):
        if (await cloud.volume("GET", path)).status_code == 404:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} is still there")


async def _server_gone(cloud: Cloud, sid: str) -> None:
    for _ in range(400):
        if (await cloud.compute("GET", f"/servers/{sid}")).status_code == 404:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"server {sid} was not deleted")


async def test_blank_and_existing_data_volumes(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    existing = await _volume(cloud)
    created = await cloud.compute("POST", "/servers", version="2.42", json=_with_disks(
        image_id,
        {"source_type": "blank", "destination_type": "volume", "volume_size": 1,
         "delete_on_termination": True, "boot_index": -1, "tag": "scratch"},
        {"source_type": "volume", "destination_type": "volume", "uuid": existing["id"],
         "boot_index": None}))
    assert created.status_code == 202, created.text
    sid = created.json()["server"]["id"]
    server = await cloud.wait("compute", f"/servers/{sid}", "server", "ACTIVE")

    listed = (await cloud.compute("GET", f"/servers/{sid}/os-volume_attachments",
                                  version="2.1")).json()["volumeAttachments"]
    devices = {a["volumeId"]: a["device"] for a in listed}
    assert devices[existing["id"]] == "/dev/vdc"
    (blank_id,) = [v for v, d in devices.items() if d == "/dev/vdb"]
    blank = await cloud.wait("volume", f"/volumes/{blank_id}", "volume", "in-use")
    assert blank["size"] == 1 and blank["attachments"][0]["server_id"] == sid
    in_use = await cloud.wait("volume", f"/volumes/{existing['id']}", "volume", "in-use")
    assert in_use["attachments"][0]["device"] == "/dev/vdc"
    attached = cloud.driver(server).volumes(sid)
    assert attached["/dev/vdb"]["data"]["path"].endswith(f"volume-{blank_id}")
    assert attached["/dev/vdc"]["data"]["path"].endswith(f"volume-{existing['id']}")
    assert {v["id"] for v in server["os-extended-volumes:volumes_attached"]} == {
        blank_id, existing["id"]}

    assert (await cloud.compute("DELETE", f"/servers/{sid}")).status_code == 204
    await _gone(cloud, f"/volumes/{blank_id}")  # delete_on_termination: it goes along
    kept = await cloud.wait("volume", f"/volumes/{existing['id']}", "volume", "available")
    assert kept["attachments"] == []


async def test_volumes_from_an_image_and_a_snapshot_and_local_disks(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    source = await _volume(cloud)
    snap = await cloud.volume("POST", "/snapshots", json={"snapshot": {
        "volume_id": source["id"], "name": "s"}})
    assert snap.status_code == 202, snap.text
    snapshot = await cloud.wait("volume", f"/snapshots/{snap.json()['snapshot']['id']}",
                                "snapshot", "available")
    flavor = await cloud.compute("POST", "/flavors", json={"flavor": {
        "name": "eph", "ram": 64, "vcpus": 1, "disk": 1, "OS-FLV-EXT-DATA:ephemeral": 2,
        "swap": 512}})
    assert flavor.status_code == 200, flavor.text
    created = await cloud.compute("POST", "/servers", json=_with_disks(
        image_id,
        {"source_type": "snapshot", "uuid": snapshot["id"], "destination_type": "volume",
         "delete_on_termination": True, "device_name": "/dev/vdf"},
        {"source_type": "image", "uuid": image_id, "destination_type": "volume",
         "volume_size": 1, "delete_on_termination": True},
        {"source_type": "blank", "destination_type": "local", "guest_format": "swap",
         "volume_size": 256},
        flavor=flavor.json()["flavor"]["id"]))
    assert created.status_code == 202, created.text
    sid = created.json()["server"]["id"]
    server = await cloud.wait("compute", f"/servers/{sid}", "server", "ACTIVE")
    driver = cloud.driver(server)
    # The flavor's ephemeral disk (none asked for) first, then the swap asked for (256 MiB),
    # then the volumes: the one named vdf, the other on the next free name.
    assert driver.local_disks(sid) == {"/dev/vdb": ("ephemeral", 2048),
                                       "/dev/vdc": ("swap", 256)}
    assert set(driver.volumes(sid)) == {"/dev/vdd", "/dev/vdf"}
    volumes = (await cloud.volume("GET", "/volumes/detail")).json()["volumes"]
    made = [v for v in volumes if v["id"] != source["id"]]
    assert sorted((v["snapshot_id"] is not None, v["bootable"]) for v in made) == [
        (False, "true"), (True, "false")]
    assert all(v["status"] == "in-use" for v in made)
    assert (await cloud.compute("DELETE", f"/servers/{sid}")).status_code == 204
    for volume in made:
        await _gone(cloud, f"/volumes/{volume['id']}")


@pytest.mark.parametrize(("disk", "message"), [
    ({"source_type": "blank", "destination_type": "volume"}, "non-zero size"),
    ({"source_type": "volume", "destination_type": "volume"}, "Missing device UUID"),
    ({"source_type": "volume", "uuid": "0a0b0c0d-0000-4000-8000-000000000000",
      "destination_type": "volume"}, "failed to get volume"),
    ({"source_type": "snapshot", "uuid": "0a0b0c0d-0000-4000-8000-000000000000",
      "destination_type": "volume"}, "failed to get snapshot"),
    ({"source_type": "tape", "destination_type": "volume"}, "source_type"),
    ({"source_type": "blank", "destination_type": "floppy", "volume_size": 1},
     "destination_type"),
    ({"source_type": "blank", "destination_type": "local", "volume_size": 1},
     "Ephemeral disks requested are larger"),
    ({"source_type": "blank", "destination_type": "local", "guest_format": "swap",
      "volume_size": 1}, "Swap drive requested is larger"),
    ({"source_type": "blank", "destination_type": "volume", "volume_size": 1,
      "boot_index": 0}, "Boot sequence"),
    ({"source_type": "blank", "destination_type": "volume", "volume_size": 1,
      "boot_index": 2}, "Boot sequence"),
    ({"source_type": "blank", "destination_type": "volume", "volume_size": 1,
      "device_name": "/dev/vda"}, "root disk"),
    ({"source_type": "blank", "destination_type": "volume", "volume_size": 1,
      "device_name": "vd b"}, "contains spaces"),
    ({"source_type": "blank", "destination_type": "volume", "volume_size": 1,
      "tag": "t"}, "'tag' needs microversion"),
    ({"source_type": "blank", "destination_type": "volume", "volume_size": "x"},
     "is not an integer"),
    ({"source_type": "blank", "destination_type": "volume", "volume_size": 1,
      "shiny": True}, ""),
    ({"source_type": "image", "uuid": "0a0b0c0d-0000-4000-8000-000000000000",
      "destination_type": "local"}, "Mapping image to local is not supported"),
])
async def test_every_invalid_mapping_is_a_400_with_nothing_made(
        cloud: Cloud, disk: dict[str, Any], message: str) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    response = await cloud.compute("POST", "/servers", version="2.40",
                                   json=_with_disks(image_id, disk))
    assert response.status_code == 400, response.text
    assert message in response.json()["badRequest"]["message"]
    assert (await cloud.compute("GET", "/servers")).json()["servers"] == []
    assert (await cloud.volume("GET", "/volumes")).json()["volumes"] == []


async def test_refusals_that_need_the_volume_service(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    volume = await _volume(cloud)
    as_data = {"source_type": "volume", "destination_type": "volume", "uuid": volume["id"]}
    twice = await cloud.compute("POST", "/servers", json=_with_disks(image_id, as_data,
                                                                     dict(as_data)))
    assert twice.status_code == 400 and "mapped twice" in twice.text
    many = await cloud.compute("POST", "/servers", json=_with_disks(
        image_id, as_data, min_count=2, max_count=2))
    assert many.status_code == 400 and "multiple instances" in many.text
    two_swaps = {"source_type": "blank", "destination_type": "local", "guest_format": "swap"}
    swaps = await cloud.compute("POST", "/servers", json=_with_disks(image_id, two_swaps,
                                                                     dict(two_swaps)))
    assert swaps.status_code == 400 and "More than one swap" in swaps.text
    two_roots = await cloud.compute("POST", "/servers", json=_with_disks(
        image_id, {**as_data, "boot_index": 0}))
    assert two_roots.status_code == 400 and "Boot sequence" in two_roots.text
    # An in-use volume is refused before anything is made.
    server_body = _with_disks(image_id, as_data)
    first = await cloud.compute("POST", "/servers", json=server_body)
    assert first.status_code == 202, first.text
    await cloud.wait("compute", f"/servers/{first.json()['server']['id']}", "server",
                     "ACTIVE")
    second = await cloud.compute("POST", "/servers", json=server_body)
    assert second.status_code == 400 and "in-use, not available" in second.text
    assert len((await cloud.compute("GET", "/servers")).json()["servers"]) == 1
    assert len((await cloud.volume("GET", "/volumes")).json()["volumes"]) == 1


async def test_a_failed_build_leaves_no_volume_behind(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    existing = await _volume(cloud)
    for agent in cloud.stack.agents:  # every attempt on every host fails at spawn
        agent.driver.fail_next("spawn", "the hypervisor is out of order", times=5)  # type: ignore[attr-defined]
    created = await cloud.compute("POST", "/servers", json=_with_disks(
        image_id,
        {"source_type": "blank", "destination_type": "volume", "volume_size": 1},
        {"source_type": "volume", "destination_type": "volume", "uuid": existing["id"]}))
    assert created.status_code == 202, created.text
    sid = created.json()["server"]["id"]
    failed = await cloud.wait("compute", f"/servers/{sid}", "server", "ERROR")
    assert "out of order" in failed["fault"]["message"]
    # The blank volumes each attempt made are gone; the existing one is free again.
    for _ in range(400):
        volumes = (await cloud.volume("GET", "/volumes/detail")).json()["volumes"]
        if [v["id"] for v in volumes] == [existing["id"]] and \
                volumes[0]["status"] == "available":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"volumes left behind: {volumes}")
    assert (await cloud.volume("GET", "/attachments")).json()["attachments"] == []
    assert (await cloud.compute("DELETE", f"/servers/{sid}")).status_code == 204
    await _server_gone(cloud, sid)
    assert (await cloud.volume("GET", f"/volumes/{existing['id']}")).json()["volume"][
        "status"] == "available"
