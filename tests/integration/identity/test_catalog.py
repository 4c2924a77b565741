"""Regions, services and endpoints, and the catalog tokens carry."""

from __future__ import annotations

from typing import Any

from .conftest import ADMIN_PASSWORD, Cloud, assert_error, password_auth, project_scope

API = "http://test/identity/v3"


async def test_regions(cloud: Cloud) -> None:
    listed = (await cloud.get("/v3/regions"))["regions"]
    assert [r["id"] for r in listed] == ["RegionOne"]
    created = await cloud.client.post("/v3/regions", headers=cloud.admin, json={
        "region": {"id": "RegionTwo", "description": "second"}})
    assert created.status_code == 201
    region = created.json()["region"]
    assert region == {"id": "RegionTwo", "description": "second", "parent_region_id": None,
                      "links": {"self": f"{API}/regions/RegionTwo"}}
    child = await cloud.client.put("/v3/regions/RegionTwoA", headers=cloud.admin, json={
        "region": {"parent_region_id": "RegionTwo"}})
    assert child.status_code == 201
    assert child.json()["region"]["parent_region_id"] == "RegionTwo"
    generated = (await cloud.post("/v3/regions", {"region": {}}))["region"]
    assert generated["id"]
    assert_error(await cloud.client.post("/v3/regions", headers=cloud.admin,
                                         json={"region": {"id": "RegionTwo"}}), 409)
    assert_error(await cloud.client.post("/v3/regions", headers=cloud.admin, json={
        "region": {"id": "Orphan", "parent_region_id": "NoSuchRegion"}}), 404)

    assert (await cloud.get("/v3/regions/RegionTwo"))["region"] == region
    children = (await cloud.get("/v3/regions", parent_region_id="RegionTwo"))["regions"]
    assert [r["id"] for r in children] == ["RegionTwoA"]
    assert len((await cloud.get("/v3/regions"))["regions"]) == 4
    # Anybody with a token may read regions.
    member = await cloud.member()
    response = await cloud.client.get("/v3/regions/RegionTwo", headers=member.headers)
    assert response.status_code == 200
    assert_error(await cloud.client.post("/v3/regions", headers=member.headers,
                                         json={"region": {"id": "Mine"}}), 403)

    patched = await cloud.client.patch("/v3/regions/RegionTwoA", headers=cloud.admin,
                                       json={"region": {"description": "child"}})
    assert patched.status_code == 200
    assert patched.json()["region"]["description"] == "child"
    assert_error(await cloud.client.patch("/v3/regions/RegionTwoA", headers=cloud.admin, json={
        "region": {"parent_region_id": "RegionTwoA"}}), 400)
    # A region with children or endpoints stays.
    assert_error(await cloud.client.delete("/v3/regions/RegionTwo", headers=cloud.admin), 409)
    assert_error(await cloud.client.delete("/v3/regions/RegionOne", headers=cloud.admin), 409)
    await cloud.delete("/v3/regions/RegionTwoA")
    await cloud.delete("/v3/regions/RegionTwo")
    assert_error(await cloud.client.get("/v3/regions/RegionTwo", headers=cloud.admin), 404)


def catalog_entry(catalog: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    matches = [s for s in catalog if s["type"] == kind]
    assert len(matches) <= 1
    return matches[0] if matches else None


async def test_services_endpoints_and_catalog(cloud: Cloud) -> None:
    # Bootstrap registers every unit of the all-in-one; this test adds services no unit has.
    bootstrapped = (await cloud.get("/v3/services"))["services"]
    assert {("identity", "keystone"), ("placement", "placement")} <= {
        (s["type"], s["name"]) for s in bootstrapped}
    regional = len((await cloud.get("/v3/endpoints", region_id="RegionOne"))["endpoints"])
    created = await cloud.client.post("/v3/services", headers=cloud.admin, json={
        "service": {"type": "dns", "name": "designate", "description": "Names"}})
    assert created.status_code == 201
    nova = created.json()["service"]
    assert nova["enabled"] is True
    assert nova["links"]["self"] == f"{API}/services/{nova['id']}"
    cinder = (await cloud.post("/v3/services", {"service": {"type": "shared-file-system",
                                                            "name": "manila"}}))["service"]
    assert (await cloud.get(f"/v3/services/{nova['id']}"))["service"] == nova
    assert [s["id"] for s in (await cloud.get("/v3/services", type="dns"))["services"]] == [
        nova["id"]]
    assert [s["id"] for s in (await cloud.get("/v3/services", name="manila"))["services"]] == [
        cinder["id"]]
    assert (await cloud.get("/v3/services", type="key-manager"))["services"] == []

    endpoints = {}
    for interface in ("public", "internal", "admin"):
        response = await cloud.client.post("/v3/endpoints", headers=cloud.admin, json={
            "endpoint": {"service_id": nova["id"], "interface": interface,
                         "url": f"http://test/dns/v2/{interface}",
                         "region_id": "RegionOne"}})
        assert response.status_code == 201
        endpoints[interface] = response.json()["endpoint"]
    public = endpoints["public"]
    assert public["region"] == public["region_id"] == "RegionOne"
    assert public["enabled"] is True and public["service_id"] == nova["id"]
    assert public["links"]["self"] == f"{API}/endpoints/{public['id']}"
    # "region" is the older spelling of "region_id"; a project placeholder is filled per token.
    volume = (await cloud.post("/v3/endpoints", {"endpoint": {
        "service_id": cinder["id"], "interface": "public", "region": "RegionOne",
        "url": "http://test/share/v2/$(project_id)s"}}))["endpoint"]
    assert volume["region_id"] == "RegionOne"
    for bad in ({"service_id": nova["id"], "interface": "sideways", "url": "http://x"},
                {"service_id": nova["id"], "interface": "public", "url": ""},
                {"service_id": nova["id"], "interface": "public"}):
        assert_error(await cloud.client.post("/v3/endpoints", headers=cloud.admin,
                                             json={"endpoint": bad}), 400)
    assert_error(await cloud.client.post("/v3/endpoints", headers=cloud.admin, json={
        "endpoint": {"service_id": "nosuchservice", "interface": "public",
                     "url": "http://x"}}), 404)

    assert (await cloud.get(f"/v3/endpoints/{public['id']}"))["endpoint"] == public
    by_service = (await cloud.get("/v3/endpoints", service_id=nova["id"]))["endpoints"]
    assert sorted(e["id"] for e in by_service) == sorted(e["id"] for e in endpoints.values())
    public_ones = (await cloud.get("/v3/endpoints", interface="public"))["endpoints"]
    assert {e["service_id"] for e in public_ones} == {
        nova["id"], cinder["id"], *(s["id"] for s in bootstrapped)}
    both = (await cloud.get("/v3/endpoints", service_id=nova["id"],
                            interface="admin"))["endpoints"]
    assert [e["id"] for e in both] == [endpoints["admin"]["id"]]
    assert len((await cloud.get("/v3/endpoints", region_id="RegionOne"))["endpoints"]) == (
        regional + 4)
    assert (await cloud.get("/v3/endpoints", region_id="Elsewhere"))["endpoints"] == []

    # The catalog: in new tokens and at /v3/auth/catalog, project placeholders filled in.
    member = await cloud.member()
    compute = catalog_entry(member.body["catalog"], "dns")
    assert compute is not None and compute["name"] == "designate" and compute["id"] == nova["id"]
    assert sorted((e["interface"], e["url"]) for e in compute["endpoints"]) == [
        ("admin", "http://test/dns/v2/admin"),
        ("internal", "http://test/dns/v2/internal"),
        ("public", "http://test/dns/v2/public")]
    storage = catalog_entry(member.body["catalog"], "shared-file-system")
    assert storage is not None
    assert [e["url"] for e in storage["endpoints"]] == [
        f"http://test/share/v2/{member.project['id']}"]
    auth_catalog = (await cloud.client.get("/v3/auth/catalog", headers=member.headers)).json()
    assert auth_catalog["catalog"] == member.body["catalog"]
    # Without a project there is nothing to fill the placeholder with.
    _, system_body = await cloud.issue(password_auth(
        user_id=cloud.admin_user_id, password=ADMIN_PASSWORD, scope={"system": {"all": True}}))
    assert catalog_entry(system_body["catalog"], "shared-file-system") is None
    assert catalog_entry(system_body["catalog"], "dns") is not None

    # Updates show in the catalog of tokens validated afterwards.
    response = await cloud.client.patch(f"/v3/endpoints/{public['id']}", headers=cloud.admin,
                                        json={"endpoint": {"url": "http://test/dns/v2"}})
    assert response.status_code == 200 and response.json()["endpoint"]["url"] == (
        "http://test/dns/v2")
    response = await cloud.client.patch(f"/v3/endpoints/{endpoints['admin']['id']}",
                                        headers=cloud.admin,
                                        json={"endpoint": {"enabled": False}})
    assert response.json()["endpoint"]["enabled"] is False
    assert_error(await cloud.client.patch(f"/v3/endpoints/{public['id']}", headers=cloud.admin,
                                          json={"endpoint": {"interface": "sideways"}}), 400)
    body = (await cloud.validate(member.token)).json()["token"]
    compute = catalog_entry(body["catalog"], "dns")
    assert compute is not None
    assert sorted((e["interface"], e["url"]) for e in compute["endpoints"]) == [
        ("internal", "http://test/dns/v2/internal"),
        ("public", "http://test/dns/v2")]
    # A disabled service leaves the catalog altogether.
    response = await cloud.client.patch(f"/v3/services/{cinder['id']}", headers=cloud.admin,
                                        json={"service": {"enabled": False, "name": "cinder2"}})
    assert response.json()["service"]["enabled"] is False
    assert response.json()["service"]["name"] == "cinder2"
    catalog = (await cloud.client.get("/v3/auth/catalog", headers=member.headers)).json()
    assert catalog_entry(catalog["catalog"], "shared-file-system") is None
    assert catalog_entry(catalog["catalog"], "identity") is not None

    # Non-admins cannot manage the catalog.
    for method, path in (("GET", "/v3/services"), ("GET", "/v3/endpoints"),
                         ("POST", "/v3/services"), ("DELETE", f"/v3/endpoints/{public['id']}")):
        response = await cloud.client.request(method, path, headers=member.headers,
                                              json={"service": {"type": "x"}})
        assert_error(response, 403)

    await cloud.delete(f"/v3/endpoints/{public['id']}")
    assert_error(await cloud.client.get(f"/v3/endpoints/{public['id']}", headers=cloud.admin),
                 404)
    # Deleting a service takes its endpoints along.
    await cloud.delete(f"/v3/services/{nova['id']}")
    assert_error(await cloud.client.get(f"/v3/services/{nova['id']}", headers=cloud.admin), 404)
    assert (await cloud.get("/v3/endpoints", service_id=nova["id"]))["endpoints"] == []
    _, body = await cloud.issue(password_auth(user_id=member.user["id"],
                                              password=member.password,
                                              scope=project_scope(member.project["id"])))
    assert catalog_entry(body["catalog"], "dns") is None
