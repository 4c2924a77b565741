"""Image data: streaming upload and download, checksums, virtual size, Range, bad uploads.

Every failed upload is checked for what it leaves: the image not ``active`` (back to
``queued``) and no file in the store, staged or final.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from stratus.core.config import Settings
from tests.integration.image.conftest import (
    IMAGE,
    OCTET,
    CloudFactory,
    ImageCloud,
    assert_error,
    digests,
    qcow2_bytes,
)

MiB = 1024 * 1024


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def test_upload_and_download_qcow2(cloud: ImageCloud, tmp_path: Path) -> None:
    data = qcow2_bytes(tmp_path, "64M")
    image = await cloud.create(name="disk", disk_format="qcow2")
    response = await cloud.upload(image["id"], data)
    assert response.status_code == 204 and response.content == b""
    shown = await cloud.show(image["id"])
    assert shown["status"] == "active"
    assert {k: shown[k] for k in ("size", "checksum", "os_hash_algo", "os_hash_value")} == \
        digests(data)
    assert shown["virtual_size"] == 64 * MiB
    assert [p.name for p in cloud.stored_files()] == [image["id"]]

    path = f"{IMAGE}/images/{image['id']}/file"
    download = await cloud.client.get(path, headers=cloud.admin.headers)
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["content-md5"] == hashlib.md5(data).hexdigest()
    assert download.headers["content-length"] == str(len(data))
    assert download.headers["content-type"] == "application/octet-stream"

    async def ranged(spec: str) -> httpx.Response:
        return await cloud.client.get(path, headers={**cloud.admin.headers, "Range": spec})

    part = await ranged("bytes=0-3")
    assert part.status_code == 206 and part.content == b"QFI\xfb"
    assert part.headers["content-range"] == f"bytes 0-3/{len(data)}"
    assert "content-md5" not in part.headers
    tail = await ranged("bytes=-10")
    assert tail.content == data[-10:]
    assert tail.headers["content-range"] == f"bytes {len(data) - 10}-{len(data) - 1}/{len(data)}"
    rest = await ranged(f"bytes={len(data) - 5}-")
    assert rest.content == data[-5:]
    past = await ranged(f"bytes={len(data)}-")
    assert_error(past, 416)
    assert past.headers["content-range"] == f"bytes */{len(data)}"
    assert (await ranged("bytes=5-2")).content == data  # not understood: the whole data


async def test_raw_chunked_upload_and_empty_download(cloud: ImageCloud) -> None:
    data = os.urandom(3 * MiB + 123)
    image = await cloud.create(name="raw")
    empty = await cloud.client.get(f"{IMAGE}/images/{image['id']}/file",
                                   headers=cloud.admin.headers)
    assert empty.status_code == 204 and empty.content == b""
    # An async generator body goes out with Transfer-Encoding: chunked, as Tempest sends it.
    response = await cloud.upload(image["id"], chunked(data))
    assert response.status_code == 204, response.text
    assert response.request.headers.get("transfer-encoding") == "chunked"
    shown = await cloud.show(image["id"])
    assert {k: shown[k] for k in ("size", "checksum", "os_hash_value")} == \
        {k: v for k, v in digests(data).items() if k != "os_hash_algo"}
    assert shown["virtual_size"] == len(data)
    download = await cloud.client.get(f"{IMAGE}/images/{image['id']}/file",
                                      headers=cloud.admin.headers)
    assert download.content == data


async def test_upload_to_an_active_image_is_a_conflict(cloud: ImageCloud) -> None:
    image = await cloud.active_image(b"first")
    message = assert_error(await cloud.upload(image["id"], b"second"), 409)
    assert "active" in message
    shown = await cloud.show(image["id"])
    assert shown["status"] == "active" and shown["checksum"] == hashlib.md5(b"first").hexdigest()
    download = await cloud.client.get(f"{IMAGE}/images/{image['id']}/file",
                                      headers=cloud.admin.headers)
    assert download.content == b"first"
    assert [p.name for p in cloud.stored_files()] == [image["id"]]


async def test_uploads_refused_before_streaming(cloud: ImageCloud) -> None:
    bob = await cloud.project()
    image = await cloud.create()
    assert_error(await cloud.upload(image["id"], b"x", bob), 404)  # not bob's to see
    response = await cloud.client.put(
        f"{IMAGE}/images/{image['id']}/file", content=b"x",
        headers={**cloud.admin.headers, "Content-Type": "application/json"})
    assert_error(response, 415)
    bare = await cloud.client.post(f"{IMAGE}/images", json={"name": "formatless"},
                                   headers=cloud.admin.headers)
    assert "disk_format" in assert_error(await cloud.upload(bare.json()["id"], b"x"), 400)
    assert cloud.stored_files() == []
    assert (await cloud.show(image["id"]))["status"] == "queued"


async def test_data_that_is_not_its_disk_format_is_refused(cloud: ImageCloud,
                                                           tmp_path: Path) -> None:
    fake = await cloud.create(disk_format="qcow2")
    message = assert_error(await cloud.upload(fake["id"], os.urandom(4096)), 400)
    assert "qcow2" in message
    disguised = await cloud.create(disk_format="raw")
    assert "qcow2" in assert_error(
        await cloud.upload(disguised["id"], qcow2_bytes(tmp_path, "1M")), 400)
    backing = tmp_path / "base.raw"
    backing.write_bytes(b"\0" * MiB)
    layered = await cloud.create(disk_format="qcow2")
    message = assert_error(
        await cloud.upload(layered["id"], qcow2_bytes(tmp_path, "1M", backing=backing)), 400)
    assert "backing" in message
    for image in (fake, disguised, layered):
        assert (await cloud.show(image["id"]))["status"] == "queued"
    assert cloud.stored_files() == []
    # The image can still be given the right data afterwards.
    assert (await cloud.upload(fake["id"], qcow2_bytes(tmp_path, "2M"))).status_code == 204
    assert (await cloud.show(fake["id"]))["virtual_size"] == 2 * MiB


async def test_format_match_switched_off_keeps_the_safety_checks(
        make_cloud: CloudFactory, tmp_path: Path) -> None:
    """``require_format_match = false`` (Glance's ``require_image_format_match``): data that
    is not its disk_format is kept as opaque bytes, but what the data really is still passes
    the safety checks, and data that announces its format must be valid."""
    cloud = await make_cloud(require_format_match=False)
    # Random bytes as every format Tempest's image listing tests upload them as.
    for disk_format in ("qcow2", "raw", "ami", "ari", "aki", "vhd", "vmdk", "vdi", "vhdx"):
        image = await cloud.create(disk_format=disk_format)
        data = os.urandom(3000)
        assert (await cloud.upload(image["id"], data)).status_code == 204, disk_format
        shown = await cloud.show(image["id"])
        assert shown["status"] == "active" and shown["size"] == 3000, shown
        expected = 3000 if disk_format == "raw" else None
        assert shown["virtual_size"] == expected, (disk_format, shown)
    # A real qcow2 named raw is kept; with a backing file it is still refused.
    disguised = await cloud.create(disk_format="raw")
    assert (await cloud.upload(disguised["id"], qcow2_bytes(tmp_path, "1M"))).status_code == 204
    backing = tmp_path / "base.raw"
    backing.write_bytes(b"\0" * MiB)
    layered = await cloud.create(disk_format="raw")
    assert "backing" in assert_error(
        await cloud.upload(layered["id"], qcow2_bytes(tmp_path, "1M", backing=backing)), 400)
    descriptor = await cloud.create(disk_format="raw")
    assert "descriptor" in assert_error(await cloud.upload(
        descriptor["id"], b'# Disk DescriptorFile\nRW 2048 FLAT "/etc/shadow" 0\n'), 400)
    # Data that says it is a qcow2 but is not a valid one is refused as before.
    broken = await cloud.create(disk_format="qcow2")
    assert_error(await cloud.upload(broken["id"], b"QFI\xfb" + os.urandom(4000)), 400)
    for image in (layered, descriptor, broken):
        assert (await cloud.show(image["id"]))["status"] == "queued"


async def test_over_quota_uploads_are_413_and_leave_nothing(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(quota_image_size_total=MiB, image_size_cap=768 * 1024,
                             quota_image_count=4)
    alice = await cloud.project()
    kept = await cloud.active_image(b"k" * (512 * 1024), alice)

    async def refused(data: Any, **headers: str) -> str:
        image = await cloud.create(alice)
        message = assert_error(await cloud.upload(image["id"], data, alice, **headers), 413)
        assert (await cloud.show(image["id"], alice))["status"] == "queued"
        assert [p.name for p in cloud.stored_files()] == [kept["id"]]
        return message

    # Declared too large: refused before any byte is stored.
    assert "quota" in await refused(b"q" * (600 * 1024))
    # Chunked, no length declared: refused when the stream passes the quota.
    assert "quota" in await refused(chunked(b"q" * (600 * 1024)))
    # The per-image cap applies whatever the quota; a new image over it is refused the same.
    await cloud.client.delete(f"{IMAGE}/images/{kept['id']}", headers=alice.headers)
    kept = await cloud.active_image(b"", alice)
    assert "per image" in await refused(chunked(b"c" * (800 * 1024)))
    # Four images now belong to alice: the image count quota refuses a fifth.
    message = assert_error(await cloud.client.post(f"{IMAGE}/images", json={},
                                                   headers=alice.headers), 413)
    assert "images" in message
    # Other projects have quotas of their own.
    assert (await cloud.active_image(b"b" * (700 * 1024)))["status"] == "active"


async def test_concurrent_uploads_cannot_pass_the_quota_together(
        make_cloud: CloudFactory) -> None:
    cloud = await make_cloud(quota_image_size_total=MiB)
    alice = await cloud.project()
    images = [await cloud.create(alice) for _ in range(3)]
    results = await asyncio.gather(*(
        cloud.upload(image["id"], chunked(b"z" * (400 * 1024)), alice) for image in images))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [204, 204, 413], [r.text for r in results]
    active = [i for i in images if (await cloud.show(i["id"], alice))["status"] == "active"]
    assert sorted(p.name for p in cloud.stored_files()) == sorted(i["id"] for i in active)


async def test_json_body_limit_does_not_apply_to_uploads(make_cloud: CloudFactory) -> None:
    cloud = await make_cloud()
    assert cloud.settings.max_request_body_size == MiB
    big = await cloud.create()
    data = os.urandom(2 * MiB)
    assert (await cloud.upload(big["id"], data)).status_code == 204
    assert (await cloud.show(big["id"]))["size"] == len(data)
    response = await cloud.client.post(f"{IMAGE}/images", json={"name": "x" * (2 * MiB)},
                                       headers=cloud.admin.headers)
    assert_error(response, 413)


async def asgi_upload(cloud: ImageCloud, image_id: str,
                      messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drive the app with raw ASGI messages, as a server would for a real connection."""
    queue = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if queue:
            message = queue.pop(0)
            if message["type"] == "pause":
                await message["then"]()
                return await receive()
            return message
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path = f"{IMAGE}/images/{image_id}/file"
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "PUT", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "server": ("test", 80),
             "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"test"), (b"content-length", str(8 * MiB).encode()),
                         (b"x-auth-token", cloud.admin.token.encode()),
                         (b"content-type", OCTET["Content-Type"].encode())]}
    await cloud.app(scope, receive, send)  # type: ignore[arg-type]
    return sent


async def test_client_disconnect_mid_upload_leaves_nothing(cloud: ImageCloud) -> None:
    image = await cloud.create()
    staged: list[Path] = []

    async def look() -> None:
        staged.extend(cloud.stored_files())
        assert (await cloud.show(image["id"]))["status"] == "saving"

    chunk = {"type": "http.request", "body": b"d" * MiB, "more_body": True}
    await asgi_upload(cloud, image["id"], [chunk] * 5 + [{"type": "pause", "then": look},
                                                         chunk, {"type": "http.disconnect"}])
    assert staged and all(".staging" in str(p) for p in staged)  # it was being written
    assert (await cloud.show(image["id"]))["status"] == "queued"
    assert cloud.stored_files() == []
    assert (await cloud.upload(image["id"], b"again")).status_code == 204


async def test_image_deleted_during_upload(cloud: ImageCloud) -> None:
    image = await cloud.create()

    async def delete() -> None:
        response = await cloud.client.delete(f"{IMAGE}/images/{image['id']}",
                                             headers=cloud.admin.headers)
        assert response.status_code == 204

    chunk = {"type": "http.request", "body": b"d" * MiB, "more_body": True}
    last = {"type": "http.request", "body": b"d" * MiB, "more_body": False}
    sent = await asgi_upload(cloud, image["id"], [chunk] * 3 + [
        {"type": "pause", "then": delete}, *[chunk] * 4, last])
    assert sent[0]["status"] == 410
    assert cloud.stored_files() == []


async def test_stale_staged_uploads_are_removed_at_start(tmp_path: Path) -> None:
    from stratus.image.stores.file import FileStore

    store = FileStore(tmp_path / "images", stale_upload_seconds=60)
    await store.start()
    stale, fresh = store.staging / "old.abc", store.staging / "new.abc"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    os.utime(stale, (0, 0))
    await store.start()
    assert sorted(p.name for p in store.staging.iterdir()) == ["new.abc"]
    assert Settings().image.stale_upload_seconds == 3600


async def test_two_uploads_racing_for_one_image(cloud: ImageCloud) -> None:
    image = await cloud.create()
    first, second = os.urandom(2 * MiB), os.urandom(2 * MiB)
    results = await asyncio.gather(cloud.upload(image["id"], chunked(first)),
                                   cloud.upload(image["id"], chunked(second)))
    assert sorted(r.status_code for r in results) == [204, 409], [r.text for r in results]
    winner = first if results[0].status_code == 204 else second
    shown = await cloud.show(image["id"])
    assert shown["status"] == "active"
    assert shown["checksum"] == hashlib.md5(winner).hexdigest()
    download = await cloud.client.get(f"{IMAGE}/images/{image['id']}/file",
                                      headers=cloud.admin.headers)
    assert download.content == winner
    assert [p.name for p in cloud.stored_files()] == [image["id"]]


async def test_cancelled_after_publishing_keeps_the_data(cloud: ImageCloud,
                                                         monkeypatch: Any) -> None:
    from stratus.core.auth import context_from_token

    image = await cloud.create()
    body = await cloud.stack.token_validator().validate(cloud.admin.token)
    caller = cloud.runtime.caller(context_from_token(body, request_id="req-test",
                                                     global_request_id=None))
    activate = cloud.runtime.data._activate

    async def activate_then_cancelled(*args: Any) -> None:
        await activate(*args)
        raise asyncio.CancelledError  # e.g. a forced shutdown right after the commit

    monkeypatch.setattr(cloud.runtime.data, "_activate", activate_then_cancelled)
    try:
        await cloud.runtime.data.upload(caller, image["id"], chunked(b"kept" * 1000))
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the upload was not cancelled")
    shown = await cloud.show(image["id"])
    assert shown["status"] == "active" and shown["size"] == 4000
    download = await cloud.client.get(f"{IMAGE}/images/{image['id']}/file",
                                      headers=cloud.admin.headers)
    assert download.content == b"kept" * 1000
