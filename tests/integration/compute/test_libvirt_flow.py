"""The launch flow with the libvirt driver, in one process on the memory bus: a guest that
cannot start ends in ERROR and leaves nothing. (A real guest's boot, power actions and
delete through the compute API are checked on the one guest of
``test_realvm_disks_and_nics``.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from stratus.compute.virt.libvirt import LibvirtDriver
from stratus.core.config import Settings
from tests.integration.compute.conftest import ADMIN_PASSWORD, ROOT
from tests.integration.compute.test_boot_flow import Cloud, started_cloud
from tests.realvm import destroy_leftovers, libvirt_ready

pytestmark = [pytest.mark.realvm, pytest.mark.serial]


@pytest.fixture
async def cloud(db_url: str, tmp_path: Path) -> AsyncIterator[Cloud]:
    libvirt_ready()
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url=ROOT,
                        admin_password=ADMIN_PASSWORD, identity={"bcrypt_rounds": 4},
                        network={"backend": "noop"},
                        compute={"virt_driver": "libvirt", "host": "realvm-node",
                                 "shutdown_timeout": 30})
    try:
        async with started_cloud(settings, http_timeout=60) as started:
            yield started
    finally:
        await destroy_leftovers(tmp_path / "instances")  # only if the test failed midway


class ComputeClient(Protocol):
    async def compute(self, method: str, path: str) -> httpx.Response: ...


async def wait_status(cloud: ComputeClient, server_id: str, status: str,
                      within: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        response = await cloud.compute("GET", f"/servers/{server_id}")
        if status == "DELETED" and response.status_code == 404:
            return {}
        server: dict[str, Any] = response.json()["server"]
        if server["status"] == status:
            return server
        assert server["status"] != "ERROR", server.get("fault")
        assert time.monotonic() < deadline, f"{server_id} stuck in {server['status']}"
        await asyncio.sleep(0.1)


async def test_a_guest_that_cannot_start_ends_in_error_and_leaves_nothing(
        cloud: Cloud, tmp_path: Path) -> None:
    import struct
    import subprocess

    # A qcow2 image marked corrupt in its header: it uploads, but cannot be booted.
    image = tmp_path / "corrupt.qcow2"
    await asyncio.to_thread(subprocess.run, ["qemu-img", "create", "-q", "-f", "qcow2",
                                             str(image), "64M"], check=True)
    with image.open("r+b") as handle:
        handle.seek(72)  # incompatible features; bit 1 is "corrupt"
        features = struct.unpack(">Q", handle.read(8))[0]
        handle.seek(72)
        handle.write(struct.pack(">Q", features | 2))
    headers = {"X-Auth-Token": cloud.token}
    created = await cloud.client.post("/image/v2/images", headers=headers, json={
        "name": "corrupt", "disk_format": "qcow2", "container_format": "bare"})
    assert created.status_code == 201, created.text
    image_id = created.json()["id"]
    upload = await cloud.client.put(f"/image/v2/images/{image_id}/file",
                                    content=image.read_bytes(),
                                    headers={**headers,
                                             "Content-Type": "application/octet-stream"})
    assert upload.status_code == 204, upload.text

    agent = cloud.stack.agents[0]
    assert isinstance(agent.driver, LibvirtDriver)
    before = set(await agent.driver.list_guests())
    boot = await cloud.compute("POST", "/servers", json={"server": {
        "name": "broken", "imageRef": image_id, "flavorRef": "1", "networks": "none"}})
    assert boot.status_code == 202, boot.text
    server_id = boot.json()["server"]["id"]
    deadline = time.monotonic() + 60
    while True:
        server = (await cloud.compute("GET", f"/servers/{server_id}")).json()["server"]
        if server["status"] == "ERROR":
            break
        assert server["status"] == "BUILD", server
        assert time.monotonic() < deadline, "the broken build never ended"
        await asyncio.sleep(0.2)
    assert "corrupt" in server["fault"]["message"].lower(), server["fault"]
    assert set(await agent.driver.list_guests()) == before
    assert not agent.driver.instance_dir(server_id).exists()
    usage = (await cloud.compute("GET", "/os-hypervisors/detail", version="2.87")).json()[
        "hypervisors"]
    assert [h["vcpus_used"] for h in usage] == [0]  # the claim went with the build
