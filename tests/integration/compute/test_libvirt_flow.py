"""The launch flow with a real guest: compute API → scheduler → compute agent with the libvirt
driver (image fetched into the host's cache) → QEMU, in one process on the memory bus.

The test guest is published through the image API like any client would; the server's console
log is read through the compute API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from stratus.compute.diagnosis import why
from stratus.compute.virt.libvirt import LibvirtDriver
from stratus.core.config import Settings
from stratus.core.spanstore import SpanStore, SpanStoreExporter
from stratus.guest_image.upload import publish
from tests.integration.compute.conftest import ADMIN_PASSWORD, ROOT
from tests.integration.compute.test_boot_flow import Cloud, started_cloud
from tests.realvm import destroy_leftovers, guest_image, libvirt_ready, wait_console

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


async def wait_status(cloud: Cloud, server_id: str, status: str,
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


# A real guest is slow: once, on the default database.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_real_guest_through_the_compute_api(cloud: Cloud) -> None:
    image_id = await publish(f"{ROOT}/identity/v3", "admin", ADMIN_PASSWORD, guest_image(),
                             client=cloud.client)
    created = await cloud.compute("POST", "/servers", json={"server": {
        "name": "real-vm", "imageRef": image_id, "flavorRef": "1", "networks": "none"}})
    assert created.status_code == 202, created.text
    server_id = created.json()["server"]["id"]
    server = await wait_status(cloud, server_id, "ACTIVE")
    assert server["OS-EXT-STS:power_state"] == 1
    assert server["OS-EXT-SRV-ATTR:host"] == "realvm-node"

    hypervisors = (await cloud.compute("GET", "/os-hypervisors/detail")).json()["hypervisors"]
    assert [h["hypervisor_type"] for h in hypervisors] == ["QEMU"]

    async def console() -> str:
        response = await cloud.compute("POST", f"/servers/{server_id}/action",
                                       json={"os-getConsoleOutput": {"length": None}})
        assert response.status_code == 200, response.text
        return str(response.json()["output"])

    text = await wait_console(console, r"^STRATUS-READY")
    assert f"serial={server_id}" in text and 'product="OpenStack Nova"' in text

    agent = cloud.stack.agents[0]
    assert isinstance(agent.driver, LibvirtDriver)
    instance_dir = agent.driver.instance_dir(server_id)
    assert (instance_dir / "disk").is_file()

    stop = await cloud.compute("POST", f"/servers/{server_id}/action", json={"os-stop": None})
    assert stop.status_code == 202, stop.text
    stopped = await wait_status(cloud, server_id, "SHUTOFF")
    assert stopped["OS-EXT-STS:power_state"] == 4
    assert "STRATUS-POWEROFF" in await console()  # a clean ACPI shutdown, not a pulled plug

    start = await cloud.compute("POST", f"/servers/{server_id}/action", json={"os-start": None})
    assert start.status_code == 202, start.text
    await wait_status(cloud, server_id, "ACTIVE")
    await wait_console(console, r"^STRATUS-READY", count=2)

    reboot = await cloud.compute("POST", f"/servers/{server_id}/action",
                                 json={"reboot": {"type": "HARD"}})
    assert reboot.status_code == 202, reboot.text
    await wait_console(console, r"^STRATUS-INIT", count=3)
    assert (await wait_status(cloud, server_id, "ACTIVE"))["OS-EXT-STS:power_state"] == 1

    deleted = await cloud.compute("DELETE", f"/servers/{server_id}")
    assert deleted.status_code == 204
    await wait_status(cloud, server_id, "DELETED")
    assert server_id not in await agent.driver.list_guests()
    assert not instance_dir.exists()


async def test_a_guest_that_cannot_start_ends_in_error_and_leaves_nothing(
        cloud: Cloud, tmp_path: Path, span_exporter: InMemorySpanExporter) -> None:
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
    # stratus why names the host, the step and the driver's error.
    store = SpanStore(tmp_path / "spans")
    SpanStoreExporter(store).export(span_exporter.get_finished_spans())
    diagnosis = await why(cloud.stack.compute.db, store, server_id)  # type: ignore[union-attr]
    store.close()
    assert diagnosis.verdict == "error" and diagnosis.host == "realvm-node"
    # The spawn's own step that failed: making the root disk over the image, by qemu-img.
    assert diagnosis.step is not None and diagnosis.step.what == "libvirt.root_disk", diagnosis
    assert diagnosis.step.target == "qemu-img"
    assert diagnosis.step.unit == "compute-agent" and diagnosis.step.host == "realvm-node"
    assert diagnosis.error is not None and "corrupt" in diagnosis.error.lower(), diagnosis
    assert set(await agent.driver.list_guests()) == before
    assert not agent.driver.instance_dir(server_id).exists()
    usage = (await cloud.compute("GET", "/os-hypervisors/detail", version="2.87")).json()[
        "hypervisors"]
    assert [h["vcpus_used"] for h in usage] == [0]  # the claim went with the build
