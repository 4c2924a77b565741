"""The ``rbd`` store on the run's real Ceph: ``<id>.partial`` until commit, then ``<id>`` with
a protected snapshot ``snap``; ranged reads; abort and the start-up sweep leave nothing;
delete refuses while a clone exists. Then the image API on it: ``direct_url`` for services
only, an interrupted upload leaves nothing, ``DELETE`` → 409 while cloned."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stratus.core.ceph import rbd_location
from stratus.core.ceph_dev import DevCluster
from stratus.core.config import CephSettings
from stratus.image.stores import ObjectMissing
from stratus.image.stores.rbd import InUse, RbdStore
from tests.integration.image.conftest import IMAGE, CloudFactory, assert_error

MiB = 1 << 20


@pytest.fixture
async def store(ceph_cluster: DevCluster) -> AsyncIterator[RbdStore]:
    store = RbdStore(_ceph_settings(ceph_cluster), chunk_size=4 * MiB)
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


def _ceph_settings(cluster: DevCluster) -> CephSettings:
    return CephSettings(conf=cluster.conf, user="stratus", keyring=cluster.stratus_keyring)


def _names(ioctx: Any, image_id: str) -> list[str]:
    import rbd

    return sorted(name for name in rbd.RBD().list(ioctx) if image_id in name)


async def _read(store: RbdStore, location: str, offset: int = 0,
                length: int | None = None) -> bytes:
    reader = await store.open(location, offset, length)
    return b"".join([chunk async for chunk in reader.chunks()])


def _data(size: int) -> bytes:
    """``size`` bytes with a zero stretch in the middle (written sparsely)."""
    block = hashlib.sha256(b"stratus").digest() * (MiB // 32)
    data = bytearray((block * (size // MiB + 1))[:size])
    data[4 * MiB:8 * MiB] = bytes(4 * MiB)
    return bytes(data)


async def test_staged_commit_snapshot_ranged_reads_and_delete(
        store: RbdStore, admin_ioctx: Any) -> None:
    import rbd

    image_id = str(uuid.uuid4())
    data = _data(10 * MiB + 123)
    writer = await store.writer(image_id)
    for at in range(0, len(data), 3 * MiB):
        await writer.write(data[at:at + 3 * MiB])
    assert _names(admin_ioctx, image_id) == [f"{image_id}.partial"]
    location = await writer.commit()
    assert location == f"rbd://{store.ceph.fsid}/images/{image_id}/snap"
    assert _names(admin_ioctx, image_id) == [image_id]
    with rbd.Image(admin_ioctx, image_id, read_only=True) as image:
        assert image.size() == len(data)
        assert [s["name"] for s in image.list_snaps()] == ["snap"]
        assert image.is_protected_snap("snap")
        # The zero stretch was not written: one object (4 MiB) fewer than the data spans.
        extents: list[tuple[int, int]] = []
        image.diff_iterate(0, image.size(), None,
                           lambda offset, length, exists: extents.append((offset, length)))
        assert sum(length for _, length in extents) <= len(data) - 4 * MiB + 4 * MiB - 1
        assert all(not (4 * MiB <= offset < 8 * MiB) for offset, _ in extents)
    assert await store.exists(location)
    assert await _read(store, location) == data
    assert await _read(store, location, 5 * MiB - 7, 2 * MiB) == data[5 * MiB - 7:7 * MiB - 7]
    assert await _read(store, location, len(data) - 5) == data[-5:]

    await store.delete(location)
    assert _names(admin_ioctx, image_id) == []
    assert not await store.exists(location)
    with pytest.raises(ObjectMissing):
        await store.open(location)
    await store.delete(location)  # gone already: fine


async def test_abort_and_the_start_up_sweep_leave_nothing(
        store: RbdStore, ceph_cluster: DevCluster, admin_ioctx: Any) -> None:
    aborted, left = str(uuid.uuid4()), str(uuid.uuid4())
    writer = await store.writer(aborted)
    await writer.write(_data(5 * MiB))
    await writer.abort()
    await writer.abort()  # idempotent
    assert _names(admin_ioctx, aborted) == []

    crashed = await store.writer(left)
    await crashed.write(_data(5 * MiB))
    busy = RbdStore(_ceph_settings(ceph_cluster), stale_upload_seconds=0)
    await busy.start()  # stale, but open by a live upload: kept
    await busy.stop()
    assert _names(admin_ioctx, left) == [f"{left}.partial"]
    await store.ceph.run(crashed._close_image)  # the uploading process dies
    fresh = RbdStore(_ceph_settings(ceph_cluster), stale_upload_seconds=3600)
    await fresh.start()  # not stale yet: kept
    await fresh.stop()
    assert _names(admin_ioctx, left) == [f"{left}.partial"]
    sweeper = RbdStore(_ceph_settings(ceph_cluster), stale_upload_seconds=0)
    await sweeper.start()
    await sweeper.stop()
    assert _names(admin_ioctx, left) == []


async def test_delete_refuses_while_a_clone_exists(store: RbdStore, admin_ioctx: Any) -> None:
    import rbd

    image_id = str(uuid.uuid4())
    writer = await store.writer(image_id)
    await writer.write(b"boot sector" * 1000)
    location = await writer.commit()
    clone = f"clone-{image_id}"
    rbd.RBD().clone(admin_ioctx, image_id, "snap", admin_ioctx, clone)
    try:
        assert await store.clones(location) == [f"images/{clone}"]
        with pytest.raises(InUse):
            await store.prepare_delete(location)
        with pytest.raises(InUse):
            await store.delete(location)
        assert await _read(store, location) == b"boot sector" * 1000
    finally:
        rbd.RBD().remove(admin_ioctx, clone)
    await store.prepare_delete(location)
    await store.undo_prepare_delete(location)
    with rbd.Image(admin_ioctx, image_id, read_only=True) as image:
        assert image.is_protected_snap("snap")
    await store.delete(location)
    assert _names(admin_ioctx, image_id) == []


def test_locations_parse() -> None:
    parsed = rbd_location("rbd://f/images/abc/snap")
    assert parsed is not None
    assert (parsed.fsid, parsed.pool, parsed.image, parsed.snapshot) == (
        "f", "images", "abc", "snap")
    assert str(parsed) == "rbd://f/images/abc/snap"
    for bad in ("file:abc", "rbd://f/images/abc", "rbd://f//abc/snap", None):
        assert rbd_location(bad) is None


# The image API on the rbd store ------------------------------------------------------------


@pytest.fixture
async def rbd_cloud(make_cloud: CloudFactory, ceph_cluster: DevCluster,
                    monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in ceph_cluster.env().items():
        if name.startswith("STRATUS_CEPH__"):
            monkeypatch.setenv(name, value)
    return await make_cloud(store="rbd")


async def test_api_upload_download_direct_url_for_services_and_409_while_cloned(
        rbd_cloud: Any, admin_ioctx: Any) -> None:
    import rbd

    cloud = rbd_cloud
    data = _data(9 * MiB)
    image = await cloud.active_image(data, visibility="public")
    image_id = image["id"]
    assert "direct_url" not in image  # a user's view: where the data is stays hidden
    assert _names(admin_ioctx, image_id) == [image_id]
    got = await cloud.client.get(f"{IMAGE}/images/{image_id}/file",
                                 headers=cloud.admin.headers)
    assert got.status_code == 200 and got.content == data
    ranged = await cloud.client.get(f"{IMAGE}/images/{image_id}/file",
                                    headers={**cloud.admin.headers,
                                             "Range": "bytes=100-199"})
    assert ranged.status_code == 206 and ranged.content == data[100:200]

    user = await cloud.project("member")
    assert "direct_url" not in await cloud.show(image_id, user)
    # A service (compute, volume) calls with the user's token and its own service token.
    as_service = await cloud.client.get(f"{IMAGE}/images/{image_id}", headers={
        **user.headers, "X-Service-Token": cloud.admin.token})
    fsid = cloud.runtime.store.ceph.fsid
    assert as_service.json()["direct_url"] == f"rbd://{fsid}/images/{image_id}/snap"
    listed = await cloud.client.get(f"{IMAGE}/images?id={image_id}", headers={
        **user.headers, "X-Service-Token": cloud.admin.token})
    assert [i.get("direct_url") for i in listed.json()["images"]] == [
        f"rbd://{fsid}/images/{image_id}/snap"]

    clone = f"volume-{uuid.uuid4()}"
    rbd.RBD().clone(admin_ioctx, image_id, "snap", admin_ioctx, clone)
    try:
        refused = await cloud.client.delete(f"{IMAGE}/images/{image_id}",
                                            headers=cloud.admin.headers)
        assert "in use" in assert_error(refused, 409)
        assert (await cloud.show(image_id))["status"] == "active"
        again = await cloud.client.get(f"{IMAGE}/images/{image_id}/file",
                                       headers=cloud.admin.headers)
        assert again.content == data
    finally:
        rbd.RBD().remove(admin_ioctx, clone)
    deleted = await cloud.client.delete(f"{IMAGE}/images/{image_id}",
                                        headers=cloud.admin.headers)
    assert deleted.status_code == 204, deleted.text
    assert _names(admin_ioctx, image_id) == []


async def test_api_interrupted_upload_leaves_nothing(rbd_cloud: Any, admin_ioctx: Any) -> None:
    from tests.integration.image.test_data import asgi_upload

    cloud = rbd_cloud
    image = await cloud.create()
    staged: list[str] = []

    async def look() -> None:
        staged.extend(_names(admin_ioctx, image["id"]))

    chunk = {"type": "http.request", "body": _data(MiB), "more_body": True}
    await asgi_upload(cloud, image["id"], [chunk] * 6 + [{"type": "pause", "then": look},
                                                         chunk, {"type": "http.disconnect"}])
    assert staged == [f"{image['id']}.partial"]  # it was being written
    assert _names(admin_ioctx, image["id"]) == []
    assert (await cloud.show(image["id"]))["status"] == "queued"
    assert (await cloud.upload(image["id"], b"again")).status_code == 204
    assert _names(admin_ioctx, image["id"]) == [image["id"]]
    deleted = await cloud.client.delete(f"{IMAGE}/images/{image['id']}",
                                        headers=cloud.admin.headers)
    assert deleted.status_code == 204
    assert _names(admin_ioctx, image["id"]) == []


def _write_committed(ioctx: Any, name: str, data: bytes) -> None:
    """An RBD image with data and its protected ``snap``, as compute's direct snapshot
    leaves one in the store's pool."""
    import rbd

    rbd.RBD().create(ioctx, name, len(data), old_format=False)
    with rbd.Image(ioctx, name) as image:
        image.write(data, 0)
        image.create_snap("snap")
        image.protect_snap("snap")


async def test_api_add_location_takes_only_the_store_s_own_rbd_data_of_that_image(
        rbd_cloud: Any, admin_ioctx: Any) -> None:
    """Glance 2.17's add location, as compute's direct snapshot uses it: a queued image
    takes the data already at its own place in the pool, hashed and checked as an upload
    is; no other place, no other image's data, no second time."""
    cloud = rbd_cloud
    user, other = await cloud.project("member"), await cloud.project("member")
    fsid = cloud.runtime.store.ceph.fsid
    data = _data(6 * MiB)
    image = await cloud.create(user)
    image_id = image["id"]
    place = f"rbd://{fsid}/images/{image_id}/snap"

    async def add(body: Any, who: Any = user, target: str = image_id) -> Any:
        return await cloud.client.post(f"{IMAGE}/images/{target}/locations", json=body,
                                       headers=who.headers)

    # Nothing written there yet: refused, the image still queued.
    assert "no protected snapshot" in assert_error(await add({"url": place}), 400)
    _write_committed(admin_ioctx, image_id, data)
    donor = await cloud.active_image(b"another image's data", who=other)
    try:
        for url in (f"rbd://{fsid}/images/{donor['id']}/snap",  # another image's data
                    f"rbd://{fsid}/vms/{image_id}/snap",  # outside the store's pool
                    f"rbd://not-{fsid}/images/{image_id}/snap",  # another cluster
                    f"rbd://{fsid}/images/{image_id}/other",
                    f"file:///var/lib/images/{image_id}"):
            assert "is not where this store keeps" in assert_error(await add({"url": url}),
                                                                    400)
        for body in ({}, {"url": ""}, {"url": place, "extra": 1},
                     {"url": place, "validation_data": {"os_hash_algo": "sha512"}}):
            assert_error(await add(body), 400)
        wrong = {"os_hash_algo": "sha512", "os_hash_value": "0" * 128}
        assert "does not match" in assert_error(
            await add({"url": place, "validation_data": wrong}), 400)
        assert (await cloud.show(image_id, user))["status"] == "queued"
        # Another project's member does not see the image at all.
        assert_error(await add({"url": place}, who=other), 404)

        right = {"os_hash_algo": "sha512", "os_hash_value": hashlib.sha512(data).hexdigest()}
        taken = await add({"url": place, "validation_data": right})
        assert taken.status_code == 202, taken.text
        shown = await cloud.show(image_id, user)
        assert (shown["status"], shown["size"], shown["checksum"], shown["os_hash_value"]) == (
            "active", len(data), hashlib.md5(data).hexdigest(), right["os_hash_value"])
        got = await cloud.client.get(f"{IMAGE}/images/{image_id}/file", headers=user.headers)
        assert got.content == data
        assert "queued" in assert_error(await add({"url": place}), 409)  # once only

        # Deleting the image removes the data it took, as any of the store's.
        deleted = await cloud.client.delete(f"{IMAGE}/images/{image_id}",
                                            headers=user.headers)
        assert deleted.status_code == 204, deleted.text
        assert _names(admin_ioctx, image_id) == []
    finally:
        await cloud.client.delete(f"{IMAGE}/images/{donor['id']}", headers=other.headers)
        if _names(admin_ioctx, image_id):
            await cloud.runtime.store.delete(place)


async def test_api_add_location_on_a_store_that_takes_none(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud()  # the file store
    image = await cloud.create()
    refused = await cloud.client.post(
        f"{IMAGE}/images/{image['id']}/locations",
        json={"url": f"file:///tmp/{image['id']}"}, headers=cloud.admin.headers)
    assert "takes no locations" in assert_error(refused, 400)
    assert (await cloud.show(image["id"]))["status"] == "queued"
