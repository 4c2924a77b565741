"""Sharing: the members API, membership status and what each project then sees."""

from __future__ import annotations

from typing import Any

from tests.integration.image.conftest import IMAGE, ImageCloud, Project, assert_error


async def test_sharing_an_image(cloud: ImageCloud) -> None:
    owner, friend, stranger = (await cloud.project(), await cloud.project(),
                               await cloud.project())
    image = await cloud.active_image(b"shared bits", owner, name="shared-img")
    members = f"{IMAGE}/images/{image['id']}/members"

    async def listed(who: Project, query: str = "") -> list[str]:
        response = await cloud.client.get(f"{IMAGE}/images{query}", headers=who.headers)
        assert response.status_code == 200, response.text
        return [i["name"] for i in response.json()["images"]]

    assert_error(await cloud.client.get(f"{IMAGE}/images/{image['id']}",
                                        headers=friend.headers), 404)
    response = await cloud.client.post(members, json={"member": friend.id},
                                       headers=owner.headers)
    assert response.status_code == 200, response.text
    member = response.json()
    assert member["status"] == "pending" and member["member_id"] == friend.id
    assert member["image_id"] == image["id"] and member["schema"] == "/v2/schemas/member"
    assert set(member) == {"created_at", "updated_at", "image_id", "member_id", "schema",
                           "status"}
    assert_error(await cloud.client.post(members, json={"member": friend.id},
                                         headers=owner.headers), 409)

    # Pending: the friend sees the image by id, but not in its default list.
    assert (await cloud.show(image["id"], friend))["name"] == "shared-img"
    assert await listed(friend) == []
    assert await listed(friend, "?member_status=pending") == ["shared-img"]
    assert await listed(friend, "?visibility=shared&member_status=all") == ["shared-img"]
    assert_error(await cloud.client.get(f"{IMAGE}/images/{image['id']}",
                                        headers=stranger.headers), 404)

    # Only the member decides its status; only the owner adds members.
    assert_error(await cloud.client.put(f"{members}/{friend.id}", json={"status": "accepted"},
                                        headers=owner.headers), 403)
    assert_error(await cloud.client.post(members, json={"member": stranger.id},
                                         headers=friend.headers), 403)
    assert_error(await cloud.client.put(f"{members}/{friend.id}", json={"status": "great"},
                                        headers=friend.headers), 400)
    response = await cloud.client.put(f"{members}/{friend.id}", json={"status": "accepted"},
                                      headers=friend.headers)
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    assert await listed(friend) == ["shared-img"]
    data = await cloud.client.get(f"{IMAGE}/images/{image['id']}/file",
                                  headers=friend.headers)
    assert data.content == b"shared bits"
    # ... but it may not change or delete what it was given.
    assert_error(await cloud.patch(image["id"], [{"op": "replace", "path": "/name",
                                                  "value": "mine"}], friend), 403)
    assert_error(await cloud.client.delete(f"{IMAGE}/images/{image['id']}",
                                           headers=friend.headers), 403)

    # Listing members: the owner sees all, a member only itself.
    await cloud.client.post(members, json={"member": stranger.id}, headers=owner.headers)

    async def member_ids(who: Project) -> list[str]:
        response = await cloud.client.get(members, headers=who.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["schema"] == "/v2/schemas/members"
        return sorted(m["member_id"] for m in body["members"])

    assert await member_ids(owner) == sorted([friend.id, stranger.id])
    assert await member_ids(friend) == [friend.id]
    assert_error(await cloud.client.get(f"{members}/{stranger.id}", headers=friend.headers),
                 404)
    shown = await cloud.client.get(f"{members}/{friend.id}", headers=friend.headers)
    assert shown.json()["status"] == "accepted"

    # Rejecting hides it from the default list again; removal hides it altogether.
    await cloud.client.put(f"{members}/{friend.id}", json={"status": "rejected"},
                           headers=friend.headers)
    assert await listed(friend) == []
    assert await listed(friend, "?member_status=rejected") == ["shared-img"]
    assert_error(await cloud.client.delete(f"{members}/{friend.id}", headers=friend.headers),
                 403)
    response = await cloud.client.delete(f"{members}/{friend.id}", headers=owner.headers)
    assert response.status_code == 204
    assert_error(await cloud.client.get(f"{IMAGE}/images/{image['id']}",
                                        headers=friend.headers), 404)


async def test_only_shared_images_have_members(cloud: ImageCloud) -> None:
    owner, friend = await cloud.project(), await cloud.project()
    image = await cloud.create(owner, visibility="private")
    members = f"{IMAGE}/images/{image['id']}/members"
    assert "shared" in assert_error(await cloud.client.post(
        members, json={"member": friend.id}, headers=owner.headers), 403)
    assert_error(await cloud.client.post(members, json={"nobody": 1},
                                         headers=owner.headers), 400)
    await cloud.patch(image["id"], [{"op": "replace", "path": "/visibility",
                                     "value": "shared"}], owner)
    response = await cloud.client.post(members, json={"member": friend.id},
                                       headers=owner.headers)
    assert response.status_code == 200
    # Making it private again ends the sharing, though the membership is kept.
    await cloud.patch(image["id"], [{"op": "replace", "path": "/visibility",
                                     "value": "private"}], owner)
    assert_error(await cloud.client.get(f"{IMAGE}/images/{image['id']}",
                                        headers=friend.headers), 404)
