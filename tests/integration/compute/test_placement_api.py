"""The Placement API over the scheduler's tables: after a boot on the fake driver, every
read route shows the server's claim (its flavor's VCPU, MEMORY_MB and DISK_GB) in
placement's formats; members are refused and unknown providers are 404s, in placement's
error format."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from stratus.compute.placement import provider_uuid
from tests.integration.compute.conftest import CloudStarter
from tests.integration.compute.test_boot_flow import UNITS, Cloud, boot_body, upload_image
from tests.integration.compute.test_server_actions import _member_token


@pytest.fixture
async def cloud(start_cloud: CloudStarter) -> Cloud:
    return await start_cloud({"fake_hosts": 1, "host": "node", "fake_memory_mb": 4096,
                              "fake_vcpus": 4, "reserved_host_memory_mb": 0},
                             [*UNITS, "placement-api"])


async def placement(cloud: Cloud, path: str, version: str | None = "1.14",
                    token: str | None = None) -> httpx.Response:
    headers = {"X-Auth-Token": token or cloud.token}
    if version:
        headers["OpenStack-API-Version"] = f"placement {version}"
    return await cloud.client.get(f"/placement{path}", headers=headers)


async def ok(cloud: Cloud, path: str, version: str | None = "1.14") -> dict[str, Any]:
    response = await placement(cloud, path, version)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_placement_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    (error,) = response.json()["errors"]
    assert {"status", "title", "detail", "code", "request_id"} <= set(error)
    assert error["status"] == status
    assert error["request_id"] == response.headers["x-openstack-request-id"]
    return dict(error)


async def test_every_read_route_shows_a_booted_servers_claim(cloud: Cloud) -> None:
    image_id = await upload_image(cloud)
    created = await cloud.compute("POST", "/servers", json=boot_body(image_id))
    assert created.status_code == 202, created.text
    server_id = created.json()["server"]["id"]
    await cloud.wait_for(server_id, "ACTIVE")
    flavor = (await cloud.compute("GET", "/flavors/1")).json()["flavor"]
    claim = {"VCPU": flavor["vcpus"], "MEMORY_MB": flavor["ram"], "DISK_GB": flavor["disk"]}
    project_id = (await cloud.compute("GET", f"/servers/{server_id}")).json()[
        "server"]["tenant_id"]
    rp = provider_uuid("node")

    root = await placement(cloud, "/", version=None)
    assert root.json() == {"versions": [{
        "id": "v1.0", "status": "CURRENT", "min_version": "1.0", "max_version": "1.14",
        "links": [{"rel": "self", "href": ""}]}]}
    assert root.headers["openstack-api-version"] == "placement 1.0"
    # version discovery: at the catalog's URL as it is (redirected to its slash, as the
    # image API's), and without a token
    assert (await cloud.client.get("/placement", follow_redirects=True)).json() == root.json()

    listed = await ok(cloud, "/resource_providers")
    base = f"/placement/resource_providers/{rp}"
    provider = {"uuid": rp, "name": "node", "generation": listed["resource_providers"][0][
        "generation"], "parent_provider_uuid": None, "root_provider_uuid": rp,
        "links": [{"rel": "self", "href": base},
                  {"rel": "inventories", "href": f"{base}/inventories"},
                  {"rel": "usages", "href": f"{base}/usages"},
                  {"rel": "aggregates", "href": f"{base}/aggregates"},
                  {"rel": "traits", "href": f"{base}/traits"},
                  {"rel": "allocations", "href": f"{base}/allocations"}]}
    assert listed == {"resource_providers": [provider]}
    generation = provider["generation"]
    assert await ok(cloud, "/resource_providers?name=node") == listed
    assert await ok(cloud, f"/resource_providers?uuid={rp}") == listed
    assert await ok(cloud, "/resource_providers?name=elsewhere") == {"resource_providers": []}
    assert await ok(cloud, f"/resource_providers/{rp}") == provider
    at_10 = await ok(cloud, f"/resource_providers/{rp}", version="1.0")
    assert set(at_10) == {"uuid", "name", "generation", "links"}
    assert [link["rel"] for link in at_10["links"]] == ["self", "inventories", "usages"]

    inventories = await ok(cloud, f"/resource_providers/{rp}/inventories")
    assert inventories["resource_provider_generation"] == generation
    assert set(inventories["inventories"]) == {"VCPU", "MEMORY_MB", "DISK_GB"}
    assert inventories["inventories"]["VCPU"] == {
        "total": 4, "reserved": 0, "min_unit": 1, "max_unit": 4, "step_size": 1,
        "allocation_ratio": inventories["inventories"]["VCPU"]["allocation_ratio"]}
    assert inventories["inventories"]["MEMORY_MB"]["total"] == 4096
    assert await ok(cloud, f"/resource_providers/{rp}/inventories/MEMORY_MB") == {
        **inventories["inventories"]["MEMORY_MB"], "resource_provider_generation": generation}

    assert await ok(cloud, f"/resource_providers/{rp}/usages") == {
        "usages": claim, "resource_provider_generation": generation}
    assert await ok(cloud, f"/resource_providers/{rp}/allocations") == {
        "allocations": {server_id: {"resources": claim}},
        "resource_provider_generation": generation}
    assert await ok(cloud, f"/resource_providers/{rp}/aggregates") == {"aggregates": []}
    aggregate = (await cloud.compute("POST", "/os-aggregates", json={
        "aggregate": {"name": "rack-1"}})).json()["aggregate"]
    added = await cloud.compute("POST", f"/os-aggregates/{aggregate['id']}/action",
                                json={"add_host": {"host": "node"}})
    assert added.status_code == 200, added.text
    # Horizon's hypervisor page reads these at 1.6
    assert await ok(cloud, f"/resource_providers/{rp}/aggregates", version="1.6") == {
        "aggregates": [aggregate["uuid"]]}
    assert await ok(cloud, f"/resource_providers/{rp}/traits", version="1.6") == {
        "traits": [], "resource_provider_generation": generation}
    assert_placement_error(await placement(cloud, f"/resource_providers/{rp}/traits",
                                           version="1.5"), 404)

    assert await ok(cloud, f"/allocations/{server_id}") == {
        "allocations": {rp: {"generation": generation, "resources": claim}},
        "project_id": project_id, "user_id": (await cloud.compute(
            "GET", f"/servers/{server_id}")).json()["server"]["user_id"]}
    assert await ok(cloud, f"/allocations/{server_id}", version="1.0") == {
        "allocations": {rp: {"generation": generation, "resources": claim}}}
    assert await ok(cloud, f"/allocations/{uuid.uuid4()}") == {"allocations": {}}

    assert await ok(cloud, f"/usages?project_id={project_id}") == {"usages": claim}
    assert await ok(cloud, f"/usages?project_id={uuid.uuid4().hex}") == {"usages": {}}
    assert_placement_error(await placement(cloud, f"/usages?project_id={project_id}",
                                           version="1.8"), 404)  # /usages is 1.9's
    assert_placement_error(await placement(cloud, "/usages"), 400)

    deleted = await cloud.compute("DELETE", f"/servers/{server_id}")
    assert deleted.status_code == 204
    await cloud.wait_for(server_id, "DELETED")
    assert (await ok(cloud, f"/resource_providers/{rp}/usages"))["usages"] == {
        "VCPU": 0, "MEMORY_MB": 0, "DISK_GB": 0}
    assert await ok(cloud, f"/allocations/{server_id}") == {"allocations": {}}


async def test_members_writes_and_unknown_providers_are_refused(cloud: Cloud) -> None:
    member = await _member_token(cloud, "placement-member")
    for path in ("/resource_providers", f"/resource_providers/{provider_uuid('node')}/usages",
                 f"/usages?project_id={uuid.uuid4().hex}"):
        assert_placement_error(await placement(cloud, path, token=member), 403)

    missing = uuid.uuid4()
    for path in (f"/resource_providers/{missing}", f"/resource_providers/{missing}/usages",
                 f"/resource_providers/{missing}/inventories",
                 f"/resource_providers/{missing}/allocations"):
        assert_placement_error(await placement(cloud, path), 404)
    assert_placement_error(await placement(cloud, "/resource_providers?uuid=nope"), 400)
    assert_placement_error(await placement(cloud, "/resource_providers?member_of=x"), 400)
    # osc-placement negotiates by asking for its newest and reading the range from the 406
    refused = assert_placement_error(await placement(cloud, "/", version="1.99"), 406)
    assert (refused["min_version"], refused["max_version"]) == ("1.0", "1.14")
