"""Glance's metadata definitions catalog: the seeded namespaces, listing (filters, paging),
show with a resource type's prefix, admin-only writes, protection, visibility, schemas."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.image.conftest import IMAGE, ImageCloud, Project, assert_error

NS = f"{IMAGE}/metadefs/namespaces"
SEEDED = {"OS::Compute::Architecture", "OS::Compute::Hypervisor",
          "OS::Glance::CommonImageProperties"}


async def get(cloud: ImageCloud, path: str, who: Project | None = None,
              **params: Any) -> httpx.Response:
    return await cloud.client.get(path, params=params, headers=(who or cloud.admin).headers)


async def test_seeded_catalog_read_by_members(cloud: ImageCloud) -> None:
    member = await cloud.project()
    listed = await get(cloud, NS, member)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["schema"] == "/v2/schemas/metadefs/namespaces"
    assert body["first"] == "/v2/metadefs/namespaces" and "next" not in body
    assert {n["namespace"] for n in body["namespaces"]} == SEEDED
    for namespace in body["namespaces"]:
        assert namespace["visibility"] == "public" and namespace["protected"] is True
        assert namespace["self"] == f"/v2/metadefs/namespaces/{namespace['namespace']}"
        assert namespace["schema"] == "/v2/schemas/metadefs/namespace"
        assert namespace["created_at"].endswith("Z") and "properties" not in namespace
        assert all(a["name"] and a["created_at"]
                   for a in namespace["resource_type_associations"])

    volumes = (await get(cloud, NS, member, resource_types="OS::Cinder::Volume")).json()
    assert {n["namespace"] for n in volumes["namespaces"]} == {
        "OS::Compute::Architecture", "OS::Glance::CommonImageProperties"}
    both = (await get(cloud, NS, member,
                      resource_types="OS::Nova::Flavor,OS::Glance::Image")).json()
    assert {n["namespace"] for n in both["namespaces"]} == SEEDED
    assert (await get(cloud, NS, member, visibility="private")).json()["namespaces"] == []
    assert_error(await get(cloud, NS, member, visibility="shared"), 400)

    # Paging by name, in the order asked for.
    seen: list[str] = []
    page = (await get(cloud, NS, member, limit=2, sort_key="namespace",
                      sort_dir="asc")).json()
    seen += [n["namespace"] for n in page["namespaces"]]
    assert "next" in page and len(seen) == 2
    rest = await cloud.client.get(f"/image{page['next']}", headers=member.headers)
    seen += [n["namespace"] for n in rest.json()["namespaces"]]
    assert seen == sorted(SEEDED)
    assert_error(await get(cloud, NS, member, sort_key="owner"), 400)
    assert_error(await get(cloud, NS, member, marker="no-such-namespace"), 400)

    shown = (await get(cloud, f"{NS}/OS::Compute::Architecture", member)).json()
    assert shown["properties"]["hw_architecture"]["type"] == "string"
    assert "x86_64" in shown["properties"]["hw_architecture"]["enum"]
    assert "objects" not in shown and "tags" not in shown
    assert_error(await get(cloud, f"{NS}/OS::No::Such", member), 404)
    props = (await get(cloud, f"{NS}/OS::Compute::Hypervisor/properties", member)).json()
    assert set(props["properties"]) == {"img_hv_type"}
    one = (await get(cloud, f"{NS}/OS::Compute::Hypervisor/properties/img_hv_type",
                     member)).json()
    assert one["name"] == "img_hv_type" and one["title"] == "Hypervisor Type"
    assert_error(await get(cloud, f"{NS}/OS::Compute::Hypervisor/properties/nope", member),
                 404)
    assocs = (await get(cloud, f"{NS}/OS::Compute::Architecture/resource_types",
                        member)).json()["resource_type_associations"]
    assert {a["name"] for a in assocs} == {"OS::Glance::Image", "OS::Cinder::Volume"}
    objects = (await get(cloud, f"{NS}/OS::Compute::Architecture/objects", member)).json()
    assert objects["objects"] == []
    assert (await get(cloud, f"{NS}/OS::Compute::Architecture/tags", member)).json() == {
        "tags": []}
    types = (await get(cloud, f"{IMAGE}/metadefs/resource_types", member)).json()
    assert [t["name"] for t in types["resource_types"]] == [
        "OS::Cinder::Volume", "OS::Glance::Image"]
    # Members only read: every write is an admin's.
    assert_error(await cloud.client.post(NS, json={"namespace": "mine"},
                                         headers=member.headers), 403)
    assert_error(await cloud.client.delete(f"{NS}/OS::Compute::Hypervisor",
                                           headers=member.headers), 403)


async def test_admin_writes_and_private_namespaces(cloud: ImageCloud) -> None:
    member = await cloud.project()
    created = await cloud.client.post(NS, headers=cloud.admin.headers, json={
        "namespace": "Stratus::Test", "display_name": "Test", "description": "For tests.",
        "visibility": "private", "protected": True,
        "resource_type_associations": [{"name": "OS::Nova::Flavor", "prefix": "test:"}],
        "properties": {"speed": {"title": "Speed", "type": "integer", "minimum": 1}}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["Location"] == "/v2/metadefs/namespaces/Stratus::Test"
    assert body["owner"] == cloud.admin.id and body["properties"]["speed"]["minimum"] == 1
    assert body["resource_type_associations"][0]["prefix"] == "test:"
    # As the flavor sees it, the prefix is part of the names.
    flavor = (await get(cloud, f"{NS}/Stratus::Test", resource_type="OS::Nova::Flavor")
              ).json()
    assert set(flavor["properties"]) == {"test:speed"}
    # Private: another project neither lists nor shows it.
    listed = (await get(cloud, NS, member)).json()["namespaces"]
    assert "Stratus::Test" not in {n["namespace"] for n in listed}
    assert_error(await get(cloud, f"{NS}/Stratus::Test", member), 404)
    admins = (await get(cloud, NS, visibility="private")).json()["namespaces"]
    assert [n["namespace"] for n in admins] == ["Stratus::Test"]

    assert_error(await cloud.client.post(NS, headers=cloud.admin.headers,
                                         json={"namespace": "Stratus::Test"}), 409)
    for bad in ({}, {"namespace": ""}, {"namespace": "x" * 81},
                {"namespace": "a", "visibility": "shared"}, {"namespace": "a", "bogus": 1},
                {"namespace": "a", "properties": {"p": {"type": "string"}}},
                {"namespace": "a", "properties": {"p": {"title": "P", "type": "text"}}},
                {"namespace": "a", "resource_type_associations": [{"prefix": "x"}]},
                {"namespace": "a", "protected": "yes"}):
        assert_error(await cloud.client.post(NS, headers=cloud.admin.headers, json=bad), 400)
    assert_error(await cloud.client.post(NS, headers=cloud.admin.headers, content=b"[1"), 400)

    assert_error(await cloud.client.delete(f"{NS}/Stratus::Test",
                                           headers=cloud.admin.headers), 403)
    updated = await cloud.client.put(f"{NS}/Stratus::Test", headers=cloud.admin.headers,
                                     json={"namespace": "Stratus::Renamed",
                                           "protected": False, "visibility": "public"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["protected"] is False
    assert updated.json()["self"] == "/v2/metadefs/namespaces/Stratus::Renamed"
    assert (await get(cloud, f"{NS}/Stratus::Renamed", member)).status_code == 200
    gone = await cloud.client.delete(f"{NS}/Stratus::Renamed", headers=cloud.admin.headers)
    assert gone.status_code == 204
    assert_error(await get(cloud, f"{NS}/Stratus::Renamed"), 404)
    assert {n["namespace"] for n in (await get(cloud, NS)).json()["namespaces"]} == SEEDED


async def test_metadef_schemas(cloud: ImageCloud) -> None:
    member = await cloud.project()
    for name in ("namespace", "namespaces", "resource_type", "resource_types", "property",
                 "properties", "object", "objects", "tag", "tags"):
        response = await get(cloud, f"{IMAGE}/schemas/metadefs/{name}", member)
        assert response.status_code == 200, (name, response.text)
        assert response.json()["name"] and response.json()["properties"]
    namespace = (await get(cloud, f"{IMAGE}/schemas/metadefs/namespace")).json()
    assert namespace["required"] == ["namespace"]
    assert namespace["properties"]["visibility"]["enum"] == ["public", "private"]
    assert_error(await get(cloud, f"{IMAGE}/schemas/metadefs/nothing"), 404)


async def test_namespace_parts_written_by_admins(cloud: ImageCloud) -> None:
    admin = cloud.admin.headers
    member = await cloud.project()
    base = f"{NS}/Stratus::Parts"
    assert (await cloud.client.post(NS, headers=admin, json={
        "namespace": "Stratus::Parts", "visibility": "public"})).status_code == 201

    # Resource type associations.
    made = await cloud.client.post(f"{base}/resource_types", headers=admin,
                                   json={"name": "OS::Nova::Flavor", "prefix": "p:"})
    assert made.status_code == 201 and made.json()["name"] == "OS::Nova::Flavor"
    assert made.json()["created_at"].endswith("Z")
    assert_error(await cloud.client.post(f"{base}/resource_types", headers=admin,
                                         json={"name": "OS::Nova::Flavor"}), 409)
    assert_error(await cloud.client.post(f"{base}/resource_types", headers=admin,
                                         json={"prefix": "x"}), 400)
    types = (await get(cloud, f"{IMAGE}/metadefs/resource_types")).json()["resource_types"]
    assert "OS::Nova::Flavor" in {t["name"] for t in types}

    # Properties: create, show (with the flavor's prefix in the namespace), rename, delete.
    prop = await cloud.client.post(f"{base}/properties", headers=admin, json={
        "name": "speed", "title": "Speed", "type": "string", "enum": ["a", "b"]})
    assert prop.status_code == 201 and prop.json()["title"] == "Speed"
    assert_error(await cloud.client.post(f"{base}/properties", headers=admin, json={
        "name": "speed", "title": "Speed", "type": "string"}), 409)
    assert_error(await cloud.client.post(f"{base}/properties", headers=admin, json={
        "name": "bad", "type": "string"}), 400)
    shown = (await get(cloud, base, resource_type="OS::Nova::Flavor")).json()
    assert set(shown["properties"]) == {"p:speed"}
    renamed = await cloud.client.put(f"{base}/properties/speed", headers=admin, json={
        "name": "pace", "title": "Pace", "type": "string"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "pace"
    assert_error(await get(cloud, f"{base}/properties/speed"), 404)
    assert (await cloud.client.delete(f"{base}/properties/pace",
                                      headers=admin)).status_code == 204
    assert (await get(cloud, f"{base}/properties")).json() == {"properties": {}}

    # Objects.
    obj = await cloud.client.post(f"{base}/objects", headers=admin, json={
        "name": "disk", "description": "A disk", "required": ["size"],
        "properties": {"size": {"title": "Size", "type": "integer"}}})
    assert obj.status_code == 201, obj.text
    assert obj.json()["self"] == "/v2/metadefs/namespaces/Stratus::Parts/objects/disk"
    listed = (await get(cloud, f"{base}/objects", member)).json()["objects"]
    assert [o["name"] for o in listed] == ["disk"]
    moved = await cloud.client.put(f"{base}/objects/disk", headers=admin,
                                   json={"name": "volume"})
    assert moved.status_code == 200 and moved.json()["name"] == "volume"
    assert (await get(cloud, f"{base}/objects/volume")).json()["name"] == "volume"
    assert_error(await get(cloud, f"{base}/objects/disk"), 404)
    assert (await cloud.client.delete(f"{base}/objects/volume",
                                      headers=admin)).status_code == 204

    # Tags: a set replaced or appended to, one created, renamed and deleted.
    tags = await cloud.client.post(f"{base}/tags", headers=admin,
                                   json={"tags": [{"name": "a"}, {"name": "b"}]})
    assert tags.status_code == 201 and tags.json() == {"tags": [{"name": "a"},
                                                               {"name": "b"}]}
    assert (await cloud.client.post(f"{base}/tags", headers={**admin,
                                    "X-Openstack-Append": "True"},
                                    json={"tags": [{"name": "c"}]})).status_code == 201
    assert_error(await cloud.client.post(f"{base}/tags", headers=admin,
                                         json={"tags": [{"name": "x"}, {"name": "x"}]}), 409)
    assert (await cloud.client.post(f"{base}/tags/d", headers=admin)).status_code == 201
    renamed_tag = await cloud.client.put(f"{base}/tags/d", headers=admin, json={"name": "e"})
    assert renamed_tag.json()["name"] == "e"
    assert (await get(cloud, f"{base}/tags/e", member)).json()["name"] == "e"
    names = [t["name"] for t in (await get(cloud, f"{base}/tags")).json()["tags"]]
    assert names == ["a", "b", "c", "e"]
    assert (await cloud.client.delete(f"{base}/tags/e", headers=admin)).status_code == 204
    assert_error(await get(cloud, f"{base}/tags/e"), 404)
    assert (await cloud.client.delete(f"{base}/tags", headers=admin)).status_code == 204
    assert (await get(cloud, f"{base}/tags")).json() == {"tags": []}

    # Members write none of it.
    for method, path, body in (("POST", f"{base}/properties", {"name": "m", "title": "M",
                                                                "type": "string"}),
                               ("POST", f"{base}/objects", {"name": "m"}),
                               ("POST", f"{base}/tags/m", None),
                               ("DELETE", f"{base}/resource_types/OS::Nova::Flavor", None)):
        response = await cloud.client.request(method, path, json=body,
                                              headers=member.headers)
        assert_error(response, 403)
    assert (await cloud.client.delete(f"{base}/resource_types/OS::Nova::Flavor",
                                      headers=admin)).status_code == 204
    assert_error(await cloud.client.delete(f"{base}/resource_types/OS::Nova::Flavor",
                                           headers=admin), 404)
