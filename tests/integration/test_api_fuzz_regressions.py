"""The exact requests the API fuzzing (``test_api_fuzz``) found answered wrongly, each kept as
a test of its fix."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.clouds import CloudStarter, TestCloud
from tests.integration.test_api_fuzz import real_ids

ADMIN_PASSWORD = "fuzz-regressions-admin-pw"


def on_postgresql(cloud: TestCloud) -> bool:
    return str(cloud.settings.database_url).startswith("postgresql")


@pytest.fixture
async def cloud(db_url: str, tmp_path: Path) -> AsyncIterator[TestCloud]:
    starter = CloudStarter(db_url, tmp_path, ADMIN_PASSWORD)
    try:
        yield await starter.start(
            TestCloud, ("identity-api", "compute-api", "image-api", "network-api",
                        "volume-api"),
            f"memory://fuzz-{uuid.uuid4().hex[:8]}", volume={"host": "storage-1"})
    finally:
        await starter.aclose()


async def test_a_newline_in_the_path_reaches_the_unit(cloud: TestCloud) -> None:
    """``%0A`` in a path: the root's mount pattern stopped at the newline, and the request got
    a bare ``Not Found`` text instead of the API's error body."""
    response = await cloud.client.get("/network/v2.0/%0A%C3%96/x/tags",
                                      headers=cloud.admin.headers)
    assert response.status_code == 404
    assert "NeutronError" in response.json()


async def test_a_nul_in_a_filter_is_a_bad_request(cloud: TestCloud) -> None:
    """``GET /os-services?host=`` with a NUL: PostgreSQL refused the query's text and the
    request was answered 500 (SQLite stores NUL: no such host there)."""
    response = await cloud.client.get("/compute/v2.1/os-services",
                                      params={"host": "\u00b0\x00\u00fd\u00dbt"},
                                      headers=cloud.admin.headers)
    if not on_postgresql(cloud):
        assert response.json() == {"services": []}
        return
    assert response.status_code == 400, response.text
    assert "NUL" in response.json()["badRequest"]["message"]


async def test_a_nul_in_a_name_is_a_bad_request(cloud: TestCloud) -> None:
    """The same NUL in a body's name (``POST /v2.0/networks``)."""
    response = await cloud.client.post("/network/v2.0/networks", json={
        "network": {"name": "a\x00b"}}, headers=cloud.admin.headers)
    assert response.status_code == (400 if on_postgresql(cloud) else 201), response.text
    if on_postgresql(cloud):
        assert response.json()["NeutronError"]["type"] == "BadRequest"


async def test_a_server_action_with_bad_arguments_is_a_bad_request(cloud: TestCloud) -> None:
    """``{"addSecurityGroup": null}`` on a server: its arguments' validation error escaped as a
    500 (so did reboot's and os-getConsoleOutput's)."""
    server = (await real_ids(cloud, "compute")).by_name["server_id"]
    for body in ({"addSecurityGroup": None}, {"removeSecurityGroup": {"name": 5}},
                 {"reboot": {"type": []}}, {"os-getConsoleOutput": {"length": {}}}):
        response = await cloud.client.post(f"/compute/v2.1/servers/{server}/action",
                                           json=body, headers=cloud.admin.headers)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["badRequest"]["message"]


async def test_a_control_character_in_an_interface_id_is_not_found(cloud: TestCloud) -> None:
    """``GET /servers/{id}/os-interface/<id with \\r>``: the network client refused to build
    the URL (httpx.InvalidURL) and the request was answered 500."""
    server = (await real_ids(cloud, "compute")).by_name["server_id"]
    response = await cloud.client.get(
        f"/compute/v2.1/servers/{server}/os-interface/%C3%99%0D%C2%BF",
        headers=cloud.admin.headers)
    assert response.status_code == 404, response.text
    assert response.json()["itemNotFound"]["message"]


async def test_a_flavor_larger_than_its_columns_is_a_bad_request(cloud: TestCloud) -> None:
    """``ram: 2199023255553``: past the 32-bit column, PostgreSQL refused it (500)."""
    response = await cloud.client.post("/compute/v2.1/flavors", json={"flavor": {
        "vcpus": 13652, "ram": 2199023255553, "name": "big", "disk": 272422}},
        headers=cloud.admin.headers)
    assert response.status_code == 400, response.text
    assert "ram" in response.json()["badRequest"]["message"]


async def test_a_quota_larger_than_its_column_is_a_bad_request(cloud: TestCloud) -> None:
    """``server_group_members: 473774692635``: past the 32-bit column (500 on PostgreSQL)."""
    response = await cloud.client.put(
        f"/compute/v2.1/os-quota-sets/{cloud.admin.project_id}",
        json={"quota_set": {"server_group_members": 473774692635}},
        headers={**cloud.admin.headers, "Content-Type": "application/json; charset=latin-1"})
    assert response.status_code == 400, response.text
    assert "server_group_members" in response.json()["badRequest"]["message"]
