"""``os-volume_upload_image``: a volume read out by its volume-manager (file backend) into a
new image of the caller's, through the image API, as raw and as qcow2."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from tests.integration.clouds import Who
from tests.integration.volume.conftest import VolCloud, assert_cinder_error

#: The volume files are cut to this size before the upload: the flow is the same for a
#: whole GiB, which would only make the test slower.
DATA_SIZE = 4 << 20


async def _upload(cloud: VolCloud, who: Who, volume_id: str, version: str = "3.60",
                  **args: Any) -> Any:
    return await cloud.call("POST", f"/volumes/{volume_id}/action", who, version=version,
                            json={"os-volume_upload_image": args})


async def _wait_image(cloud: VolCloud, who: Who, image_id: str, *statuses: str,
                      wait_for: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + wait_for
    while True:
        response = await cloud.client.get(f"/image/v2/images/{image_id}",
                                          headers=who.headers)
        if response.status_code == 404 and "deleted" in statuses:
            return {"status": "deleted"}
        assert response.status_code == 200, response.text
        image: dict[str, Any] = response.json()
        if image["status"] in statuses:
            return image
        assert time.monotonic() < deadline, f"image stuck in {image['status']}"
        await asyncio.sleep(0.05)


async def _volume_with_data(cloud: VolCloud, who: Who) -> tuple[dict[str, Any], bytes]:
    volume = await cloud.create_volume(who, size=1, name="data")
    await cloud.wait_volume(volume["id"], "available", who=who)
    data = os.urandom(DATA_SIZE)
    (cloud.volumes_dir / f"volume-{volume['id']}").write_bytes(data)
    return volume, data


async def test_a_volume_becomes_an_image_of_the_callers(cloud: VolCloud) -> None:
    member = await cloud.project()
    volume, data = await _volume_with_data(cloud, member)

    response = await _upload(cloud, member, volume["id"], image_name="from-volume")
    assert response.status_code == 202, response.text
    body = response.json()["os-volume_upload_image"]
    assert body["id"] == volume["id"] and body["status"] == "uploading"
    assert (body["image_name"], body["disk_format"], body["container_format"]) == (
        "from-volume", "raw", "bare")
    assert (body["visibility"], body["protected"]) == ("private", False)
    assert body["size"] == 1 and body["volume_type"]["name"] == "__DEFAULT__"

    image = await _wait_image(cloud, member, body["image_id"], "active")
    assert image["owner"] == member.project_id and image["name"] == "from-volume"
    assert (image["disk_format"], image["size"]) == ("raw", DATA_SIZE)
    download = await cloud.client.get(f"/image/v2/images/{image['id']}/file",
                                      headers=member.headers)
    assert download.content == data
    assert (await cloud.wait_volume(volume["id"], "available", who=member))["status"] == \
        "available"
    # The read-out copy is gone from the host.
    scratch = cloud.settings.data_dir / "volume-uploads"
    assert not scratch.exists() or list(scratch.iterdir()) == []

    # As qcow2: a real qcow2 disk holding the volume (the image service checks the format).
    response = await _upload(cloud, member, volume["id"], image_name="qcow",
                             disk_format="qcow2", visibility="shared", protected=False)
    assert response.status_code == 202, response.text
    qcow = await _wait_image(cloud, member,
                             response.json()["os-volume_upload_image"]["image_id"], "active")
    assert qcow["disk_format"] == "qcow2" and qcow["visibility"] == "shared"
    assert qcow["virtual_size"] == DATA_SIZE
    await cloud.wait_volume(volume["id"], "available", who=member)


async def test_before_3_1_the_image_is_private(cloud: VolCloud) -> None:
    member = await cloud.project()
    volume, _ = await _volume_with_data(cloud, member)
    response = await _upload(cloud, member, volume["id"], version="3.0", image_name="old",
                             visibility="shared", protected=True)
    assert response.status_code == 202, response.text
    body = response.json()["os-volume_upload_image"]
    assert "visibility" not in body and "protected" not in body
    image = await _wait_image(cloud, member, body["image_id"], "active")
    assert (image["visibility"], image["protected"]) == ("private", False)


async def test_bad_requests_leave_the_volume_available_and_make_no_image(
        cloud: VolCloud) -> None:
    member = await cloud.project()
    volume, _ = await _volume_with_data(cloud, member)
    for args in ({}, {"image_name": ""}, {"image_name": "x", "disk_format": "iso"},
                 {"image_name": "x", "container_format": "ovf"},
                 {"image_name": "x", "force": "perhaps"},
                 {"image_name": "x", "visibility": "everyone"}):
        assert_cinder_error(await _upload(cloud, member, volume["id"], **args), 400,
                            "badRequest")
    refused = await _upload(cloud, member, volume["id"], image_name="x", visibility="public")
    assert_cinder_error(refused, 403, "forbidden")
    missing = await _upload(cloud, member, "00000000-0000-0000-0000-000000000000",
                            image_name="x")
    assert_cinder_error(missing, 404, "itemNotFound")

    async with cloud.runtime.service() as svc:
        await svc.volumes.reset_status(volume["id"], status="in-use", attach_status=None)
    busy = await _upload(cloud, member, volume["id"], image_name="x", force=True)
    assert "force upload" in assert_cinder_error(busy, 400, "badRequest")
    async with cloud.runtime.service() as svc:
        await svc.volumes.reset_status(volume["id"], status="available", attach_status=None)

    images = (await cloud.client.get("/image/v2/images", headers=member.headers)).json()
    assert images["images"] == []
    assert (await cloud.call("GET", f"/volumes/{volume['id']}", member)).json()[
        "volume"]["status"] == "available"


async def test_a_failed_upload_deletes_the_image_and_frees_the_volume(
        cloud: VolCloud) -> None:
    member = await cloud.project()
    volume, _ = await _volume_with_data(cloud, member)
    # The volume's data is gone from the host: the read-out fails on the volume-manager.
    (cloud.volumes_dir / f"volume-{volume['id']}").unlink()
    response = await _upload(cloud, member, volume["id"], image_name="lost")
    assert response.status_code == 202, response.text
    image_id = response.json()["os-volume_upload_image"]["image_id"]
    await _wait_image(cloud, member, image_id, "deleted")
    assert (await cloud.wait_volume(volume["id"], "available", who=member))["status"] == \
        "available"
