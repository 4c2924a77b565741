"""``server add volume`` / ``remove volume`` end to end in one process: compute-api reserves
in volume-api, the compute host connects, attaches (fake driver) and completes; on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stratus.compute.virt.fake import FakeDriver, FakeDriverOptions
from stratus.core.config import Settings
from stratus.core.exceptions import ServiceUnavailable
from stratus.stack import Stack
from stratus.volume.hosts import HostCapabilities
from tests.integration.asgi import admin_token, served_stack
from tests.integration.compute.test_boot_flow import boot_body, upload_image
from tests.integration.volume.conftest import assert_cinder_error

ADMIN_PASSWORD = "server-volumes-admin-pw"
ROOT = "http://test"
UNITS = ["identity-api", "image-api", "compute-api", "conductor", "scheduler",
         "compute-agent", "network-api", "volume-api", "volume-manager"]


class Cloud:
    def __init__(self, client: httpx.AsyncClient, token: str, project_id: str,
                 stack: Stack) -> None:
        self.client = client
        self.token = token
        self.project_id = project_id
        self.stack = stack

    def headers(self, version: str | None = None) -> dict[str, str]:
        headers = {"X-Auth-Token": self.token}
        if version:
            headers["OpenStack-API-Version"] = version
        return headers

    async def compute(self, method: str, path: str, version: str = "2.96",
                      **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, f"/compute/v2.1{path}",
                                         headers=self.headers(f"compute {version}"), **kwargs)

    async def volume(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, f"/volume/v3/{self.project_id}{path}",
                                         headers=self.headers("volume 3.60"), **kwargs)

    async def wait(self, kind: str, path: str, key: str, status: str) -> dict[str, Any]:
        call = self.compute if kind == "compute" else self.volume
        for _ in range(400):
            body: dict[str, Any] = (await call("GET", path)).json()[key]
            if body["status"] == status:
                return body
            await asyncio.sleep(0.05)
        raise AssertionError(f"{path} stuck in {body['status']}")

    def driver(self, server: dict[str, Any]) -> FakeDriver:
        host = server["OS-EXT-SRV-ATTR:host"]
        (agent,) = [a for a in self.stack.agents if a.host == host]
        assert isinstance(agent.driver, FakeDriver)
        return agent.driver


@contextlib.asynccontextmanager
async def started_cloud(settings: Settings, units: list[str],
                        http_timeout: float = 60) -> AsyncIterator[Cloud]:
    """A cloud of ``units`` in this process (bootstrapped, one ASGI app; services reach each
    other through it) and an admin token scoped to the admin project; closed on exit.
    ``http_timeout``: the client's per-request timeout."""
    async with served_stack(settings, units) as (stack, app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=ROOT,
            timeout=http_timeout) as client:
        token, project_id = await admin_token(client, ADMIN_PASSWORD)
        yield Cloud(client, token, project_id, stack)


@pytest.fixture
async def cloud(db_url: str, tmp_path: Path) -> AsyncIterator[Cloud]:
    settings = Settings(data_dir=tmp_path, database_url=db_url, public_url=ROOT,
                        admin_password=ADMIN_PASSWORD, identity={"bcrypt_rounds": 4},
                        network={"backend": "noop"}, volume={"host": "storage"},
                        compute={"fake_hosts": 2, "host": "node",
                                 "volume_attach_timeout": 30.0, "release_retry_delay": 0.01})
    async with started_cloud(settings, UNITS) as started:
        yield started


async def _server(cloud: Cloud, image_id: str, name: str) -> dict[str, Any]:
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name=name))
    assert created.status_code == 202, created.text
    return await cloud.wait("compute", f"/servers/{created.json()['server']['id']}",
                            "server", "ACTIVE")


async def _volume(cloud: Cloud) -> dict[str, Any]:
    created = await cloud.volume("POST", "/volumes", json={"volume": {"size": 1}})
    assert created.status_code == 202, created.text
    return await cloud.wait("volume", f"/volumes/{created.json()['volume']['id']}", "volume",
                            "available")


async def test_attach_and_detach_through_compute(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    server = await _server(cloud, image_id, "vm1")
    volume = await _volume(cloud)
    sid, vid = server["id"], volume["id"]

    attached = await cloud.compute("POST", f"/servers/{sid}/os-volume_attachments",
                                   version="2.89", json={"volumeAttachment": {"volumeId": vid}})
    assert attached.status_code == 200, attached.text
    body = attached.json()["volumeAttachment"]
    assert body["device"] == "/dev/vdb" and body["serverId"] == sid and body["volumeId"] == vid
    assert "id" not in body and body["attachment_id"]  # 2.89 form
    in_use = await cloud.wait("volume", f"/volumes/{vid}", "volume", "in-use")
    (item,) = in_use["attachments"]
    assert item["server_id"] == sid and item["device"] == "/dev/vdb"
    assert item["host_name"] == server["OS-EXT-SRV-ATTR:host"]
    recorded = cloud.driver(server).volumes(sid)
    assert recorded["/dev/vdb"]["driver_volume_type"] == "file"
    # Attached again to the same server: 400, and it keeps its one attachment.
    again = await cloud.compute("POST", f"/servers/{sid}/os-volume_attachments",
                                json={"volumeAttachment": {"volumeId": vid}})
    assert "already attached" in again.json()["badRequest"]["message"], again.text
    attachments = (await cloud.volume("GET", f"/attachments?volume_id={vid}")).json()
    assert len(attachments["attachments"]) == 1
    assert recorded["/dev/vdb"]["data"]["path"].endswith(f"volume-{vid}")

    # The server shows the volume, as the volume shows the server.
    shown_server = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    assert shown_server["os-extended-volumes:volumes_attached"] == [
        {"id": vid, "delete_on_termination": False}]
    old_form = (await cloud.compute("GET", f"/servers/{sid}", version="2.1")).json()["server"]
    assert old_form["os-extended-volumes:volumes_attached"] == [{"id": vid}]
    details = (await cloud.compute("GET", "/servers/detail")).json()["servers"]
    assert [s["os-extended-volumes:volumes_attached"] for s in details] == [[
        {"id": vid, "delete_on_termination": False}]]
    listed = (await cloud.compute("GET", f"/servers/{sid}/os-volume_attachments",
                                  version="2.1")).json()["volumeAttachments"]
    assert listed == [{"id": vid, "serverId": sid, "volumeId": vid, "device": "/dev/vdb"}]
    shown = await cloud.compute("GET", f"/servers/{sid}/os-volume_attachments/{vid}")
    assert shown.json()["volumeAttachment"]["device"] == "/dev/vdb"
    # Deleting the attached volume: 400, nothing changes.
    assert_cinder_error(await cloud.volume("DELETE", f"/volumes/{vid}"), 400, "badRequest")

    detached = await cloud.compute("DELETE", f"/servers/{sid}/os-volume_attachments/{vid}")
    assert detached.status_code == 202, detached.text
    assert (await cloud.wait("volume", f"/volumes/{vid}", "volume",
                             "available"))["attachments"] == []
    assert cloud.driver(server).volumes(sid) == {}
    shown_server = (await cloud.compute("GET", f"/servers/{sid}")).json()["server"]
    assert shown_server["os-extended-volumes:volumes_attached"] == []
    missing = await cloud.compute("DELETE", f"/servers/{sid}/os-volume_attachments/{vid}")
    assert missing.status_code == 404
    unknown = await cloud.compute("POST", f"/servers/{sid}/os-volume_attachments", json={
        "volumeAttachment": {"volumeId": str(uuid.uuid4())}})
    assert unknown.status_code == 404


async def test_one_volume_two_servers_at_once(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    servers = [await _server(cloud, image_id, f"vm{i}") for i in range(2)]
    volume = await _volume(cloud)
    results = await asyncio.gather(*(cloud.compute(
        "POST", f"/servers/{s['id']}/os-volume_attachments",
        json={"volumeAttachment": {"volumeId": volume["id"]}}) for s in servers))
    assert sorted(r.status_code for r in results) == [200, 400], [r.text for r in results]
    winner = next(s for s, r in zip(servers, results, strict=True) if r.status_code == 200)
    loser = next(s for s, r in zip(servers, results, strict=True) if r.status_code == 400)
    in_use = await cloud.wait("volume", f"/volumes/{volume['id']}", "volume", "in-use")
    assert [a["server_id"] for a in in_use["attachments"]] == [winner["id"]]
    assert cloud.driver(loser).volumes(loser["id"]) == {}


async def test_host_failing_mid_attach_leaves_the_volume_available(cloud: Cloud) -> None:
    """The host fails after the volume was reserved and connected (its driver refuses):
    the reservation is given back; the volume is available, never left attaching."""
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    server = await _server(cloud, image_id, "vm")
    volume = await _volume(cloud)
    driver = cloud.driver(server)
    driver.fail_next("attach_volume", "the hypervisor refused the disk")
    failed = await cloud.compute("POST", f"/servers/{server['id']}/os-volume_attachments",
                                 json={"volumeAttachment": {"volumeId": volume["id"]}})
    assert failed.status_code == 400, failed.text
    assert "the hypervisor refused the disk" in failed.json()["badRequest"]["message"]
    after = await cloud.wait("volume", f"/volumes/{volume['id']}", "volume", "available")
    assert after["attachments"] == []
    listed = (await cloud.volume("GET", f"/attachments?volume_id={volume['id']}")).json()
    assert listed["attachments"] == []
    assert driver.volumes(server["id"]) == {}
    # A device the server already uses is refused before anything is reserved.
    ok = await cloud.compute("POST", f"/servers/{server['id']}/os-volume_attachments",
                             json={"volumeAttachment": {"volumeId": volume["id"],
                                                        "device": "/dev/vdc"}})
    assert ok.status_code == 200, ok.text
    other = await _volume(cloud)
    clash = await cloud.compute("POST", f"/servers/{server['id']}/os-volume_attachments",
                                json={"volumeAttachment": {"volumeId": other["id"],
                                                           "device": "/dev/vdc"}})
    assert clash.status_code == 400, clash.text
    assert (await cloud.wait("volume", f"/volumes/{other['id']}", "volume",
                             "available"))["attachments"] == []


async def test_host_silent_mid_attach_never_leaves_the_volume_attaching(cloud: Cloud) -> None:
    """The host connected the volume (``attaching``) and then stops answering: compute-api
    gives up after ``volume_attach_timeout`` and releases the volume (``available``); when
    the host wakes up, its completion is refused and it detaches from the guest again."""
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    server = await _server(cloud, image_id, "vm")
    volume = await _volume(cloud)
    driver = cloud.driver(server)
    driver.options = FakeDriverOptions(latency={"attach_volume": 3.0})
    # Short here only: on a loaded machine a healthy attach can take over a second.
    cloud.stack.settings.compute.volume_attach_timeout = 1.0
    response = await cloud.compute("POST", f"/servers/{server['id']}/os-volume_attachments",
                                   json={"volumeAttachment": {"volumeId": volume["id"]}})
    assert response.status_code == 409, response.text
    after = await cloud.wait("volume", f"/volumes/{volume['id']}", "volume", "available")
    assert after["attachments"] == []
    # The host finishes its slow attach, finds the attachment gone, and undoes it.
    for _ in range(200):
        if ("detach_volume", server["id"]) in driver.calls:
            break
        await asyncio.sleep(0.05)
    assert driver.volumes(server["id"]) == {}
    assert (await cloud.wait("volume", f"/volumes/{volume['id']}", "volume",
                             "available"))["status"] == "available"


async def test_deleting_a_server_releases_its_volumes(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    server = await _server(cloud, image_id, "vm")
    volumes = [await _volume(cloud) for _ in range(2)]
    for volume in volumes:
        response = await cloud.compute("POST", f"/servers/{server['id']}/os-volume_attachments",
                                       json={"volumeAttachment": {"volumeId": volume["id"]}})
        assert response.status_code == 200, response.text
    assert (await cloud.compute("DELETE", f"/servers/{server['id']}")).status_code == 204
    for volume in volumes:
        after = await cloud.wait("volume", f"/volumes/{volume['id']}", "volume", "available")
        assert after["attachments"] == []
    assert (await cloud.volume("GET", "/attachments")).json()["attachments"] == []


async def test_a_delete_that_cannot_release_its_volumes_ends_in_error_and_can_be_retried(
        cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    server = await _server(cloud, image_id, "vm")
    volume = await _volume(cloud)
    attached = await cloud.compute("POST", f"/servers/{server['id']}/os-volume_attachments",
                                   json={"volumeAttachment": {"volumeId": volume["id"]}})
    assert attached.status_code == 200, attached.text
    (agent,) = [a for a in cloud.stack.agents if a.host == server["OS-EXT-SRV-ATTR:host"]]
    assert agent.volumes is not None
    client = agent.volumes.client

    tries = []

    async def unreachable(*args: Any, **kwargs: Any) -> None:
        tries.append(args)
        raise ServiceUnavailable("The block storage service is unreachable.")

    monkeypatch.setattr(client, "release_instance", unreachable)
    assert (await cloud.compute("DELETE", f"/servers/{server['id']}")).status_code == 204
    failed = await cloud.wait("compute", f"/servers/{server['id']}", "server", "ERROR")
    assert "block storage service is unreachable" in failed["fault"]["message"]
    # Tried again with backoff (compute.release_tries, 8) before it gave up, no more.
    assert len(tries) == 8
    assert (await cloud.volume("GET", f"/volumes/{volume['id']}")).json()["volume"][
        "status"] == "in-use", "nothing was released: the attachment still says so"

    monkeypatch.undo()  # the volume service is back: deleting again finishes the job
    assert (await cloud.compute("DELETE", f"/servers/{server['id']}")).status_code == 204
    for _ in range(400):
        if (await cloud.compute("GET", f"/servers/{server['id']}")).status_code == 404:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the second delete did not finish")
    after = await cloud.wait("volume", f"/volumes/{volume['id']}", "volume", "available")
    assert after["attachments"] == []


def _bfv_body(image_id: str, name: str, **bdm: Any) -> dict[str, Any]:
    body = boot_body(image_id, name=name)
    body["server"].pop("imageRef")
    body["server"]["block_device_mapping_v2"] = [{
        "uuid": image_id, "boot_index": 0, "source_type": "image",
        "destination_type": "volume", **bdm}]
    return body


async def bfv_server(cloud: Cloud, image_id: str, name: str) -> dict[str, Any]:
    """An ACTIVE server booted from a 1 GiB volume of the image, deleted with it."""
    created = await cloud.compute("POST", "/servers", json=_bfv_body(
        image_id, name, volume_size=1, delete_on_termination=True))
    assert created.status_code == 202, created.text
    return await cloud.wait("compute", f"/servers/{created.json()['server']['id']}",
                            "server", "ACTIVE")


async def test_boot_from_volume(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    server = await bfv_server(cloud, image_id, "bfv")
    sid = server["id"]
    assert server["image"] == ""
    (root,) = (await cloud.volume("GET", "/volumes/detail")).json()["volumes"]
    assert root["status"] == "in-use" and root["bootable"] == "true" and root["size"] == 1
    assert root["volume_image_metadata"]["image_id"] == image_id
    (item,) = root["attachments"]
    assert item["server_id"] == sid and item["device"] == "/dev/vda"
    assert server["os-extended-volumes:volumes_attached"] == [
        {"id": root["id"], "delete_on_termination": False}]
    assert (await cloud.compute("DELETE", f"/servers/{sid}")).status_code == 204
    for _ in range(400):  # the root volume goes with the server (delete_on_termination)
        if (await cloud.volume("GET", f"/volumes/{root['id']}")).status_code == 404:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the root volume outlived its server")

    # Kept: without delete_on_termination the volume is available after the delete.
    created = await cloud.compute("POST", "/servers", json=_bfv_body(
        image_id, "bfv2", volume_size=1))
    sid = created.json()["server"]["id"]
    await cloud.wait("compute", f"/servers/{sid}", "server", "ACTIVE")
    (root,) = (await cloud.volume("GET", "/volumes/detail")).json()["volumes"]
    await cloud.compute("DELETE", f"/servers/{sid}")
    kept = await cloud.wait("volume", f"/volumes/{root['id']}", "volume", "available")
    assert kept["attachments"] == []

    # No size: 400. Over the volume quota: the server is ERROR, nothing is left reserved.
    no_size = await cloud.compute("POST", "/servers", json=_bfv_body(image_id, "bad"))
    assert no_size.status_code == 400, no_size.text
    quota = await cloud.volume("PUT", f"/os-quota-sets/{cloud.project_id}",
                               json={"quota_set": {"gigabytes": 2}})
    assert quota.status_code == 200
    created = await cloud.compute("POST", "/servers", json=_bfv_body(
        image_id, "big", volume_size=5))
    assert created.status_code == 202, created.text
    failed = await cloud.wait("compute", f"/servers/{created.json()['server']['id']}",
                              "server", "ERROR")
    assert "Root volume" in failed["fault"]["message"]


async def test_boot_from_a_qcow2_image_without_qemu_img_says_what_is_missing(
        cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The volume host lacks qemu-img, so it cannot write a qcow2 image into a root volume:
    the server ends ERROR with a fault naming the host, the program and its package (volume-api
    refused the root volume), and no volume is left behind."""
    disk = tmp_path / "disk.qcow2"
    await asyncio.to_thread(subprocess.run, ["qemu-img", "create", "-q", "-f", "qcow2",
                                             str(disk), "64M"], check=True)
    created = await cloud.client.post("/image/v2/images", headers=cloud.headers(None), json={
        "name": "qcow", "disk_format": "qcow2", "container_format": "bare"})
    image_id = created.json()["id"]
    upload = await cloud.client.put(f"/image/v2/images/{image_id}/file",
                                    headers={**cloud.headers(None),
                                             "Content-Type": "application/octet-stream"},
                                    content=disk.read_bytes())
    assert upload.status_code == 204, upload.text
    # From now on the volume host finds no qemu-img, and says so in its next report.
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert cloud.stack.volume is not None
    async with cloud.stack.volume.service() as svc:
        await svc.hosts.report("storage", "file", "nova",
                               HostCapabilities(image_formats=["raw"],
                                                missing_tools=["qemu-img"]))
    created = await cloud.compute("POST", "/servers", json=_bfv_body(
        image_id, "qcow-bfv", volume_size=1))
    assert created.status_code == 202, created.text
    failed = await cloud.wait("compute", f"/servers/{created.json()['server']['id']}",
                              "server", "ERROR")
    message = failed["fault"]["message"]
    assert "qemu-img is not installed on host storage" in message, message
    assert "apt-get install qemu-utils" in message
    assert (await cloud.volume("GET", "/volumes/detail")).json()["volumes"] == []


async def test_boot_from_an_existing_volume(cloud: Cloud) -> None:
    volume = await _volume(cloud)
    body = boot_body("unused", name="from-volume")
    body["server"].pop("imageRef")
    body["server"]["block_device_mapping_v2"] = [{
        "uuid": volume["id"], "boot_index": 0, "source_type": "volume",
        "destination_type": "volume"}]
    created = await cloud.compute("POST", "/servers", json=body)
    assert created.status_code == 202, created.text
    sid = created.json()["server"]["id"]
    await cloud.wait("compute", f"/servers/{sid}", "server", "ACTIVE")
    in_use = await cloud.wait("volume", f"/volumes/{volume['id']}", "volume", "in-use")
    assert in_use["attachments"][0]["server_id"] == sid
    assert in_use["attachments"][0]["device"] == "/dev/vda"
    # A second server cannot boot from the same (now in-use) volume: 400, nothing made.
    again = await cloud.compute("POST", "/servers", json=body)
    assert again.status_code == 400, again.text
    assert "in-use, not available" in again.json()["badRequest"]["message"]
    assert len((await cloud.compute("GET", "/servers")).json()["servers"]) == 1
    await cloud.compute("DELETE", f"/servers/{sid}")
    kept = await cloud.wait("volume", f"/volumes/{volume['id']}", "volume", "available")
    assert kept["attachments"] == []


async def test_a_server_deleted_without_a_host_takes_its_root_volume_along(
        cloud: Cloud) -> None:
    image_id = await upload_image(cloud)  # type: ignore[arg-type]
    services = (await cloud.compute("GET", "/os-services?binary=nova-compute")).json()
    for service in services["services"]:  # no host can take it: the server ends ERROR
        disabled = await cloud.compute("PUT", f"/os-services/{service['id']}",
                                       json={"status": "disabled"})
        assert disabled.status_code == 200, disabled.text
    created = await cloud.compute("POST", "/servers", json=_bfv_body(
        image_id, "nowhere", volume_size=1, delete_on_termination=True))
    assert created.status_code == 202, created.text
    sid = created.json()["server"]["id"]
    failed = await cloud.wait("compute", f"/servers/{sid}", "server", "ERROR")
    assert failed.get("OS-EXT-SRV-ATTR:host") is None
    (root,) = (await cloud.volume("GET", "/volumes/detail")).json()["volumes"]

    assert (await cloud.compute("DELETE", f"/servers/{sid}")).status_code == 204

    for _ in range(400):  # deleted once made, even if it was still being made
        if (await cloud.volume("GET", f"/volumes/{root['id']}")).status_code == 404:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the root volume outlived its server")
    assert (await cloud.volume("GET", "/volumes/detail")).json()["volumes"] == []
