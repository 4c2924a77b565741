"""Flavors: views per microversion, admin-only management, private flavors, paging, specs."""

from __future__ import annotations

from tests.integration.compute.conftest import ROOT, ComputeCloud, assert_compute_error


async def test_seeded_flavors_and_views_per_microversion(cloud: ComputeCloud) -> None:
    brief = (await cloud.compute("GET", "/flavors")).json()["flavors"]
    assert [f["name"] for f in brief] == ["m1.tiny", "m1.small", "m1.medium", "m1.large",
                                          "m1.xlarge"]
    assert brief[0] == {"id": "1", "name": "m1.tiny", "links": [
        {"rel": "self", "href": f"{ROOT}/compute/v2.1/flavors/1"},
        {"rel": "bookmark", "href": f"{ROOT}/compute/flavors/1"}]}

    old = (await cloud.compute("GET", "/flavors/1")).json()["flavor"]
    assert old["swap"] == "" and "description" not in old and "extra_specs" not in old
    assert (old["ram"], old["vcpus"], old["disk"]) == (512, 1, 1)
    assert old["os-flavor-access:is_public"] is True
    assert old["OS-FLV-EXT-DATA:ephemeral"] == 0

    new = (await cloud.compute("GET", "/flavors/1", version="2.75")).json()["flavor"]
    assert new["swap"] == 0 and new["description"] is None and new["extra_specs"] == {}
    assert "description" in (await cloud.compute("GET", "/flavors", version="2.55")).json()[
        "flavors"][0]


async def test_create_show_update_delete(cloud: ComputeCloud) -> None:
    created = await cloud.compute("POST", "/flavors", version="2.61", json={"flavor": {
        "name": "m1.nano", "ram": 128, "vcpus": 1, "disk": 0, "swap": 0,
        "OS-FLV-EXT-DATA:ephemeral": 0, "os-flavor-access:is_public": True, "id": None,
        "description": "small"}})
    assert created.status_code == 200, created.text
    flavor = created.json()["flavor"]
    assert flavor["name"] == "m1.nano" and len(flavor["id"]) == 36
    assert flavor["description"] == "small" and flavor["extra_specs"] == {}

    duplicate = await cloud.compute("POST", "/flavors", json={"flavor": {
        "name": "m1.nano", "ram": 128, "vcpus": 1, "disk": 0}})
    assert_compute_error(duplicate, 409, "conflictingRequest")
    too_early = await cloud.compute("POST", "/flavors", json={"flavor": {
        "name": "described", "ram": 128, "vcpus": 1, "disk": 0, "description": "x"}})
    assert_compute_error(too_early, 400, "badRequest")
    for bad in ({"name": "x", "ram": 0, "vcpus": 1, "disk": 0},
                {"name": "x", "ram": "lots", "vcpus": 1, "disk": 0},
                {"name": "x", "ram": 1, "vcpus": 1, "disk": 0, "colour": "red"},
                {"name": "x", "ram": 1, "vcpus": 1, "disk": 0, "id": " leading"}):
        assert_compute_error(await cloud.compute("POST", "/flavors", json={"flavor": bad}),
                             400, "badRequest")

    updated = await cloud.compute("PUT", f"/flavors/{flavor['id']}", version="2.55",
                                  json={"flavor": {"description": "smaller"}})
    assert updated.json()["flavor"]["description"] == "smaller"

    deleted = await cloud.compute("DELETE", f"/flavors/{flavor['id']}")
    assert deleted.status_code == 202
    assert_compute_error(await cloud.compute("GET", f"/flavors/{flavor['id']}"), 404,
                         "itemNotFound")


async def test_members_cannot_manage_flavors(cloud: ComputeCloud) -> None:
    token, _, _ = await cloud.member("mia")
    listed = await cloud.compute("GET", "/flavors/detail", token=token, version="2.61")
    assert listed.status_code == 200
    assert all("extra_specs" in f for f in listed.json()["flavors"])
    denied = await cloud.compute("POST", "/flavors", token=token, json={"flavor": {
        "name": "mine", "ram": 1, "vcpus": 1, "disk": 0}})
    assert_compute_error(denied, 403, "forbidden")
    assert_compute_error(await cloud.compute("DELETE", "/flavors/1", token=token), 403,
                         "forbidden")


async def test_private_flavors_follow_their_access_list(cloud: ComputeCloud) -> None:
    token, _, project = await cloud.member("pia")
    private = (await cloud.compute("POST", "/flavors", json={"flavor": {
        "name": "secret", "ram": 64, "vcpus": 1, "disk": 0, "id": "secret-1",
        "os-flavor-access:is_public": False}})).json()["flavor"]
    assert private["os-flavor-access:is_public"] is False

    assert_compute_error(await cloud.compute("GET", "/flavors/secret-1", token=token), 404,
                         "itemNotFound")
    seen = await cloud.compute("GET", "/flavors/detail?is_public=None", token=token)
    assert "secret" not in {f["name"] for f in seen.json()["flavors"]}
    admin_all = await cloud.compute("GET", "/flavors/detail?is_public=None")
    assert "secret" in {f["name"] for f in admin_all.json()["flavors"]}
    public_only = await cloud.compute("GET", "/flavors/detail")
    assert "secret" not in {f["name"] for f in public_only.json()["flavors"]}

    added = await cloud.compute("POST", "/flavors/secret-1/action",
                                json={"addTenantAccess": {"tenant": project["id"]}})
    assert added.json() == {"flavor_access": [{"flavor_id": "secret-1",
                                               "tenant_id": project["id"]}]}
    again = await cloud.compute("POST", "/flavors/secret-1/action",
                                json={"addTenantAccess": {"tenant": project["id"]}})
    assert_compute_error(again, 409, "conflictingRequest")
    assert (await cloud.compute("GET", "/flavors/secret-1", token=token)).status_code == 200
    shared = await cloud.compute("GET", "/flavors/detail?is_public=None", token=token)
    assert "secret" in {f["name"] for f in shared.json()["flavors"]}

    removed = await cloud.compute("POST", "/flavors/secret-1/action",
                                  json={"removeTenantAccess": {"tenant": project["id"]}})
    assert removed.json() == {"flavor_access": []}
    assert_compute_error(await cloud.compute("GET", "/flavors/secret-1", token=token), 404,
                         "itemNotFound")


async def test_filters_sorting_and_paging(cloud: ComputeCloud) -> None:
    big = await cloud.compute("GET", "/flavors/detail?minRam=4096&minDisk=50")
    assert [f["name"] for f in big.json()["flavors"]] == ["m1.large", "m1.xlarge"]
    by_ram = await cloud.compute("GET", "/flavors?sort_key=memory_mb&sort_dir=desc")
    assert by_ram.json()["flavors"][0]["name"] == "m1.xlarge"

    first = (await cloud.compute("GET", "/flavors?limit=2")).json()
    assert [f["id"] for f in first["flavors"]] == ["1", "2"]
    (next_link,) = first["flavors_links"]
    assert next_link["rel"] == "next" and "marker=2" in next_link["href"]
    rest = (await cloud.compute("GET", "/flavors?limit=2&marker=2")).json()
    assert [f["id"] for f in rest["flavors"]] == ["3", "4"]
    assert_compute_error(await cloud.compute("GET", "/flavors?marker=nope"), 400, "badRequest")
    assert_compute_error(await cloud.compute("GET", "/flavors?minRam=big"), 400, "badRequest")
    assert_compute_error(await cloud.compute("GET", "/flavors?is_public=maybe"), 400,
                         "badRequest")


async def test_extra_specs(cloud: ComputeCloud) -> None:
    set_specs = await cloud.compute("POST", "/flavors/1/os-extra_specs", json={
        "extra_specs": {"hw:cpu_policy": "dedicated", "aggregate:ssd": "true"}})
    assert set_specs.json() == {"extra_specs": {"hw:cpu_policy": "dedicated",
                                                "aggregate:ssd": "true"}}
    one = await cloud.compute("GET", "/flavors/1/os-extra_specs/hw:cpu_policy")
    assert one.json() == {"hw:cpu_policy": "dedicated"}
    put = await cloud.compute("PUT", "/flavors/1/os-extra_specs/hw:cpu_policy",
                              json={"hw:cpu_policy": "shared"})
    assert put.json() == {"hw:cpu_policy": "shared"}
    mismatch = await cloud.compute("PUT", "/flavors/1/os-extra_specs/hw:cpu_policy",
                                   json={"other": "x"})
    assert_compute_error(mismatch, 400, "badRequest")
    assert (await cloud.compute("DELETE", "/flavors/1/os-extra_specs/aggregate:ssd")
            ).status_code == 200
    assert_compute_error(await cloud.compute("GET", "/flavors/1/os-extra_specs/aggregate:ssd"),
                         404, "itemNotFound")
    shown = (await cloud.compute("GET", "/flavors/1", version="2.61")).json()["flavor"]
    assert shown["extra_specs"] == {"hw:cpu_policy": "shared"}
