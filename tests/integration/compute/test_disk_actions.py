"""createImage, rebuild and shelve in one process (fake driver, real APIs, bus and database;
SQLite and PostgreSQL): what the CLI session in tests/e2e/test_compute_images_cli.py does
not reach — a shelve kept on its host (``shelved_offload_time = -1``) and offloaded by
hand, an unshelve to a named host (2.91), the Location header below 2.45, the image quota,
rebuild's key and user data, and a snapshot that fails on the host."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import pytest

from stratus.compute.placement import Placement
from stratus.compute.virt.fake import FakeDriver
from tests.integration.compute.conftest import ROOT, CloudStarter, assert_compute_error
from tests.integration.compute.test_boot_flow import Cloud, boot_body, upload_image


@pytest.fixture
async def cloud(start_cloud: CloudStarter) -> Cloud:
    return await start_cloud({"fake_hosts": 2, "host": "node", "shelved_offload_time": -1},
                             image={"quota_image_count": 3})


async def _settled(cloud: Cloud, server_id: str, status: str) -> dict[str, Any]:
    for _ in range(400):
        server = await cloud.wait_for(server_id, status)
        if server["OS-EXT-STS:task_state"] is None:
            return server
        await asyncio.sleep(0.02)
    raise AssertionError(f"{server_id} kept a task")


async def _runtime(cloud: Cloud) -> Any:
    from stratus.compute.units import compute_runtime

    return await compute_runtime(cloud.stack)


async def _action(cloud: Cloud, server_id: str, body: dict[str, Any],
                  version: str = "2.96") -> httpx.Response:
    return await cloud.compute("POST", f"/servers/{server_id}/action", version=version,
                               json=body)


async def test_shelve_kept_then_offloaded_then_unshelved_to_a_host(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name="vm"))
    server_id = created.json()["server"]["id"]
    server = await _settled(cloud, server_id, "ACTIVE")
    first_host = server["OS-EXT-SRV-ATTR:host"]

    assert (await _action(cloud, server_id, {"shelve": None})).status_code == 202
    shelved = await _settled(cloud, server_id, "SHELVED")
    assert shelved["OS-EXT-SRV-ATTR:host"] == first_host  # -1: never offloaded by itself
    runtime = await _runtime(cloud)
    async with runtime.service() as svc:
        assert await Placement(svc.session).allocations_of(server_id) != {}
        system = (await svc.instances.get(server_id)).system_metadata
    assert system["shelved_host"] == first_host and system["shelved_image_id"]

    assert (await _action(cloud, server_id, {"shelveOffload": None})).status_code == 202
    offloaded = await _settled(cloud, server_id, "SHELVED_OFFLOADED")
    assert offloaded["OS-EXT-SRV-ATTR:host"] is None
    async with runtime.service() as svc:
        assert await Placement(svc.session).allocations_of(server_id) == {}

    other = "node-2" if first_host == "node" else "node"
    below = await _action(cloud, server_id, {"unshelve": {"host": other}}, version="2.90")
    assert below.status_code == 400, below.text
    answer = await _action(cloud, server_id, {"unshelve": {"host": other}}, version="2.91")
    assert answer.status_code == 202, answer.text
    back = await _settled(cloud, server_id, "ACTIVE")
    assert back["OS-EXT-SRV-ATTR:host"] == other
    async with runtime.service() as svc:
        claims = await Placement(svc.session).allocations_of(server_id)
        assert list(claims.values()) == [{"VCPU": 1, "MEMORY_MB": 512, "DISK_GB": 1}]
        assert "shelved_image_id" not in (await svc.instances.get(server_id)).system_metadata
    images = (await cloud.client.get("/image/v2/images", headers=cloud.headers(None))).json()
    assert [i["id"] for i in images["images"]] == [image_id]  # the shelve image is gone
    events = (await cloud.compute("GET", f"/servers/{server_id}/os-instance-actions")).json()
    assert [a["action"] for a in events["instanceActions"]] == [
        "unshelve", "shelveOffload", "shelve", "create"]


async def test_create_image_location_quota_and_a_failed_copy(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name="vm"))
    server_id = created.json()["server"]["id"]
    server = await _settled(cloud, server_id, "ACTIVE")

    old = await _action(cloud, server_id, {"createImage": {"name": "old"}}, version="2.44")
    assert old.status_code == 202 and old.content == b""
    location = old.headers["Location"]
    assert location.startswith(f"{ROOT}/image/v2/images/")
    await _settled(cloud, server_id, "ACTIVE")
    shown = await cloud.client.get(location.removeprefix(ROOT), headers=cloud.headers(None))
    assert shown.json()["status"] == "active"

    missing = await _action(cloud, server_id, {"createImage": {}})
    assert missing.status_code == 400, missing.text

    # The host's copy fails: the image goes, the server is as it was, the event says why.
    (agent,) = [a for a in cloud.stack.agents if a.host == server["OS-EXT-SRV-ATTR:host"]]
    assert isinstance(agent.driver, FakeDriver)
    agent.driver.fail_next("snapshot", "the disk could not be read")
    failed = await _action(cloud, server_id, {"createImage": {"name": "broken"}})
    image = failed.json()["image_id"]
    await _settled(cloud, server_id, "ACTIVE")
    for _ in range(200):
        gone = await cloud.client.get(f"/image/v2/images/{image}", headers=cloud.headers(None))
        if gone.status_code == 404:
            break
        await asyncio.sleep(0.02)
    assert gone.status_code == 404

    # Over the image quota (3: the base, "old", one more): 403, nothing recorded.
    assert (await _action(cloud, server_id, {"createImage": {"name": "third"}})
            ).status_code == 202
    await _settled(cloud, server_id, "ACTIVE")
    over = await _action(cloud, server_id, {"createImage": {"name": "fourth"}})
    assert over.status_code == 403, over.text
    assert "Quota exceeded" in over.json()["forbidden"]["message"]


async def test_rebuild_changes_key_and_user_data_per_microversion(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    key = await cloud.compute("POST", "/os-keypairs", version="2.91",
                              json={"keypair": {"name": "k1"}})
    assert key.status_code in (200, 201), key.text
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name="vm"))
    server_id = created.json()["server"]["id"]
    await _settled(cloud, server_id, "ACTIVE")
    user_data = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()

    too_old = await _action(cloud, server_id, {"rebuild": {
        "imageRef": image_id, "key_name": "k1"}}, version="2.53")
    assert too_old.status_code == 400, too_old.text
    answer = await _action(cloud, server_id, {"rebuild": {
        "imageRef": image_id, "key_name": "k1", "user_data": user_data,
        "description": "rebuilt", "adminPass": "s3cret-pass"}})
    assert answer.status_code == 202, answer.text
    body = answer.json()["server"]
    assert body["adminPass"] == "s3cret-pass" and body["status"] == "REBUILD"
    assert body["key_name"] == "k1" and body["description"] == "rebuilt"
    rebuilt = await _settled(cloud, server_id, "ACTIVE")
    assert rebuilt["OS-EXT-SRV-ATTR:user_data"] == user_data
    busy = await _action(cloud, server_id, {"shelve": None})
    assert busy.status_code == 202
    again = await _action(cloud, server_id, {"rebuild": {"imageRef": image_id}})
    assert again.status_code == 409, again.text


async def test_the_conductor_offloads_servers_shelved_long_enough(cloud: Cloud) -> None:
    from stratus.compute.conductor.manager import ConductorManager
    from stratus.compute.rpcapi import ComputeAgentAPI

    image_id = await upload_image(cloud)
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name="vm"))
    server_id = created.json()["server"]["id"]
    await _settled(cloud, server_id, "ACTIVE")
    assert (await _action(cloud, server_id, {"shelve": None})).status_code == 202
    await _settled(cloud, server_id, "SHELVED")
    conductor = ConductorManager(await _runtime(cloud),
                                 ComputeAgentAPI(await cloud.stack.transport()))
    assert await conductor.offload_shelved(3600) == []  # not shelved that long yet
    assert await conductor.offload_shelved(0) == [server_id]
    offloaded = await _settled(cloud, server_id, "SHELVED_OFFLOADED")
    assert offloaded["OS-EXT-SRV-ATTR:host"] is None
    assert await conductor.offload_shelved(0) == []


async def test_update_and_rebuild_answer_the_base_view_below_2_75(cloud: Cloud) -> None:
    """Before 2.75 PUT and rebuild answer Nova's base server view (clients validate it with
    no extension attribute allowed); from 2.75 the same view as GET."""
    extension_keys = {"OS-EXT-AZ:availability_zone", "config_drive", "key_name",
                      "OS-SRV-USG:launched_at", "OS-EXT-STS:vm_state", "security_groups",
                      "os-extended-volumes:volumes_attached", "OS-EXT-SRV-ATTR:host"}
    image_id = await upload_image(cloud)
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name="vm"))
    server_id = created.json()["server"]["id"]
    shown = await _settled(cloud, server_id, "ACTIVE")
    assert extension_keys <= set(shown)

    old = await cloud.compute("PUT", f"/servers/{server_id}", version="2.1",
                              json={"server": {"name": "renamed"}})
    assert old.status_code == 200, old.text
    body = old.json()["server"]
    assert body["name"] == "renamed" and not extension_keys & set(body)
    assert "locked" not in body and "OS-DCF:diskConfig" in body
    for addresses in body["addresses"].values():
        assert all(set(a) == {"version", "addr"} for a in addresses)
    at_2_74 = (await cloud.compute("PUT", f"/servers/{server_id}", version="2.74",
                                   json={"server": {"name": "again"}})).json()["server"]
    assert at_2_74["locked"] is False and at_2_74["description"] is None
    assert not extension_keys & set(at_2_74)
    new = (await cloud.compute("PUT", f"/servers/{server_id}", version="2.75",
                               json={"server": {"name": "new"}})).json()["server"]
    assert extension_keys <= set(new)

    rebuilt = await _action(cloud, server_id, {"rebuild": {"imageRef": image_id}},
                            version="2.1")
    assert rebuilt.status_code == 202, rebuilt.text
    body = rebuilt.json()["server"]
    assert body["adminPass"] and body["status"] == "REBUILD"
    assert not extension_keys & set(body)


async def test_the_image_proxy_until_2_35(cloud: Cloud) -> None:
    """``/images`` shows the image service's images in Nova's form until 2.35, a server's
    snapshot with its server; deleting goes to the image service; gone from 2.36."""
    image_id = await upload_image(cloud)
    await cloud.client.patch(
        f"/image/v2/images/{image_id}",
        headers={**cloud.headers(None),
                 "Content-Type": "application/openstack-images-v2.1-json-patch"},
        json=[{"op": "add", "path": "/color", "value": "blue"}])
    shown = await cloud.compute("GET", f"/images/{image_id}", version="2.1")
    assert shown.status_code == 200, shown.text
    image = shown.json()["image"]
    assert image["status"] == "ACTIVE" and image["progress"] == 100
    assert image["name"] == "tiny" and image["minRam"] == 0 and image["minDisk"] == 0
    assert image["metadata"] == {"color": "blue"} and image["OS-EXT-IMG-SIZE:size"] == 4096
    assert image["created"].endswith("Z") and "server" not in image
    assert [link["rel"] for link in image["links"]] == ["self", "bookmark", "alternate"]

    created = await cloud.compute("POST", "/servers", json=boot_body(image_id, name="vm"))
    server_id = created.json()["server"]["id"]
    await _settled(cloud, server_id, "ACTIVE")
    snap = await _action(cloud, server_id, {"createImage": {"name": "snap"}}, version="2.1")
    assert snap.status_code == 202, snap.text
    snap_id = snap.headers["Location"].rsplit("/", 1)[1]
    await _settled(cloud, server_id, "ACTIVE")
    snapshot = (await cloud.compute("GET", f"/images/{snap_id}", version="2.35")).json()
    assert snapshot["image"]["server"]["id"] == server_id

    listed = (await cloud.compute("GET", "/images", version="2.1")).json()["images"]
    assert {i["id"] for i in listed} == {image_id, snap_id}
    assert set(listed[0]) == {"id", "name", "links"}
    detail = (await cloud.compute("GET", "/images/detail?name=snap", version="2.1")).json()
    assert [i["id"] for i in detail["images"]] == [snap_id]
    assert_compute_error(await cloud.compute("GET", f"/images/{image_id}", version="2.36"),
                         404, "itemNotFound")
    assert (await cloud.compute("DELETE", f"/images/{snap_id}", version="2.1")
            ).status_code == 204
    assert_compute_error(await cloud.compute("GET", f"/images/{snap_id}", version="2.1"),
                         404, "itemNotFound")
    assert_compute_error(await cloud.compute("DELETE", f"/images/{snap_id}", version="2.1"),
                         404, "itemNotFound")
