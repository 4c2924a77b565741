"""Compute-api's image records (``stratus.core.image_caches``) in one process: a boot checks
its image with the image service once per image and caller, and any change of the image
(deactivated, deleted, made private, a membership removed) refuses the very next boot.

Everything real but the hypervisor, as in ``test_boot_flow``; no waiting between the change
and the boot that must be refused.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from stratus.core.clients.image import ImageClient
from tests.integration.compute.conftest import CloudStarter, ComputeCloud, assert_compute_error
from tests.integration.compute.test_boot_flow import Cloud, boot_body, upload_image


@pytest.fixture
async def cloud(start_cloud: CloudStarter) -> Cloud:
    return await start_cloud({"fake_hosts": 2, "host": "node", "fake_memory_mb": 65536,
                              "fake_vcpus": 64, "reserved_host_memory_mb": 0})


@pytest.fixture
def image_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The image ids compute-api asked the image service for (``GET /v2/images/{id}``)."""
    asked: list[str] = []
    show = ImageClient.show

    async def counted(self: ImageClient, endpoint: str, image_id: str,
                      auth: httpx.Auth) -> dict[str, Any]:
        asked.append(image_id)
        return await show(self, endpoint, image_id, auth)

    monkeypatch.setattr(ImageClient, "show", counted)
    return asked


async def boot(cloud: Cloud, image_id: str, token: str | None = None) -> httpx.Response:
    headers = cloud.headers()
    if token is not None:
        headers["X-Auth-Token"] = token
    return await cloud.client.post("/compute/v2.1/servers", headers=headers,
                                   json=boot_body(image_id))


async def image_call(cloud: Cloud, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return await cloud.client.request(method, f"/image/v2/images/{path}",
                                      headers=cloud.headers(None), **kwargs)


async def patch_image(cloud: Cloud, image_id: str, ops: list[dict[str, Any]]) -> None:
    response = await cloud.client.patch(
        f"/image/v2/images/{image_id}", json=ops,
        headers={**cloud.headers(None),
                 "Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert response.status_code == 200, response.text


async def member(cloud: Cloud, name: str) -> tuple[str, str]:
    """A user with ``member`` on a project of its own: (token, project id)."""
    token, _, project = await ComputeCloud(cloud.client, cloud.token).member(name)
    return token, project["id"]


async def test_a_second_boot_of_an_image_does_not_ask_the_image_service(
        cloud: Cloud, image_reads: list[str]) -> None:
    image_id = await upload_image(cloud)
    for _ in range(3):
        assert (await boot(cloud, image_id)).status_code == 202
    assert image_reads == [image_id]
    # Any change of the image (here a property) is asked again, once.
    await patch_image(cloud, image_id, [{"op": "add", "path": "/hw_note", "value": "x"}])
    for _ in range(2):
        assert (await boot(cloud, image_id)).status_code == 202
    assert image_reads == [image_id, image_id]


async def test_a_burst_of_boots_of_an_image_not_kept_asks_the_image_service_once(
        cloud: Cloud, image_reads: list[str]) -> None:
    # A cold (or expired) record under a burst: the POSTs in flight share one fetch rather
    # than each asking the image service for the same image.
    image_id = await upload_image(cloud)
    answers = await asyncio.gather(*(boot(cloud, image_id) for _ in range(8)))
    assert [a.status_code for a in answers] == [202] * 8, [a.text for a in answers]
    assert image_reads == [image_id]


async def test_an_image_deactivated_after_a_boot_refuses_the_next_one(
        cloud: Cloud, image_reads: list[str]) -> None:
    image_id = await upload_image(cloud)
    assert (await boot(cloud, image_id)).status_code == 202
    assert (await boot(cloud, image_id)).status_code == 202
    assert len(image_reads) == 1  # the second boot was answered from the record

    assert (await image_call(cloud, "POST", f"{image_id}/actions/deactivate")).status_code \
        == 204
    refused = await boot(cloud, image_id)
    assert "is not active" in assert_compute_error(refused, 400, "badRequest")

    assert (await image_call(cloud, "POST", f"{image_id}/actions/reactivate")).status_code \
        == 204
    assert (await boot(cloud, image_id)).status_code == 202


async def test_an_image_deleted_after_a_boot_refuses_the_next_one(
        cloud: Cloud, image_reads: list[str]) -> None:
    image_id = await upload_image(cloud)
    assert (await boot(cloud, image_id)).status_code == 202
    assert (await boot(cloud, image_id)).status_code == 202
    assert len(image_reads) == 1

    assert (await image_call(cloud, "DELETE", image_id)).status_code == 204
    refused = await boot(cloud, image_id)
    assert "could not be found" in assert_compute_error(refused, 400, "badRequest")


async def test_an_image_made_private_to_another_project_refuses_the_next_boot(
        cloud: Cloud, image_reads: list[str]) -> None:
    image_id = await upload_image(cloud)  # the admin project's
    await patch_image(cloud, image_id, [{"op": "replace", "path": "/visibility",
                                         "value": "public"}])
    user, _ = await member(cloud, "alice")
    assert (await boot(cloud, image_id, user)).status_code == 202, "public: alice may boot it"
    assert (await boot(cloud, image_id, user)).status_code == 202
    assert len(image_reads) == 1

    await patch_image(cloud, image_id, [{"op": "replace", "path": "/visibility",
                                         "value": "private"}])
    refused = await boot(cloud, image_id, user)
    assert "could not be found" in assert_compute_error(refused, 400, "badRequest")
    assert (await boot(cloud, image_id)).status_code == 202, "its owner still may"


async def test_a_membership_removed_after_a_boot_refuses_the_next_one(
        cloud: Cloud, image_reads: list[str]) -> None:
    image_id = await upload_image(cloud)  # shared (the default), with no member yet
    user, project_id = await member(cloud, "bob")
    refused = await boot(cloud, image_id, user)
    assert "could not be found" in assert_compute_error(refused, 400, "badRequest")

    added = await image_call(cloud, "POST", f"{image_id}/members",
                             json={"member": project_id})
    assert added.status_code == 200, added.text
    assert (await boot(cloud, image_id, user)).status_code == 202, "a member may boot it"
    assert (await boot(cloud, image_id, user)).status_code == 202

    assert (await image_call(cloud, "DELETE", f"{image_id}/members/{project_id}")
            ).status_code == 204
    refused = await boot(cloud, image_id, user)
    assert "could not be found" in assert_compute_error(refused, 400, "badRequest")


async def test_one_callers_record_never_answers_another(
        cloud: Cloud, image_reads: list[str]) -> None:
    image_id = await upload_image(cloud)  # shared, no members: the admin project's only
    assert (await boot(cloud, image_id)).status_code == 202
    assert (await boot(cloud, image_id)).status_code == 202
    user, _ = await member(cloud, "carol")
    refused = await boot(cloud, image_id, user)
    assert "could not be found" in assert_compute_error(refused, 400, "badRequest")
    assert image_reads == [image_id, image_id]
