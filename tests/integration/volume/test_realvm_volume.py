"""A real guest booted from a volume made from the image; a volume attached to it while it
runs appears in it as a block device, and goes when it is detached: compute API →
volume-api → compute host → libvirt hot-plug → the guest's own report on its serial console
(the test guest prints ``STRATUS-DISK-ADDED/REMOVED``). One guest for all of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stratus.core.config import Settings
from stratus.guest_image.upload import publish
from tests.integration.volume.test_server_volumes import (
    ADMIN_PASSWORD,
    ROOT,
    UNITS,
    Cloud,
    started_cloud,
)
from tests.realvm import destroy_leftovers, guest_image, libvirt_ready, wait_console

pytestmark = [pytest.mark.realvm, pytest.mark.serial]


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    libvirt_ready()
    settings = Settings(data_dir=tmp_path, public_url=ROOT, admin_password=ADMIN_PASSWORD,
                        identity={"bcrypt_rounds": 4}, network={"backend": "noop"},
                        volume={"host": "storage"},
                        compute={"virt_driver": "libvirt", "host": "realvm-volumes",
                                 "shutdown_timeout": 10})
    try:
        async with started_cloud(settings, UNITS) as started:
            yield started
    finally:
        await destroy_leftovers(tmp_path / "instances")  # only if the test failed midway


async def test_a_guest_boots_from_a_volume_and_a_data_volume_comes_and_goes(
        cloud: Cloud) -> None:
    """One guest for both: it boots from a volume made from the image, then a data volume
    is hot-plugged into it and unplugged again."""
    image_id = await publish(f"{ROOT}/identity/v3", "admin", ADMIN_PASSWORD, guest_image(),
                             client=cloud.client)
    created = await cloud.compute("POST", "/servers", json={"server": {
        "name": "volume-guest", "flavorRef": "1", "networks": "none",
        "block_device_mapping_v2": [{
            "uuid": image_id, "source_type": "image", "destination_type": "volume",
            "volume_size": 1, "boot_index": 0, "delete_on_termination": True}]}})
    assert created.status_code == 202, created.text
    sid = created.json()["server"]["id"]
    server = await cloud.wait("compute", f"/servers/{sid}", "server", "ACTIVE")
    assert server["image"] == ""  # volume-backed
    [root] = server["os-extended-volumes:volumes_attached"]

    async def console() -> str:
        response = await cloud.compute("POST", f"/servers/{sid}/action",
                                       json={"os-getConsoleOutput": {"length": None}})
        assert response.status_code == 200, response.text
        return str(response.json()["output"])

    # The guest booted from the 1 GiB volume (the image alone is far smaller), its only disk.
    booted = await wait_console(console, r"^STRATUS-READY")
    assert f"STRATUS-DISK name=vda size={1 << 30}" in booted
    assert "STRATUS-DISK name=vdb" not in booted
    volume = (await cloud.volume("GET", f"/volumes/{root['id']}")).json()["volume"]
    assert volume["status"] == "in-use" and volume["bootable"] == "true"

    # A data volume attached to the running guest appears in it, and goes on detach.
    data = await cloud.volume("POST", "/volumes", json={"volume": {"size": 1}})
    assert data.status_code == 202, data.text
    vid = data.json()["volume"]["id"]
    await cloud.wait("volume", f"/volumes/{vid}", "volume", "available")
    attached = await cloud.compute("POST", f"/servers/{sid}/os-volume_attachments",
                                   json={"volumeAttachment": {"volumeId": vid}})
    assert attached.status_code == 200, attached.text
    device = attached.json()["volumeAttachment"]["device"]
    assert device == "/dev/vdb"
    await cloud.wait("volume", f"/volumes/{vid}", "volume", "in-use")
    # The guest sees a 1 GiB disk appear.
    text = await wait_console(console, r"^STRATUS-DISK-ADDED name=vdb")
    assert f"STRATUS-DISK-ADDED name=vdb size={1 << 30}" in text

    detached = await cloud.compute("DELETE", f"/servers/{sid}/os-volume_attachments/{vid}")
    assert detached.status_code == 202, detached.text
    await cloud.wait("volume", f"/volumes/{vid}", "volume", "available")
    await wait_console(console, r"^STRATUS-DISK-REMOVED name=vdb")

    assert (await cloud.compute("DELETE", f"/servers/{sid}")).status_code == 204
    assert (await cloud.volume("DELETE", f"/volumes/{vid}")).status_code == 202
    for _ in range(200):
        if (await cloud.compute("GET", f"/servers/{sid}")).status_code == 404:
            break
        await asyncio.sleep(0.1)
    gone = await cloud.volume("GET", f"/volumes/{root['id']}")
    assert gone.status_code == 404 or gone.json()["volume"]["status"] == "deleting"
