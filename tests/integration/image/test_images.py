"""Image metadata: create, show, list (filters, sorting, pages), JSON-patch, tags, actions."""

from __future__ import annotations

import uuid
from typing import Any

from tests.integration.image.conftest import IMAGE, ImageCloud, assert_error

FIELDS = {"id", "name", "status", "visibility", "protected", "os_hidden", "checksum",
          "os_hash_algo", "os_hash_value", "owner", "size", "virtual_size", "min_ram",
          "min_disk", "disk_format", "container_format", "created_at", "updated_at", "tags",
          "self", "file", "schema"}


async def test_discovery_and_schemas_need_no_token(cloud: ImageCloud) -> None:
    response = await cloud.client.get("/image/")
    assert response.status_code == 300
    versions = response.json()["versions"]
    current = [v for v in versions if v["status"] == "CURRENT"]
    assert len(current) == 1 and current[0]["id"].startswith("v2.")
    assert {v["links"][0]["href"] for v in versions} == {"http://test/image/v2/"}
    assert (await cloud.client.get("/image/versions")).status_code == 200

    schema = (await cloud.client.get(f"{IMAGE}/schemas/image")).json()
    assert schema["name"] == "image"
    assert "qcow2" in schema["properties"]["disk_format"]["enum"]
    assert schema["additionalProperties"] == {"type": "string"}
    for name in ("images", "member", "members"):
        assert (await cloud.client.get(f"{IMAGE}/schemas/{name}")).json()["name"] == name
    assert_error(await cloud.client.get(f"{IMAGE}/images"), 401)


async def test_create_returns_the_bare_image_with_properties(cloud: ImageCloud) -> None:
    body = {"name": "cirros", "disk_format": "qcow2", "container_format": "bare",
            "owner_specified.openstack.md5": "", "owner_specified.openstack.object":
            "images/cirros", "hw_disk_bus": "virtio", "tags": ["a", "b", "a"],
            "min_ram": 64}
    response = await cloud.client.post(f"{IMAGE}/images", json=body,
                                       headers=cloud.admin.headers)
    assert response.status_code == 201, response.text
    image = response.json()
    assert FIELDS <= set(image)
    assert image["status"] == "queued" and image["visibility"] == "shared"
    assert image["size"] is None and image["checksum"] is None and image["virtual_size"] is None
    assert image["owner"] == cloud.admin.id
    assert image["hw_disk_bus"] == "virtio"
    assert image["owner_specified.openstack.object"] == "images/cirros"
    assert image["tags"] == ["a", "b"] and image["min_ram"] == 64
    assert image["self"] == f"/v2/images/{image['id']}"
    assert image["file"] == f"/v2/images/{image['id']}/file"
    assert image["created_at"].endswith("Z")
    assert await cloud.show(image["id"]) == image

    chosen = str(uuid.uuid4())
    assert (await cloud.create(id=chosen))["id"] == chosen
    assert_error(await cloud.client.post(f"{IMAGE}/images", json={"id": chosen},
                                         headers=cloud.admin.headers), 409)


async def test_bad_create_bodies(cloud: ImageCloud) -> None:
    async def post(body: Any) -> Any:
        return await cloud.client.post(f"{IMAGE}/images", json=body,
                                       headers=cloud.admin.headers)

    message = assert_error(await post({"name": "x", "disk_format": "floppy"}), 400)
    assert "disk_format" in message and "floppy" in message
    assert_error(await post({"container_format": "tarball"}), 400)
    assert "string" in assert_error(await post({"hw_cpu_cores": 4}), 400)
    assert_error(await post({"visibility": "everyone"}), 400)
    assert_error(await post({"min_disk": -1}), 400)
    assert_error(await post({"protected": "yes"}), 400)
    assert_error(await post({"id": "not-a-uuid"}), 400)
    assert_error(await post([1, 2]), 400)
    assert "read-only" in assert_error(await post({"status": "active"}), 403)
    assert "read-only" in assert_error(await post({"size": 5}), 403)
    assert "reserved" in assert_error(await post({"location": "file:///etc/passwd"}), 403)
    # os_glance_* is the service's own namespace (Glance's), on create and on update.
    assert "reserved" in assert_error(await post({"os_glance_foo": "bar"}), 403)
    image = await cloud.create()
    assert "reserved" in assert_error(await cloud.patch(image["id"], [
        {"op": "add", "path": "/os_glance_import_task", "value": "x"}]), 403)
    response = await cloud.client.post(f"{IMAGE}/images", content=b"{nope",
                                       headers={**cloud.admin.headers,
                                                "Content-Type": "application/json"})
    assert_error(response, 400)


async def test_visibility_rules(cloud: ImageCloud) -> None:
    alice, bob = await cloud.project(), await cloud.project()
    private = await cloud.create(alice, name="mine", visibility="private")
    community = await cloud.create(alice, name="comm", visibility="community")
    assert_error(await cloud.client.post(f"{IMAGE}/images", json={"visibility": "public"},
                                         headers=alice.headers), 403)
    public = await cloud.create(name="pub", visibility="public")

    # Another project's private image is not there at all, whatever the verb.
    path = f"{IMAGE}/images/{private['id']}"
    assert "No image found" in assert_error(
        await cloud.client.get(path, headers=bob.headers), 404)
    assert_error(await cloud.patch(private["id"], [{"op": "replace", "path": "/name",
                                                   "value": "x"}], bob), 404)
    assert_error(await cloud.client.delete(path, headers=bob.headers), 404)
    assert_error(await cloud.upload(private["id"], b"data", bob), 404)
    assert_error(await cloud.client.get(f"{path}/file", headers=bob.headers), 404)
    assert (await cloud.show(private["id"], alice))["name"] == "mine"
    assert (await cloud.show(private["id"]))["name"] == "mine"  # admin sees all

    # Public and community images are visible but not writable by others.
    assert (await cloud.show(public["id"], bob))["name"] == "pub"
    assert (await cloud.show(community["id"], bob))["name"] == "comm"
    assert_error(await cloud.patch(community["id"], [{"op": "replace", "path": "/name",
                                                     "value": "x"}], bob), 403)

    async def names(who: Any, query: str = "") -> set[str]:
        response = await cloud.client.get(f"{IMAGE}/images{query}", headers=who.headers)
        assert response.status_code == 200, response.text
        return {i["name"] for i in response.json()["images"]}

    assert await names(bob) == {"pub"}                    # community only when asked
    assert await names(bob, "?visibility=community") == {"comm"}
    assert await names(bob, "?visibility=all") == {"pub", "comm"}
    assert await names(bob, "?visibility=private") == set()
    assert await names(alice) == {"pub", "mine", "comm"}
    assert await names(cloud.admin) == {"pub", "mine", "comm"}
    assert_error(await cloud.client.get(f"{IMAGE}/images?visibility=nobody",
                                        headers=bob.headers), 400)
    assert_error(await cloud.client.get(f"{IMAGE}/images/not-a-uuid",
                                        headers=bob.headers), 404)

    reader = await cloud.project("reader")
    assert await names(reader) == {"pub"}
    assert_error(await cloud.client.post(f"{IMAGE}/images", json={},
                                         headers=reader.headers), 403)


async def test_filters(cloud: ImageCloud) -> None:
    one = await cloud.active_image(b"1" * 10, name="one", tags=["x", "y"], hw_arch="x86")
    two = await cloud.active_image(b"2" * 20, name="two", tags=["x"], disk_format="iso")
    three = await cloud.create(name="three", os_hidden=True, protected=True)

    async def ids(query: str) -> list[str]:
        response = await cloud.client.get(f"{IMAGE}/images?{query}",
                                          headers=cloud.admin.headers)
        assert response.status_code == 200, response.text
        return sorted(i["id"] for i in response.json()["images"])

    assert await ids("name=one") == [one["id"]]
    assert await ids("name=in:one,two") == sorted([one["id"], two["id"]])
    assert await ids(f"id=in:{one['id']},{three['id']}") == [one["id"]]  # three is hidden
    assert await ids("os_hidden=true") == [three["id"]]
    assert await ids("status=queued&os_hidden=true") == [three["id"]]
    assert await ids("status=active") == sorted([one["id"], two["id"]])
    assert await ids("tag=x") == sorted([one["id"], two["id"]])
    assert await ids("tag=x&tag=y") == [one["id"]]
    assert await ids("disk_format=iso") == [two["id"]]
    assert await ids("hw_arch=x86") == [one["id"]]
    assert await ids("size_min=15") == [two["id"]]
    assert await ids("size_max=15") == [one["id"]]
    # Image attributes are compared as columns, not as additional properties (Tempest's
    # test_list_images_param_size).
    assert await ids("size=20") == [two["id"]]
    assert await ids("size=20&disk_format=raw") == []
    assert await ids(f"checksum={one['checksum']}") == [one["id"]]
    assert await ids("min_ram=0&min_disk=0&status=active") == sorted([one["id"], two["id"]])
    assert await ids(f"owner={cloud.admin.id}&protected=true&os_hidden=true") == [three["id"]]
    assert await ids(f"created_at=gte:{one['created_at']}") == sorted([one["id"], two["id"]])
    assert await ids("created_at=lt:2000-01-01T00:00:00Z") == []
    for bad in ("size_min=big", "size=big", "os_hidden=maybe", "member_status=happy",
                "created_at=gt:yesterday", "limit=-1"):
        assert_error(await cloud.client.get(f"{IMAGE}/images?{bad}",
                                            headers=cloud.admin.headers), 400)


async def test_sorting_and_pagination(cloud: ImageCloud) -> None:
    names = ["delta", "alpha", "echo", "charlie", "bravo", None, "alpha"]
    created = [await cloud.create(name=n, min_disk=i) for i, n in enumerate(names)]

    async def page(url: str) -> dict[str, Any]:
        response = await cloud.client.get(url, headers=cloud.admin.headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    everything = await page(f"{IMAGE}/images")
    assert "next" not in everything
    assert [i["id"] for i in everything["images"]] == [i["id"] for i in reversed(created)]

    for query, key in (("sort_key=name&sort_dir=asc", "name"), ("sort=name:asc", "name"),
                       ("sort_key=min_disk&sort_dir=desc", "min_disk")):
        seen: list[dict[str, Any]] = []
        url = f"{IMAGE}/images?limit=2&{query}"
        pages = 0
        while True:
            body = await page(url)
            pages += 1
            assert len(body["images"]) <= 2
            seen.extend(body["images"])
            assert body["first"].startswith("/v2/images?")
            if "next" not in body:
                break
            assert body["next"].startswith("/v2/images?") and "marker=" in body["next"]
            url = "/image" + body["next"]
        assert pages == 4
        assert sorted(i["id"] for i in seen) == sorted(i["id"] for i in created)
        values = [(i[key] if i[key] is not None else "") for i in seen]
        if key == "name":
            assert values == sorted(values)
        else:
            assert values == sorted(values, reverse=True)

    multi = await page(f"{IMAGE}/images?sort_key=name&sort_key=min_disk&sort_dir=asc"
                       "&sort_dir=desc")
    alphas = [i["min_disk"] for i in multi["images"] if i["name"] == "alpha"]
    assert alphas == [6, 1]
    for bad in ("sort_key=colour", "sort_dir=up", "sort=name:up",
                "sort=name&sort_key=name", f"marker={uuid.uuid4()}"):
        assert_error(await cloud.client.get(f"{IMAGE}/images?{bad}",
                                            headers=cloud.admin.headers), 400)


async def test_json_patch(cloud: ImageCloud) -> None:
    image = await cloud.create(name="old", hw_a="1", hw_b="2")
    response = await cloud.patch(image["id"], [
        {"op": "replace", "path": "/name", "value": "new"},
        {"op": "add", "path": "/hw_c", "value": "3"},
        {"op": "add", "path": "/hw_a", "value": "one"},
        {"op": "replace", "path": "/hw_b", "value": "two"},
        {"op": "add", "path": "/tags", "value": ["t1", "t2"]},
        {"op": "replace", "path": "/min_disk", "value": 5},
        {"op": "add", "path": "/a~1b", "value": "slash"},
    ])
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["hw_a"], body["hw_b"], body["hw_c"]) == ("new", "one", "two", "3")
    assert body["tags"] == ["t1", "t2"] and body["min_disk"] == 5 and body["a/b"] == "slash"
    response = await cloud.patch(image["id"], [{"op": "remove", "path": "/hw_c"}])
    assert "hw_c" not in response.json()

    # Glance's draft dialect, as Tempest sends it.
    draft = await cloud.client.patch(
        f"{IMAGE}/images/{image['id']}", json=[{"replace": "/name", "value": "drafted"},
                                               {"add": "/hw_d", "value": "4"}],
        headers={**cloud.admin.headers,
                 "Content-Type": "application/openstack-images-v2.0-json-patch"})
    assert draft.status_code == 200 and draft.json()["name"] == "drafted"
    assert draft.json()["hw_d"] == "4"

    async def fails(ops: list[dict[str, Any]], status: int) -> str:
        return assert_error(await cloud.patch(image["id"], ops), status)

    assert "does not exist" in await fails([{"op": "replace", "path": "/nope",
                                             "value": "x"}], 409)
    await fails([{"op": "remove", "path": "/nope"}], 409)
    await fails([{"op": "replace", "path": "/status", "value": "active"}], 403)
    await fails([{"op": "replace", "path": "/checksum", "value": "0"}], 403)
    await fails([{"op": "remove", "path": "/name"}], 403)
    await fails([{"op": "add", "path": "/hw_e", "value": 5}], 400)
    await fails([{"op": "move", "from": "/hw_a", "path": "/hw_z"}], 400)
    await fails([{"op": "add", "path": "hw_e", "value": "x"}], 400)
    await fails([{"op": "replace", "path": "/disk_format", "value": "floppy"}], 400)
    await fails([{"op": "replace", "path": "/visibility", "value": "public"},
                 {"op": "replace", "path": "/hw_nope", "value": "x"}], 409)
    assert (await cloud.show(image["id"]))["visibility"] == "shared"  # all or nothing
    wrong_type = await cloud.client.patch(f"{IMAGE}/images/{image['id']}", json=[],
                                          headers={**cloud.admin.headers,
                                                   "Content-Type": "application/json"})
    assert_error(wrong_type, 415)

    active = await cloud.active_image(b"data")
    assert "queued" in assert_error(await cloud.patch(active["id"], [
        {"op": "replace", "path": "/disk_format", "value": "qcow2"}]), 403)


async def test_tags_protected_and_delete(cloud: ImageCloud) -> None:
    alice = await cloud.project()
    image = await cloud.create(alice, protected=True)
    path = f"{IMAGE}/images/{image['id']}"
    for tag in ("blue", "green", "blue"):
        response = await cloud.client.put(f"{path}/tags/{tag}", headers=alice.headers)
        assert response.status_code == 204 and response.content == b""
    assert (await cloud.show(image["id"], alice))["tags"] == ["blue", "green"]
    assert (await cloud.client.delete(f"{path}/tags/blue", headers=alice.headers)
            ).status_code == 204
    assert_error(await cloud.client.delete(f"{path}/tags/blue", headers=alice.headers), 404)
    assert (await cloud.show(image["id"], alice))["tags"] == ["green"]

    assert "protected" in assert_error(
        await cloud.client.delete(path, headers=alice.headers), 403)
    response = await cloud.patch(image["id"], [{"op": "replace", "path": "/protected",
                                                "value": False}], alice)
    assert response.status_code == 200
    response = await cloud.client.delete(path, headers=alice.headers)
    assert response.status_code == 204 and response.content == b""
    assert_error(await cloud.client.get(path, headers=alice.headers), 404)
    assert_error(await cloud.client.delete(path, headers=alice.headers), 404)


async def test_deactivate_and_reactivate(cloud: ImageCloud) -> None:
    alice, bob = await cloud.project(), await cloud.project()
    image = await cloud.active_image(b"bits", alice)
    queued = await cloud.create(alice)
    actions = f"{IMAGE}/images/{image['id']}/actions"
    assert_error(await cloud.client.post(f"{IMAGE}/images/{queued['id']}/actions/deactivate",
                                         headers=alice.headers), 400)
    response = await cloud.client.post(f"{actions}/deactivate", headers=alice.headers)
    assert response.status_code == 204
    assert (await cloud.show(image["id"], alice))["status"] == "deactivated"
    message = assert_error(await cloud.client.get(f"{IMAGE}/images/{image['id']}/file",
                                                  headers=alice.headers), 403)
    assert "deactivated" in message
    admin_copy = await cloud.client.get(f"{IMAGE}/images/{image['id']}/file",
                                        headers=cloud.admin.headers)
    assert admin_copy.content == b"bits"
    assert_error(await cloud.client.post(f"{actions}/reactivate", headers=bob.headers), 404)
    assert (await cloud.client.post(f"{actions}/reactivate", headers=alice.headers)
            ).status_code == 204
    assert (await cloud.client.get(f"{IMAGE}/images/{image['id']}/file",
                                   headers=alice.headers)).content == b"bits"
