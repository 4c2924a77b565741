"""createImage of a volume-backed server: volume snapshots and an image that records them,
which boots again (a root volume made from the snapshot); a boot mapping with
``source_type: snapshot`` does the same. One process, fake driver, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.compute.test_boot_flow import upload_image
from tests.integration.volume.test_server_volumes import Cloud, _bfv_body, cloud

__all__ = ["cloud"]


async def _active(cloud: Cloud, body: dict[str, Any]) -> dict[str, Any]:
    created = await cloud.compute("POST", "/servers", json=body)
    assert created.status_code == 202, created.text
    return await cloud.wait("compute", f"/servers/{created.json()['server']['id']}",
                            "server", "ACTIVE")


async def test_a_volume_backed_server_snapshots_into_an_image_that_boots(
        cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    server = await _active(cloud, _bfv_body(image_id, "bfv", volume_size=1,
                                            delete_on_termination=True))
    sid = server["id"]
    (root,) = (await cloud.volume("GET", "/volumes/detail")).json()["volumes"]

    answer = await cloud.compute("POST", f"/servers/{sid}/action",
                                 json={"createImage": {"name": "bfv-snap",
                                                       "metadata": {"k": "v"}}})
    assert answer.status_code == 202, answer.text
    snap_image_id = answer.json()["image_id"]
    image = (await cloud.client.get(f"/image/v2/images/{snap_image_id}",
                                    headers=cloud.headers())).json()
    assert (image["status"], image["size"], image["bdm_v2"], image["root_device_name"]) == (
        "active", 0, "True", "/dev/vda")
    assert image["image_type"] == "snapshot" and image["instance_uuid"] == sid
    assert image["k"] == "v"
    (mapping,) = json.loads(image["block_device_mapping"])
    assert (mapping["source_type"], mapping["destination_type"], mapping["boot_index"],
            mapping["volume_size"]) == ("snapshot", "volume", 0, 1)
    snapshot = (await cloud.volume("GET", f"/snapshots/{mapping['snapshot_id']}")).json()
    assert snapshot["snapshot"]["volume_id"] == root["id"]
    assert snapshot["snapshot"]["status"] == "available"
    shown = await cloud.wait("compute", f"/servers/{sid}", "server", "ACTIVE")
    assert shown["OS-EXT-STS:task_state"] is None

    # The recorded image boots: a new root volume, made from the snapshot.
    again = await _active(cloud, {"server": {
        "name": "from-snap-image", "imageRef": snap_image_id, "flavorRef": "1",
        "networks": "none"}})
    assert again["image"] == ""
    volumes = (await cloud.volume("GET", "/volumes/detail")).json()["volumes"]
    (made,) = [v for v in volumes if v["id"] != root["id"]]
    assert made["snapshot_id"] == mapping["snapshot_id"] and made["status"] == "in-use"
    assert made["attachments"][0]["server_id"] == again["id"]

    # A boot mapping from the snapshot itself does the same.
    third = await _active(cloud, {"server": {
        "name": "from-snapshot", "flavorRef": "1", "networks": "none",
        "block_device_mapping_v2": [{
            "uuid": mapping["snapshot_id"], "boot_index": 0, "source_type": "snapshot",
            "destination_type": "volume", "delete_on_termination": True}]}})
    volumes = (await cloud.volume("GET", "/volumes/detail")).json()["volumes"]
    (third_root,) = [v for v in volumes
                     if v["attachments"] and v["attachments"][0]["server_id"] == third["id"]]
    assert third_root["snapshot_id"] == mapping["snapshot_id"] and third_root["size"] == 1
